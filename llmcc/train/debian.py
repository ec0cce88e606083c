"""Upstream source tarballs of Debian source packages, the way `apt-get source` gets them.

Used by the corpus builder, the benchmark and the tests alike. The newest version whose files
the mirrors have wins: a security update's files can be missing from its mirror while older
versions are there. deb-src must be enabled (scripts/setup.sh does it).
"""

from __future__ import annotations

import functools
import glob
import os
import re
import subprocess
import tempfile

TIMEOUT = 1800


class FetchFailed(Exception):
    """No version of the package could be downloaded; the message says why."""


def source_versions(showsrc: str, package: str) -> list[tuple[str, str]]:
    """(source package, version) of each stanza of `apt-cache showsrc PACKAGE`'s output; for a
    binary package's name (zstd) the stanzas are its source package's (libzstd)."""
    found = []
    for stanza in showsrc.split("\n\n"):
        fields = dict(re.findall(r"^(Package|Version): (\S+)$", stanza, re.MULTILINE))
        if len(fields) == 2 and (fields["Package"], fields["Version"]) not in found:
            found.append((fields["Package"], fields["Version"]))
    return [entry for entry in found if entry[0] == package] or found


def newest_first(versions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(source package, version) pairs in dpkg's own order (epochs, `~`, revisions), newest
    first: apt-cache lists them in the order of its sources, not by version."""
    def compare(a: tuple[str, str], b: tuple[str, str]) -> int:
        if a[1] == b[1]:
            return 0
        newer = subprocess.run(["dpkg", "--compare-versions", a[1], "gt", b[1]], check=False)
        return -1 if newer.returncode == 0 else 1
    return sorted(versions, key=functools.cmp_to_key(compare))


def _upstream_tarball(where: str) -> str | None:
    found = [path for path in glob.glob(os.path.join(where, "*.orig.tar.*"))
             if not path.endswith((".asc", ".sig"))]
    return min(found) if found else None


def fetch(package: str, downloads: str) -> str:
    """The package's upstream tarball, downloaded once into `downloads/<package>/`."""
    where = os.path.join(downloads, package)
    tarball = _upstream_tarball(where)
    if tarball:
        return tarball
    showsrc = subprocess.run(["apt-cache", "showsrc", package], capture_output=True, text=True,
                             check=False).stdout
    versions = newest_first(source_versions(showsrc, package))
    if not versions:
        raise FetchFailed(f"apt-cache showsrc {package} finds no source package "
                          "(deb-src enabled?)")
    os.makedirs(where, exist_ok=True)
    failures = []
    for source, version in versions:
        with tempfile.TemporaryDirectory(dir=where, prefix=".download-") as scratch:
            done = subprocess.run(["apt-get", "source", "--download-only", "--only-source",
                                   f"{source}={version}"], cwd=scratch, capture_output=True,
                                  text=True, check=False, timeout=TIMEOUT)
            if done.returncode == 0:
                for name in os.listdir(scratch):  # whole downloads only: a rerun never sees half
                    os.replace(os.path.join(scratch, name), os.path.join(where, name))
                break
            errors = [line for line in done.stderr.splitlines() if line.startswith("E:")]
            failures.append(f"{version}: {(errors or [f'exit {done.returncode}'])[0]}")
    else:
        raise FetchFailed("apt-get source failed for every version: " + "; ".join(failures))
    tarball = _upstream_tarball(where)
    if tarball is None:
        raise FetchFailed(f"{source} {version} has no upstream tarball (*.orig.tar.*)")
    return tarball
