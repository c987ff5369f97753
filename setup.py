"""Builds the fused_ops op library: Triton kernels compiled ahead of time, embedded in C++.

    pip install --no-build-isolation .          # or: pip wheel --no-build-isolation .

Environment:
    FUSED_OPS_ARCHS   GPU archs to compile for (default 80;89;90: sm_86 runs sm_80's); the PTX of the highest
                      one below 90 is embedded too, for GPUs newer than the list.
    FUSED_OPS_CUDA=0  build the CPU kernels only (automatic when torch has no CUDA).
    CUDA_HOME         a CUDA toolkit to take headers and libcudart from; without one, the
                      headers and runtime that torch's CUDA wheels bring are used.

The extension is compiled against the installed torch and works only with that version:
the wheel pins it.
"""
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"
TORCH_VERSION = torch.__version__.split("+")[0]
WITH_CUDA = torch.version.cuda is not None and os.environ.get("FUSED_OPS_CUDA", "1") != "0"


def cuda_include_and_runtime():
    """CUDA headers and the cudart that torch loads, without requiring a toolkit."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and (Path(home) / "include" / "crt" / "host_defines.h").exists():
        runtime = sorted(glob.glob(f"{home}/lib64/libcudart.so*")) or sorted(glob.glob(f"{home}/lib/libcudart.so*"))
        if runtime:
            return [f"{home}/include"], runtime[0]
    # torch's CUDA wheels: nvidia/cu13 (CUDA 13) or nvidia/cuda_runtime (CUDA 12).
    import nvidia

    for base in map(Path, nvidia.__path__):
        for folder in ("cu13", "cuda_runtime"):
            include, lib = base / folder / "include", base / folder / "lib"
            runtime = sorted(lib.glob("libcudart.so.*"))
            if (include / "cuda_runtime_api.h").exists() and runtime:
                includes = [str(include)]
                if not (include / "crt" / "host_defines.h").exists():
                    # The runtime wheel lacks crt/; Triton (a build dependency) bundles it.
                    import triton

                    includes.append(str(Path(triton.__file__).parent / "backends" / "nvidia" / "include"))
                return includes, str(runtime[0])
    sys.exit("setup.py: no CUDA headers found: set CUDA_HOME, install torch's CUDA wheels, "
             "or build CPU-only with FUSED_OPS_CUDA=0")


def check_shared_libstdcxx(library: Path):
    """A toolchain that links libstdc++ statically (seen: a GCC in /opt/gcc on a GPU machine)
    leaves a second copy of iostreams in the library, and the first error message it formats
    inside torch's process crashes it. Refuse such a build, naming the fix."""
    readelf = shutil.which("readelf")
    if readelf is None:
        return
    dynamic = subprocess.run([readelf, "-d", str(library)], capture_output=True, text=True).stdout
    if "libstdc++.so" not in dynamic:
        library.unlink()
        sys.exit(f"setup.py: {library.name} links libstdc++ statically (compiler: "
                 f"{os.environ.get('CXX', sysconfig.get_config_var('CXX'))}); torch needs the shared "
                 "one. Build with the system compiler: CC=gcc CXX=g++ LDSHARED='g++ -shared' pip install ...")


# Object files are kept beside the sources, one folder per torch and Python ABI they were built
# for, so that ninja recompiles only what changed: pip builds editable installs and wheels in a
# fresh temporary folder, and every install recompiled all of csrc/ (docs/performance.md, "The build").
OBJECT_DIR = ROOT / "build" / f"objects-torch{torch.__version__}-{sysconfig.get_config_var('SOABI')}" \
    f"{'' if WITH_CUDA else '-cpu'}"


class BuildWithKernels(BuildExtension):
    """Compiles the Triton kernels (triton_src/aot.py) before the C++ sources that embed them."""

    def finalize_options(self):
        super().finalize_options()
        self.build_temp = str(OBJECT_DIR)

    def run(self):
        generated = Path(self.build_temp).resolve() / "aot"
        if WITH_CUDA:
            subprocess.run([sys.executable, str(ROOT / "triton_src" / "aot.py"), "--out-dir", str(generated)],
                           check=True)
            for ext in self.extensions:
                ext.sources.append(str(generated / "aot_kernels.cpp"))
        super().run()
        check_shared_libstdcxx(Path(self.get_ext_fullpath("fused_ops._C")))
        info = Path(self.get_ext_fullpath("fused_ops._C")).parent / "_build_info.py"
        info.write_text(f'"""Written by setup.py at build time."""\n'
                        f"TORCH_VERSION = {torch.__version__!r}\n"
                        f"CUDA_VERSION = {torch.version.cuda if WITH_CUDA else None!r}\n"
                        f"ARCHS = {os.environ.get('FUSED_OPS_ARCHS', '80;89;90') if WITH_CUDA else ''!r}\n")


def extension():
    sources = [str(p.relative_to(ROOT)) for p in sorted(CSRC.glob("*.cpp")) + sorted(CSRC.glob("*/*.cpp"))
               if p.parent.name != "apps"]
    # -fopenmp: at::parallel_for in the CPU kernels is an OpenMP loop compiled into this library;
    # without it the kernels run on one thread. The OpenMP runtime is torch's own libgomp.
    # -g0 overrides the -g of Python's own flags: debug information for torch's templates slows
    # the C++ compile and makes up most of the objects' size (docs/performance.md, "The build").
    cxx_flags = ["-O3", "-fopenmp", "-g0"]
    include_dirs = [str(CSRC)]
    extra_link_args = ["-fopenmp"]
    libraries = []
    if WITH_CUDA:
        cuda_includes, cudart = cuda_include_and_runtime()
        include_dirs += cuda_includes
        cxx_flags.append("-DFUSED_OPS_WITH_CUDA")
        libraries += ["c10_cuda", "torch_cuda"]
        extra_link_args.append(cudart)
    else:
        sources.remove("csrc/launcher.cpp")
    return CppExtension("fused_ops._C", sources, include_dirs=include_dirs, libraries=libraries,
                        extra_compile_args={"cxx": cxx_flags}, extra_link_args=extra_link_args,
                        py_limited_api=True)


setup(
    name="fused-ops",
    version="0.1.0",
    package_dir={"": "python"},
    packages=find_packages("python"),
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildWithKernels},
    install_requires=[f"torch=={TORCH_VERSION}"],
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
