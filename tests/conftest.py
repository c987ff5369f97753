import importlib.util
from pathlib import Path

import pytest
import torch

import fused_ops  # noqa: F401  (registers torch.ops.fused)

CUDA = torch.cuda.is_available()


def _fact_limits():
    path = Path(__file__).resolve().parents[1] / "triton_src" / "softmax_bias_sigmoid_flavours.py"
    spec = importlib.util.spec_from_file_location("softmax_bias_sigmoid_flavours", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FACT_LIMITS


# The launcher serves contiguous NCHW x of at most this many bytes, and samples, with its
# small-tensor tiles (the registry's bounds of the "small_tensor" fact); a test of its other
# tiles needs a larger x.
SMALL_TENSOR_BYTES = _fact_limits()["small_tensor_bytes"]
MAX_SAMPLES_ON_AXIS_1 = _fact_limits()["max_samples_on_axis_1"]


def past_small_tensors(shape, dtype):
    """`shape` with as many samples as take x of `dtype` past SMALL_TENSOR_BYTES."""
    sample_bytes = max(1, torch.Size(shape[1:]).numel()) * torch.empty((), dtype=dtype).element_size()
    return (max(shape[0], SMALL_TENSOR_BYTES // sample_bytes + 1), *shape[1:])


def pytest_collection_modifyitems(config, items):
    if CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def make_inputs(shape, dtype, device, generator=None):
    """x (spread so that the softmax is not flat) and a (C, 1, 1) bias, drawn in float64."""
    x = (torch.randn(shape, dtype=torch.float64, generator=generator) * 3).to(device, dtype)
    bias = torch.randn(shape[1], 1, 1, dtype=torch.float64, generator=generator).to(device, dtype)
    return x, bias


def reference_formula(x: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
    """The op's definition from plain ATen ops (differentiable), bias holding C values."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return torch.sigmoid((torch.softmax(x, dim=1) + bias.reshape(shape)) * scale)


def reference(x: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
    """The op's definition in float64 on the CPU."""
    return reference_formula(x.detach().to("cpu", torch.float64), bias.detach().to("cpu", torch.float64), scale)


def reference_gradients(x, bias, scale, grad_out):
    """The gradients in x and bias of the op's definition: autograd in float64 on the CPU."""
    x64 = x.detach().to("cpu", torch.float64).requires_grad_()
    bias64 = bias.detach().to("cpu", torch.float64).requires_grad_()
    reference_formula(x64, bias64, scale).backward(grad_out.detach().to("cpu", torch.float64))
    return x64.grad, bias64.grad


# Max abs error allowed against the float64 reference, by dtype: the op computes in fp32
# (fp64 for fp64 input) and rounds once to the output dtype; outputs lie in (0, 1).
TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}


def assert_matches_reference(out, x, bias, scale):
    expected = reference(x, bias, scale)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    got = out.detach().to("cpu", torch.float64)
    assert not got.isnan().any(), "output has NaN where the reference has none"
    error = (got - expected).abs().max().item() if got.numel() else 0.0
    assert error <= TOLERANCE[x.dtype], f"max abs error {error:.3g} > {TOLERANCE[x.dtype]:.0e}"


def poison_cuda_allocator(nbytes: int) -> None:
    """Fill the caching allocator's next free blocks with NaN, so that any element an op
    leaves unwritten in a fresh output shows up as NaN instead of stale plausible values."""
    torch.empty(nbytes // 4 + 1024, device="cuda").fill_(float("nan"))
