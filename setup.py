"""The optional compiled parts; everything else about the package is in pyproject.toml.

* the score kernel (ingest_worker/scoring/_formulas_c.pyx);
* the flush process's reader of logged rows (ingest_worker/_r1_columns.pyx).

Each extension is ``optional``: without a C compiler or the Python headers the build warns
and the package installs without it (the formulas then run as pure Python, the flush
decodes its records with orjson).  Flags: -O2
and -ffp-contract=off only -- never -ffast-math or -march=native, which would let the
compiler fuse or reorder floating-point operations and change the scores' last bits."""

import runpy
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
SCORING = "ingest_worker/scoring"


class optional_build_ext(build_ext):
    """An optional extension that fails to build, whatever the error, leaves the package
    pure Python (setuptools only filters its own error classes)."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:  # no compiler, no Python headers, ...
            if not ext.optional:
                raise
            print(f"warning: building {ext.name} failed ({e}): it stays pure Python")


def extensions() -> list:
    try:
        from Cython.Build import cythonize
    except ImportError:  # pyproject's build requirements include it; a plain setup.py run may not
        print("warning: Cython is not installed: the score formulas stay pure Python")
        return []
    source_hash = runpy.run_path(str(HERE / SCORING / "_source_hash.py"))["source_hash"]
    ext = Extension(
        "ingest_worker.scoring._formulas_c",
        [f"{SCORING}/_formulas_c.pyx"],
        depends=[f"{SCORING}/formulas.py", f"{SCORING}/_source_hash.py"],
        define_macros=[("FORMULAS_SOURCE_HASH", f'"{source_hash(HERE / SCORING)}"')],
        extra_compile_args=["-O2", "-ffp-contract=off", "-fno-fast-math"],
        optional=True,
    )
    rows = Extension("ingest_worker._r1_columns", ["ingest_worker/_r1_columns.pyx"],
                     extra_compile_args=["-O2"], optional=True)
    built = cythonize([ext, rows], quiet=True)
    for e in built:  # cythonize's Extension objects do not keep ``optional``
        e.optional = True
    return built


setup(ext_modules=extensions(), cmdclass={"build_ext": optional_build_ext})
