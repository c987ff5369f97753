"""Typed Python entry points of the ops that the op library registers under torch.ops.fused,
and their autograd formulas.

The schemas live in csrc/registration.cpp; the Meta kernels that torch.compile and
torch.export trace with are registered in C++ next to each op, so that Python and C++ users
(TorchScript, AOTInductor) see the same shapes and the same errors.
"""
from __future__ import annotations

import torch


def softmax_bias_sigmoid(x: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
    """``sigmoid((softmax(x, dim=1) + bias) * scale)`` in one pass over x.

    x: (N, C, *spatial), float32, float16 or bfloat16 (float64 on the CPU), any strides.
    bias: C values of x's dtype and device, e.g. shape (C,) or (C, 1, 1).
    scale: a Python float. Returns a tensor of x's shape, dtype and memory format.
    Differentiable in x and bias.
    """
    return torch.ops.fused.softmax_bias_sigmoid(x, bias, float(scale))


def conv_transpose2d_softmax_bias_sigmoid(x: torch.Tensor, weight: torch.Tensor,
                                          conv_bias: torch.Tensor | None, bias: torch.Tensor,
                                          stride: int | tuple[int, int], padding: int | tuple[int, int],
                                          output_padding: int | tuple[int, int],
                                          scale: float) -> torch.Tensor:
    """``sigmoid((softmax(conv_transpose2d(x, weight, conv_bias, stride, padding, output_padding),
    dim=1) + bias) * scale)``, dilation 1, groups 1.

    x: (N, C_in, H, W); weight: (C_in, C_out, kH, kW); conv_bias (optional) and bias: C_out values;
    all of one dtype and device. On CUDA, float32 runs as one kernel with a TF32 convolution (as
    PyTorch's own does by default) where C_out <= 128; elsewhere, and on the CPU, as ATen's
    convolution followed by the fused tail. Returns a contiguous (N, C_out, H_out, W_out) tensor.
    Not differentiable: use the convolution and :func:`softmax_bias_sigmoid` for training.
    """
    pair = torch.nn.modules.utils._pair
    return torch.ops.fused.conv_transpose2d_softmax_bias_sigmoid(
        x, weight, conv_bias, bias, pair(stride), pair(padding), pair(output_padding), float(scale))


def _softmax_bias_sigmoid_setup_context(ctx, inputs, output):
    x, bias, scale = inputs
    ctx.scale = scale
    ctx.bias_shape = bias.shape
    ctx.save_for_backward(x, output)


def _softmax_bias_sigmoid_backward(ctx, grad_output):
    # With p = softmax(x), z = (p + bias) * scale and out = sigmoid(z): dz = g * out * (1 - out),
    # dp = scale * dz, dx = p * (dp - sum_c p * dp), dbias = sum of dp over all but the channels.
    # Composite ATen ops in float32 (float64 for float64); p is recomputed from x rather than
    # saved, so training keeps no extra full-size tensor.
    x, out = ctx.saved_tensors
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    out_c = out.to(compute)
    grad_p = grad_output.to(compute) * out_c * (1 - out_c) * ctx.scale
    grad_x = grad_bias = None
    if ctx.needs_input_grad[0]:
        p = torch.softmax(x.to(compute), dim=1)
        grad_x = (p * (grad_p - (p * grad_p).sum(dim=1, keepdim=True))).to(x.dtype)
    if ctx.needs_input_grad[1]:
        reduce_dims = [d for d in range(x.dim()) if d != 1]
        grad_bias = grad_p.sum(dim=reduce_dims).to(x.dtype).reshape(ctx.bias_shape)
    return grad_x, grad_bias, None


torch.library.register_autograd("fused::softmax_bias_sigmoid", _softmax_bias_sigmoid_backward,
                                setup_context=_softmax_bias_sigmoid_setup_context)


def kernel_images(device: torch.device | str = "cpu") -> list[str]:
    """Diagnostics. For "cpu": every ahead-of-time compiled image in the library, one line
    each ("softmax_bias_sigmoid fp32 BLOCK_C=128,... : sm_89 cubin"). For a CUDA device: the
    image each kernel variant runs from there, honouring FUSED_OPS_ARCH ("... : sm_89 PTX (JIT)").
    """
    return torch.ops.fused.kernel_images(torch.empty(0, device=device))
