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
SHT_SYMTAB, SHT_NOBITS = 2, 8
SHN_UNDEF = 0
STB_LOCAL = 0


class NotAnObject(Exception):
    """The bytes are not a 64-bit little-endian ELF relocatable object."""


@dataclass(frozen=True)
class ObjectInfo:
    text: int
    data: int
    bss: int
    defined: frozenset[str]  # external (global/weak) symbols the object defines
    undefined: frozenset[str]  # external symbols it needs from elsewhere

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
    return ObjectInfo(text, data, bss, frozenset(defined), frozenset(undefined))


def same_interface(candidate: ObjectInfo, baseline: ObjectInfo) -> str | None:
    """Why `candidate` may not replace `baseline`, or None if it may.

    It must define exactly the baseline's external symbols and need nothing new.
    """
    if candidate.defined != baseline.defined:
        lost = sorted(baseline.defined - candidate.defined)[:3]
        extra = sorted(candidate.defined - baseline.defined)[:3]
        return f"defines different symbols (missing {lost}, extra {extra})"
    new = candidate.undefined - baseline.undefined
    if new:
        return f"needs new symbols {sorted(new)[:3]}"
    return None
