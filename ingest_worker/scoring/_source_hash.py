"""The hash that ties the compiled score kernel to the sources it was built from.

setup.py (which cannot import the package: its dependencies are not in the build
environment) runs this file by path and compiles the hash into ``_formulas_c``;
``formulas.py`` compares it with the hash of the files on disk before using the kernel, so
a stale binary beside an edited ``formulas.py`` or ``_formulas_c.pyx`` is never used.
Standard library only."""

from __future__ import annotations

import hashlib
from pathlib import Path

SOURCES = ("_formulas_c.pyx", "formulas.py")


def source_hash(directory: str | Path | None = None) -> str:
    """sha256 over the kernel's sources (their bytes, in the order of ``SOURCES``)."""
    d = Path(directory) if directory is not None else Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in SOURCES:
        data = (d / name).read_bytes()
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()
