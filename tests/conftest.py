import pytest
import torch

import fused_ops  # noqa: F401  (registers torch.ops.fused)

CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def reference(x: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
    """The op's definition in float64 on the CPU, from plain ATen ops."""
    x64 = x.detach().to("cpu", torch.float64)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    b64 = bias.detach().to("cpu", torch.float64).reshape(shape)
    return torch.sigmoid((torch.softmax(x64, dim=1) + b64) * scale)


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
