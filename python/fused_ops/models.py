"""The workload's reference model and its drop-in replacement (see ../shared/WORKLOAD.md)."""
from typing import Sequence, Tuple, Union

import torch
from torch import nn

IntOrPair = Union[int, Tuple[int, int]]


class Model(nn.Module):
    """Reference: ConvTranspose2d, softmax over channels, + bias, x scale, sigmoid, in plain PyTorch."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair, stride: IntOrPair,
                 padding: IntOrPair, output_padding: IntOrPair, bias_shape: Sequence[int],
                 scaling_factor: float):
        super().__init__()
        self.conv_transpose = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=stride,
                                                 padding=padding, output_padding=output_padding)
        self.bias = nn.Parameter(torch.randn(bias_shape))
        self.scaling_factor = scaling_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_transpose(x)
        x = torch.softmax(x, dim=1)
        x = x + self.bias
        x = x * self.scaling_factor
        return torch.sigmoid(x)


class ModelNew(Model):
    """Drop-in for :class:`Model`: same constructor, parameters and state dict. The whole forward
    is one differentiable op, ``torch.ops.fused.conv_transpose2d_softmax_bias_sigmoid``: one
    kernel on CUDA where it applies, with or without gradients; its backward recomputes the
    convolution rather than keeping its output.

    Scriptable and traceable: ``torch.jit.script(ModelNew(...))`` saves a module that loads in
    any process, Python or C++, that has loaded the op library.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair, stride: IntOrPair,
                 padding: IntOrPair, output_padding: IntOrPair, bias_shape: Sequence[int],
                 scaling_factor: float):
        shape = tuple(bias_shape)
        # Model adds bias by broadcasting against (N, C, H, W); the fused op adds one value per
        # channel. They agree only when bias varies along the channel axis alone.
        if len(shape) < 3 or len(shape) > 4 or shape[-3] != out_channels or any(
                size != 1 for i, size in enumerate(shape) if i != len(shape) - 3):
            raise ValueError(f"ModelNew: bias_shape {shape} does not broadcast as one value per "
                             f"channel against the (N, {out_channels}, H, W) conv output; use "
                             f"({out_channels}, 1, 1) or (1, {out_channels}, 1, 1)")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, output_padding,
                         bias_shape, scaling_factor)
        self.scaling_factor = float(scaling_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv_transpose
        return torch.ops.fused.conv_transpose2d_softmax_bias_sigmoid(
            x, conv.weight, conv.bias, self.bias, conv.stride, conv.padding, conv.output_padding,
            self.scaling_factor)
