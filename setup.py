"""The C frame scanner (backends/_frames.c), which pyproject.toml cannot yet declare but as an
experimental setting; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # zlib's crc32 is the one Python's zlib module computes, and frames.pack writes.
        Extension("optuna_journal.backends._frames", ["backends/_frames.c"], libraries=["z"])
    ]
)
