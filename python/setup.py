"""Builds the package's binary module with the repository's CMake build, offline.

CMake configures the repository one directory up (the target voxtral_python: the engine and
src/python/) for the interpreter running this build, and the module it builds goes into the
wheel beside python/voxtral/*.py. Environment:
  VOXTRAL_BUILD_DIR  an already configured build directory to build the target in, as an
                     absolute path (e.g. "$PWD/build" from the repository; pip runs this file
                     elsewhere, so a relative path has nothing reliable to be relative to);
                     default: a directory under setuptools' build_temp
  CMAKE_ARGS         more CMake arguments, e.g. "-DVOXTRAL_CUDA=ON -DVOXTRAL_LIBAV=OFF"
  VOXTRAL_JOBS       parallel build jobs (default: the CPU count)
"""

import glob
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent.parent


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        if not (ROOT / "CMakeLists.txt").is_file() or not (ROOT / "src" / "python").is_dir():
            raise RuntimeError(f"{ROOT}: not the voxtral repository (python/ is built from inside it)")
        build_dir = os.environ.get("VOXTRAL_BUILD_DIR")
        if build_dir and not os.path.isabs(build_dir):
            raise RuntimeError(
                f'VOXTRAL_BUILD_DIR="{build_dir}" is a relative path; pip builds in another directory, so give '
                f'it as an absolute path (from the repository: VOXTRAL_BUILD_DIR="$PWD/{build_dir}")')
        if not build_dir:
            build_dir = os.path.join(os.path.abspath(self.build_temp), "cmake")
            configure = [
                "cmake", "-S", str(ROOT), "-B", build_dir,
                "-DCMAKE_BUILD_TYPE=Release",
                "-DVOXTRAL_TESTS=OFF",
                "-DVOXTRAL_PYTHON=ON",
                f"-DPython3_EXECUTABLE={sys.executable}",
            ] + shlex.split(os.environ.get("CMAKE_ARGS", ""))
            subprocess.run(configure, check=True)
        jobs = os.environ.get("VOXTRAL_JOBS") or str(os.cpu_count() or 1)
        subprocess.run(["cmake", "--build", build_dir, "--target", "voxtral_python", "-j", jobs], check=True)
        built = glob.glob(os.path.join(build_dir, "python", "voxtral", "_voxtral*.so"))
        if len(built) != 1:
            raise RuntimeError(f"{build_dir}/python/voxtral: expected one _voxtral module, found {built}")
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(built[0], target)


setup(ext_modules=[Extension("voxtral._voxtral", sources=[])], cmdclass={"build_ext": CMakeBuild})
