"""fused_ops: ConvTranspose2d -> channel softmax -> + bias -> x scale -> sigmoid, fused.

Importing the package loads the op library, which registers ``torch.ops.fused.*``:

    >>> import torch, fused_ops
    >>> out = fused_ops.softmax_bias_sigmoid(x, bias, 2.0)   # torch.ops.fused.softmax_bias_sigmoid
    >>> model = fused_ops.ModelNew(64, 128, 4, 2, 1, 1, (128, 1, 1), 2.0)

The library holds kernels compiled ahead of time; nothing is compiled at run time and Triton
is not needed to run it.
"""
from pathlib import Path

import torch

__version__ = "0.1.0"


def library_path() -> str:
    """The op library's file, for ``torch.ops.load_library`` in another process, or C++."""
    found = sorted(Path(__file__).parent.glob("_C*.so"))
    if not found:
        raise ImportError(f"fused_ops: no op library (_C*.so) next to {__file__}: the package was "
                          "not built. Install it with `pip install --no-build-isolation .`")
    return str(found[0])


def _load_library() -> None:
    try:
        from . import _build_info
    except ImportError:
        raise ImportError(f"fused_ops: {Path(__file__).parent} has no _build_info.py: the package "
                          "was not built. Install it with `pip install --no-build-isolation .`") from None
    if torch.__version__ != _build_info.TORCH_VERSION:
        raise ImportError(f"fused_ops was built for torch {_build_info.TORCH_VERSION}, but torch "
                          f"{torch.__version__} is installed. A C++ op library only loads into the "
                          "torch it was compiled against: reinstall fused_ops from source with this "
                          "torch (`pip install --no-build-isolation --force-reinstall .`), or install "
                          f"torch {_build_info.TORCH_VERSION}.")
    torch.ops.load_library(library_path())


_load_library()

from . import _build_info  # noqa: E402
from .models import Model, ModelNew  # noqa: E402
from .ops import conv_transpose2d_softmax_bias_sigmoid, explain, kernel_images, softmax_bias_sigmoid  # noqa: E402

BUILT_FOR = {"torch": _build_info.TORCH_VERSION, "cuda": _build_info.CUDA_VERSION,
             "archs": _build_info.ARCHS}

__all__ = ["Model", "ModelNew", "softmax_bias_sigmoid", "conv_transpose2d_softmax_bias_sigmoid", "explain", "kernel_images", "library_path", "BUILT_FOR", "__version__"]
