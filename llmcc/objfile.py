"""Size and symbols of an ELF object, read directly (no llvm-size/llvm-nm process per candidate).

Size follows llvm-size's Berkeley format (as GNU size does): text = allocated sections that are
executable or read-only (so .rodata and .eh_frame count as text), data = the other allocated
sections with contents (.data, .tdata, .init_array); the test suite checks both against
llvm-size and llvm-nm.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
SHT_SYMTAB, SHT_NOBITS, SHT_GROUP = 2, 8, 17
GRP_COMDAT = 1
SHN_UNDEF = 0
STB_LOCAL, STB_WEAK = 0, 2


class NotAnObject(Exception):
    """The bytes are not a 64-bit little-endian ELF relocatable object."""


@dataclass(frozen=True)
class ObjectInfo:
    text: int
    data: int
    bss: int
    defined: frozenset[str]  # external (global/weak) symbols the object defines
    undefined: frozenset[str]  # external symbols it needs from elsewhere
    comdat: frozenset[str] = frozenset()  # the defined ones that are weak and in a COMDAT group

    @property
    def size(self) -> int:
        """What llmcc minimises: text + data."""
        return self.text + self.data


def read_object(blob: bytes) -> ObjectInfo:
    """Size and external symbols; NotAnObject for anything that is not a sound ELF64 object."""
    if blob[:4] != b"\x7fELF" or blob[4:6] != b"\x02\x01":
        raise NotAnObject("not a 64-bit little-endian ELF file")
    try:
        return _read_elf64(blob)
    except (struct.error, ValueError, IndexError) as err:
        raise NotAnObject(f"damaged ELF file: {err}") from None


def _read_elf64(blob: bytes) -> ObjectInfo:
    shoff, = struct.unpack_from("<Q", blob, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", blob, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", blob, shoff + i * shentsize)
                for i in range(shnum)]
    text = data = bss = 0
    defined: set[str] = set()
    undefined: set[str] = set()
    comdat: set[str] = set()
    in_comdat_group: set[int] = set()
    for _name, kind, _flags, _addr, offset, size, *_ in sections:
        group_flags = struct.unpack_from("<I", blob, offset)[0] if kind == SHT_GROUP else 0
        if group_flags & GRP_COMDAT:
            in_comdat_group.update(struct.unpack_from(f"<{size // 4 - 1}I", blob, offset + 4))
    for _name, kind, flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if flags & SHF_ALLOC and (flags & SHF_EXECINSTR or not flags & SHF_WRITE):
            text += size
        elif kind != SHT_NOBITS and flags & SHF_ALLOC:  # .data, .tdata, .init_array, ...
            data += size
        elif kind == SHT_NOBITS and flags & (SHF_ALLOC | SHF_WRITE):
            bss += size
        if kind == SHT_SYMTAB:
            strtab_offset = sections[link][4]
            for pos in range(offset + entsize, offset + size, entsize):  # entry 0 is null
                st_name, st_info, _other, st_shndx = struct.unpack_from("<IBBH", blob, pos)
                if st_info >> 4 == STB_LOCAL or st_name == 0:
                    continue
                end = blob.index(b"\0", strtab_offset + st_name)
                name = blob[strtab_offset + st_name:end].decode("utf-8", "replace")
                (undefined if st_shndx == SHN_UNDEF else defined).add(name)
                if st_info >> 4 == STB_WEAK and st_shndx in in_comdat_group:
                    comdat.add(name)
    return ObjectInfo(text, data, bss, frozenset(defined), frozenset(undefined),
                      frozenset(comdat))


def section_names(blob: bytes) -> frozenset[str]:
    """Names of the object's sections (what the flag sweep compares: `.stack_sizes`, ...)."""
    try:
        shoff, = struct.unpack_from("<Q", blob, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", blob, 0x3A)
        headers = [struct.unpack_from("<IIQQQQIIQQ", blob, shoff + i * shentsize)
                   for i in range(shnum)]
        names = headers[shstrndx][4]
        return frozenset(blob[names + h[0]:blob.index(b"\0", names + h[0])]
                         .decode("utf-8", "replace") for h in headers[1:])
    except (struct.error, ValueError, IndexError) as err:
        raise NotAnObject(f"damaged ELF file: {err}") from None
