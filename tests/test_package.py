"""The package as users meet it: what it imports, what it links, how it fails, ModelNew."""
import subprocess
import sys
import textwrap

import pytest
import torch

import fused_ops
from conftest import reference


def run_python(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)


def test_import_needs_no_triton():
    result = run_python("""
        import sys, torch, fused_ops
        x, b = torch.randn(2, 3, 4), torch.randn(3)
        fused_ops.softmax_bias_sigmoid(x, b, 2.0)
        assert "triton" not in sys.modules, "fused_ops imported triton at run time"
    """)
    assert result.returncode == 0, result.stderr


def test_library_does_not_link_the_cuda_driver():
    """The driver is reached through the CUDA runtime at run time, so that the library loads
    on machines with no NVIDIA driver (like this test's CI machine)."""
    with open(fused_ops.library_path(), "rb") as library:
        assert b"libcuda.so" not in library.read()


def test_torch_version_mismatch_names_both_versions():
    result = run_python("""
        import sys, types
        sys.modules["fused_ops._build_info"] = types.SimpleNamespace(
            TORCH_VERSION="1.0.0", CUDA_VERSION=None, ARCHS="")
        import fused_ops
    """)
    assert result.returncode != 0
    assert "built for torch 1.0.0" in result.stderr and torch.__version__ in result.stderr


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_model_new_matches_model(device):
    torch.manual_seed(0)
    args = (8, 16, 4, 2, 1, 1, (16, 1, 1), 2.0)
    model = fused_ops.Model(*args).to(device)
    new = fused_ops.ModelNew(*args).to(device)
    new.load_state_dict(model.state_dict())
    model.load_state_dict(new.state_dict())
    x = torch.rand(3, 8, 9, 11, device=device)
    with torch.no_grad():
        out = new(x)
    conv = new.conv_transpose
    conv_output = torch.nn.functional.conv_transpose2d(
        x.double().cpu(), conv.weight.double().cpu(), conv.bias.double().cpu(), stride=2, padding=1, output_padding=1)
    expected = reference(conv_output, new.bias, 2.0)
    # On CUDA the convolution runs on TF32 tensor cores, as PyTorch's does by default; 1e-4 is
    # KernelBench's fp32 tolerance. On the CPU it is plain fp32.
    tolerance = 1e-4 if device == "cuda" else 2e-6
    assert (out.double().cpu() - expected).abs().max().item() < tolerance


@pytest.mark.parametrize("bias_shape", [(16,), (1, 16), (16, 1), (16, 2, 1), (2, 16, 1, 1)])
def test_model_new_rejects_bias_that_is_not_per_channel(bias_shape):
    with pytest.raises(ValueError, match="one value per channel"):
        fused_ops.ModelNew(8, 16, 4, 2, 1, 1, bias_shape, 2.0)


@pytest.mark.parametrize("scale, error, message", [
    ("2", TypeError, "tensor; got str '2'"),
    (None, TypeError, "tensor; got NoneType"),
    (True, TypeError, "tensor; got bool"),
    (torch.tensor([1.0, 2.0]), ValueError, r"real tensor; got a torch.float32 tensor of shape \(2,\)"),
])
def test_wrappers_name_a_bad_scale(scale, error, message):
    x, b = torch.randn(2, 3, 4, 4), torch.randn(3)
    with pytest.raises(error, match="^softmax_bias_sigmoid: scale must be a real number or a one-element " + message):
        fused_ops.softmax_bias_sigmoid(x, b, scale)
    w = torch.randn(3, 3, 2, 2)
    with pytest.raises(error, match="^conv_transpose2d_softmax_bias_sigmoid: scale must be a real number or a "
                                    "one-element " + message):
        fused_ops.conv_transpose2d_softmax_bias_sigmoid(x, w, None, b, 1, 0, 0, scale)


def test_wrappers_take_a_one_element_tensor_or_any_real_scale():
    x, b = torch.randn(2, 3, 4, 4), torch.randn(3)
    expected = fused_ops.softmax_bias_sigmoid(x, b, 2.0)
    for scale in (torch.tensor(2.0), torch.tensor([[2]]), 2):
        torch.testing.assert_close(fused_ops.softmax_bias_sigmoid(x, b, scale), expected, rtol=0, atol=0)
