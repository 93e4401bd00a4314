"""Build the Cython core (src/fastdatomic/_core) as optimised C extensions.

Everything else lives in pyproject.toml; this file exists only because the
extension list and compiler flags are code.
"""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

CORE = "src/fastdatomic/_core"


def extensions():
    exts = []
    for pyx in sorted(glob.glob(os.path.join(CORE, "*.pyx"))):
        name = "fastdatomic._core." + os.path.splitext(os.path.basename(pyx))[0]
        exts.append(Extension(name, [pyx], extra_compile_args=["-O3"]))
    return exts


setup(
    ext_modules=cythonize(
        extensions(),
        language_level=3,
        include_path=["src"],
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    ),
)
