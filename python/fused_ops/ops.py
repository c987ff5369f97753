"""Typed Python entry points of the ops that the op library registers under torch.ops.fused.

The schemas live in csrc/registration.cpp; the Meta kernels that torch.compile and
torch.export trace with, and the Autograd kernels, are registered in C++ next to each op, so
that Python and C++ users (TorchScript, AOTInductor) see the same shapes, gradients and errors.
"""
from __future__ import annotations

import numbers

import torch


def _scale(op: str, scale) -> float:
    """scale as the float the op's schema takes: a real number, or a one-element tensor."""
    if isinstance(scale, torch.Tensor):
        if scale.numel() != 1 or scale.is_complex():
            raise ValueError(f"{op}: scale must be a real number or a one-element real tensor; got a "
                             f"{scale.dtype} tensor of shape {tuple(scale.shape)}")
        return float(scale.item())
    if isinstance(scale, bool) or not isinstance(scale, (numbers.Real, torch.SymFloat, torch.SymInt)):
        raise TypeError(f"{op}: scale must be a real number or a one-element tensor; got "
                        f"{type(scale).__name__} {scale!r}")
    return float(scale)


def softmax_bias_sigmoid(x: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
    """``sigmoid((softmax(x, dim=1) + bias) * scale)`` in one pass over x.

    x: (N, C, *spatial), float32, float16, bfloat16 or float64, any strides.
    bias: C values of x's dtype and device, e.g. shape (C,) or (C, 1, 1).
    scale: a real number (or a one-element tensor). Returns a tensor of x's shape, dtype and
    memory format.
    Differentiable in x and bias, by a fused kernel that recomputes the softmax from x
    (``torch.ops.fused.softmax_bias_sigmoid_backward``); not twice differentiable.
    """
    return torch.ops.fused.softmax_bias_sigmoid(x, bias, _scale("softmax_bias_sigmoid", scale))


def conv_transpose2d_softmax_bias_sigmoid(x: torch.Tensor, weight: torch.Tensor,
                                          conv_bias: torch.Tensor | None, bias: torch.Tensor,
                                          stride: int | tuple[int, int], padding: int | tuple[int, int],
                                          output_padding: int | tuple[int, int],
                                          scale: float) -> torch.Tensor:
    """``sigmoid((softmax(conv_transpose2d(x, weight, conv_bias, stride, padding, output_padding),
    dim=1) + bias) * scale)``, dilation 1, groups 1.

    x: (N, C_in, H, W); weight: (C_in, C_out, kH, kW); conv_bias (optional) and bias: C_out values;
    all of one dtype and device. On CUDA, where C_out <= 128, it runs as one kernel: float16 and
    bfloat16 as they are, float32 where TF32 convolutions are allowed (PyTorch's default) with
    TF32's precision, as fp16 operands scaled by powers of two per sample (x) and per tensor (the
    weight); elsewhere, and on the CPU, as ATen's convolution followed by the fused tail. Returns
    a contiguous (N, C_out, H_out, W_out) tensor.
    Differentiable in x, weight, conv_bias and bias: the backward recomputes the convolution
    (ATen's), runs the tail's fused backward and then ATen's convolution backward; it keeps no
    activation beyond the inputs. Not twice differentiable.
    """
    pair = torch.nn.modules.utils._pair
    return torch.ops.fused.conv_transpose2d_softmax_bias_sigmoid(
        x, weight, conv_bias, bias, pair(stride), pair(padding), pair(output_padding),
        _scale("conv_transpose2d_softmax_bias_sigmoid", scale))


def kernel_images(device: torch.device | str = "cpu") -> list[str]:
    """Diagnostics. For "cpu": every ahead-of-time compiled image in the library, one line
    each ("softmax_bias_sigmoid fp32 BLOCK_C=128,... : sm_89 cubin"). For a CUDA device: the
    image each kernel variant runs from there, honouring FUSED_OPS_ARCH ("... : sm_89 PTX (JIT)").
    """
    return torch.ops.fused.kernel_images(torch.empty(0, device=device))


def explain(x: torch.Tensor, bias: torch.Tensor) -> str:
    """Diagnostics: which kernel ``softmax_bias_sigmoid(x, bias, scale)`` runs for these tensors,
    by the op's own choice. On CUDA the variant's kernel, dtype and constexprs (its layout
    flavour and tile) and the image it runs from, e.g. "softmax_bias_sigmoid fp32
    ...,SECTOR_STORES=8,... (sm_90 cubin)"; on the CPU which copy of the CPU kernel. Tensors on
    the ``meta`` device stand for CUDA tensors of the same layout (storage on 16 bytes, as CUDA
    allocates it): their answer is the CUDA choice, with no GPU needed."""
    return torch.ops.fused.explain_softmax_bias_sigmoid(x, bias)
