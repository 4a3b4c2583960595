"""Build the compiled core `fhirhose._core` from ext/.

Only the Extension and build_ext live here; metadata is in pyproject.toml.
Switches (environment):
  FHIRHOSE_PURE=1   build no extension: the package runs on the pure-Python twin.
  FHIRHOSE_DEBUG=1  compile with -O0 -g, Cython bounds checks and line tracing.
"""
import os

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PURE = os.environ.get("FHIRHOSE_PURE") == "1"
DEBUG = os.environ.get("FHIRHOSE_DEBUG") == "1"


class CythonBuildExt(build_ext):
    # Cythonize here, not at import time, so `pip install` works from sdist
    # and the build requirement is only needed while building.
    def build_extensions(self):
        from Cython.Build import cythonize

        directives = {
            "language_level": "3",
            "boundscheck": DEBUG,
            "wraparound": False,
            "initializedcheck": DEBUG,
            "cdivision": True,
            "embedsignature": True,
        }
        for ext in self.extensions:
            pyx = [s for s in ext.sources if s.endswith(".pyx")]
            generated = cythonize(
                [Extension(ext.name, pyx)],
                include_path=["ext"],
                build_dir="build/cython",
                compiler_directives=directives,
                quiet=True,
            )
            # Keep setuptools' Extension object; swap only its sources.
            ext.sources[:] = generated[0].sources
        super().build_extensions()


ext_modules = []
if not PURE:
    cflags = ["-O0", "-g"] if DEBUG else ["-O3"]
    ext_modules.append(
        Extension(
            "fhirhose._core",
            sources=["ext/_core.pyx"],
            include_dirs=[numpy.get_include(), "ext"],
            extra_compile_args=cflags + ["-Wno-unused-function"],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
    )

setup(ext_modules=ext_modules, cmdclass={"build_ext": CythonBuildExt})
