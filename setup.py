"""The C frame scanner, backends/_frames.c. Everything else is declared in pyproject.toml,
where setuptools accepts extension modules only as an experimental setting."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # zlib's crc32 is the one Python's zlib module computes, and frames.pack writes.
        Extension("optuna_journal.backends._frames", ["backends/_frames.c"], libraries=["z"])
    ]
)
