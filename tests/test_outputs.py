"""Where the object and the depfile land, compared with plain clang-19 case by case.

Found by running clang-19 itself: it renames its object over `-o`, so a symlink there is
replaced (even a dangling one, or one in a cycle) and a hard link's other name keeps the old
file, but it opens its depfile (`-MF`, or the
`-MD` name derived from `-o`) and writes through symlinks into their target, which keeps its
permissions and its other hard links. It refuses a depfile link that dangles into a missing
directory or runs in a cycle, an output that is a directory, and (not as root) an existing file
it may not write. llmcc must end each case exactly as clang does: the same links, files,
permissions, exit code and messages, and no temporary file left behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SIZE_C, SIZE_H, log_events, log_outcomes, run

from llmcc.objfile import read_object

Setup = Callable[[Path], None]


def _files(contents: dict[str, str]) -> Setup:
    """A setup that writes each file of `contents`, parents included."""
    def setup(root: Path) -> None:
        for name, text in contents.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return setup


def _links(*pairs: tuple[str, str], then: Setup | None = None) -> Setup:
    """A setup that makes each (link, target) symlink, parents included, then runs `then`."""
    def setup(root: Path) -> None:
        if then is not None:
            then(root)
        for link, target in pairs:
            path = root / link
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to(target.replace("<root>", str(root)))
    return setup


def _hard_link(name: str, other: str) -> Setup:
    """A setup that makes `name` a file with a second name, `other`."""
    def setup(root: Path) -> None:
        (root / name).write_text("old")
        os.link(root / name, root / other)
    return setup


def _state(root: Path) -> dict[str, tuple]:
    """Every entry under `root`: a link's text, a file's content (an object as its symbols), its
    permissions and the other names of its inode. `root` itself reads as <root>."""
    inodes: dict[tuple[int, int], list[str]] = {}
    for path in root.rglob("*"):
        info = path.lstat()
        if stat.S_ISREG(info.st_mode):
            inodes.setdefault((info.st_dev, info.st_ino), []).append(str(path.relative_to(root)))
    found: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        name, info = str(path.relative_to(root)), path.lstat()
        if path.is_symlink():
            found[name] = ("link", os.readlink(path).replace(str(root), "<root>"))
        elif path.is_dir():
            found[name] = ("dir",)
        else:
            blob = path.read_bytes()
            content = (("object", sorted(read_object(blob).defined))
                       if blob[:4] == b"\x7fELF" else blob.decode())
            others = sorted(set(inodes[(info.st_dev, info.st_ino)]) - {name})
            found[name] = ("file", content, oct(stat.S_IMODE(info.st_mode)), others)
    return found


def _objects(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not p.is_symlink() and p.read_bytes()[:4] == b"\x7fELF"}


@pytest.fixture
def compare(tmp_path, clang, llmcc, env):
    """`compare(setup, args)`: the same tree for clang and for llmcc, each compiled once; returns
    (clang's result, clang's tree, llmcc's result, llmcc's tree) after checking they agree."""
    def both(setup: Setup, args: list[str]):
        results = []
        for name, program in (("clang", clang), ("llmcc", llmcc)):
            root = tmp_path / name
            root.mkdir()
            (root / "size.h").write_text(SIZE_H)
            (root / "size.c").write_text(SIZE_C)
            setup(root)
            done = run([program, *args], cwd=root, env=env)
            results.append((done, root))
        (plain, plain_root), (tuned, tuned_root) = results
        assert (tuned.returncode, tuned.stdout, tuned.stderr.decode()) == \
            (plain.returncode, plain.stdout, plain.stderr.decode())
        assert _state(tuned_root) == _state(plain_root)
        plain_objects, tuned_objects = _objects(plain_root), _objects(tuned_root)
        for name, blob in plain_objects.items():
            assert read_object(tuned_objects[name]).size <= read_object(blob).size
        return plain, plain_root, tuned, tuned_root
    return both


C = ["-Oz", "-c", "size.c"]

# (setup, arguments): clang and llmcc both compile, llmcc by itself (a miss).
WRITTEN = {
    # -o: clang renames over the link, whatever it points to (the target stays as it was)
    "o-link": (_links(("link.o", "target.o"), then=_files({"target.o": "old"})),
               [*C, "-o", "link.o"]),
    "o-dangling": (_links(("link.o", "missing.o")), [*C, "-o", "link.o"]),
    "o-chain": (_links(("link.o", "l2.o"), ("l2.o", "target.o"),
                       then=_files({"target.o": "old"})), [*C, "-o", "link.o"]),
    "o-cycle": (_links(("l1.o", "l2.o"), ("l2.o", "l1.o")), [*C, "-o", "l1.o"]),
    "o-relative-elsewhere": (_links(("out/link.o", "../objs/target.o"),
                                    then=_files({"objs/target.o": "old"})),
                             [*C, "-o", "out/link.o"]),
    "o-hard-link": (_hard_link("size.o", "other-name.o"), [*C, "-o", "size.o"]),
    # the depfile: clang writes through the links into the target, and the links stay
    "MF-link": (_links(("link.d", "target.d"), then=_files({"target.d": "old"})),
                [*C, "-MD", "-MF", "link.d"]),
    "MF-dangling": (_links(("link.d", "new.d")), [*C, "-MD", "-MF", "link.d"]),
    "MF-chain-relative-elsewhere": (
        _links(("out/l1.d", "../deps/l2.d"), ("deps/l2.d", "../deps/t.d"),
               then=_files({"deps/t.d": "old"})), [*C, "-MD", "-MF", "out/l1.d"]),
    "MF-absolute": (_links(("link.d", "<root>/deps/abs.d"), then=_files({"deps/abs.d": "old"})),
                    [*C, "-MD", "-MF", "link.d"]),
    "MF-dotdot-after-linked-dir": (  # `..` in the link's text is taken from real/build
        _links(("bdir", "real/build"), ("real/build/l.d", "../deps/t.d"),
               then=_files({"real/deps/t.d": "old", "deps/t.d": "not this one"})),
        [*C, "-MD", "-MF", "bdir/l.d"]),
    "MD-implicit": (_links(("out/size.d", "../deps/size.d"), then=_files({"deps/size.d": "old"})),
                    [*C, "-MD", "-o", "out/size.o"]),
    "MD-implicit-from-linked-o": (  # the depfile is named after the link, not its target
        _links(("link.o", "target.o"), ("link.d", "target.d"),
               then=_files({"target.o": "old", "target.d": "old"})),
        [*C, "-MD", "-o", "link.o"]),
    "MMD-link": (_links(("link.d", "target.d"), then=_files({"target.d": "old"})),
                 [*C, "-MMD", "-MF", "link.d"]),
}


@pytest.mark.parametrize("case", list(WRITTEN))
def test_outputs_land_where_clang_puts_them(compare, env, case):
    setup, args = WRITTEN[case]
    plain, _, _, _ = compare(setup, args)
    assert plain.returncode == 0
    assert log_outcomes(env) == ["miss"]


# (setup, arguments): clang refuses or writes into something that is not a file; llmcc leaves
# the call to clang, which does the same thing in its own words.
LEFT_TO_CLANG = {
    "MF-dangling-into-missing-dir": (_links(("link.d", "nodir/new.d")),
                                     [*C, "-MD", "-MF", "link.d"]),
    "MF-cycle": (_links(("l1.d", "l2.d"), ("l2.d", "l1.d")), [*C, "-MD", "-MF", "l1.d"]),
    "MF-link-to-a-device": (_links(("null.d", "/dev/null")), [*C, "-MD", "-MF", "null.d"]),
    "o-link-to-a-directory": (_links(("dir.o", "objs"), then=_files({"objs/keep": ""})),
                              [*C, "-o", "dir.o"]),
}


@pytest.mark.parametrize("case", list(LEFT_TO_CLANG))
def test_outputs_clang_refuses_or_writes_specially_are_left_to_clang(compare, env, case):
    setup, args = LEFT_TO_CLANG[case]
    compare(setup, args)
    assert log_outcomes(env) == ["fallback"]


def test_depfile_keeps_its_permissions_and_hard_links_like_clang(compare, env):
    """Clang rewrites the file it opens: its mode stays, and its other names see the text."""
    def setup(root: Path) -> None:
        (root / "target.d").write_text("old")
        (root / "target.d").chmod(0o600)
        (root / "link.d").symlink_to("target.d")
        (root / "shared.d").write_text("old")
        (root / "shared.d").chmod(0o640)
        os.link(root / "shared.d", root / "other-name.d")

    for depfile, written, mode in (("link.d", "target.d", "0o600"),
                                   ("shared.d", "other-name.d", "0o640")):
        plain, plain_root, _, tuned_root = compare(setup, [*C, "-MD", "-MF", depfile])
        assert plain.returncode == 0
        _, content, actual_mode, _ = _state(tuned_root)[written]
        assert content.startswith("size.o: size.c") and actual_mode == mode
        shutil.rmtree(plain_root)
        shutil.rmtree(tuned_root)
    assert log_outcomes(env) == ["miss", "hit"]  # the same TU: its decision is cached


def test_depfile_written_from_the_cache_goes_through_the_link_too(tmp_path, llmcc, env):
    args = [*C, "-MD", "-MF", "link.d"]
    (tmp_path / "size.h").write_text(SIZE_H)
    (tmp_path / "size.c").write_text(SIZE_C)
    (tmp_path / "link.d").symlink_to("target.d")
    for _ in range(2):
        (tmp_path / "target.d").write_text("old")
        assert run([llmcc, *args], cwd=tmp_path, env=env).returncode == 0
        assert (tmp_path / "link.d").is_symlink()
        assert (tmp_path / "target.d").read_text().startswith("size.o: size.c")
    assert log_outcomes(env) == ["miss", "direct_hit"]


# --- files clang may not write (the check root is exempt from) ----------------------------------

NOBODY = 65534


@pytest.mark.parametrize("depfile", [False, True], ids=["object", "depfile"])
@pytest.mark.parametrize("through_link", [False, True], ids=["direct", "through-a-link"])
def test_read_only_outputs_are_refused_like_clang(clang, llmcc, env, depfile, through_link):
    """As another user, a read-only existing output makes clang fail; llmcc could rename over
    it, and must not."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the compilers as another user")
    with tempfile.TemporaryDirectory() as shared:
        os.chmod(shared, 0o755)  # a directory the other user can reach
        results = []
        for name, program in (("clang", clang), ("llmcc", llmcc)):
            root = Path(shared) / name
            root.mkdir()
            (root / "size.h").write_text(SIZE_H)
            (root / "size.c").write_text(SIZE_C)
            (root / "locked").write_text("old")
            (root / "locked").chmod(0o444)
            output = "out.link" if through_link else "locked"
            if through_link:
                (root / output).symlink_to("locked")
            args = [*C, "-MD", "-MF", output, "-o", "size.o"] if depfile else [*C, "-o", output]
            for path in (root, *root.iterdir()):
                os.lchown(path, NOBODY, NOBODY)
            user_env = {**env, "LLMCC_CACHE_DIR": str(root / ".cache"),
                        "LLMCC_CONFIG": str(root / "none.toml"), "LLMCC_LOG": str(root / ".log"),
                        "HOME": str(root)}
            done = subprocess.run(
                ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                 program, *args], cwd=root, env=user_env, capture_output=True, timeout=120,
                check=False)
            results.append((done.returncode, done.stderr.decode(), (root / "locked").read_text()))
        assert results[0][0] != 0 and results[0][2] == "old"
        assert results[1] == results[0]
        (event,) = log_events({"LLMCC_LOG": str(root / ".log")})
        assert event["outcome"] == "fallback" and "is not writable" in event["reason"]
