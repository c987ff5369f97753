#pragma once
// fused::softmax_bias_sigmoid_backward(Tensor grad_out, Tensor x, Tensor bias, float scale)
//     -> (Tensor grad_x, Tensor grad_bias)
//   The gradients of out = sigmoid((softmax(x, dim=1) + bias) * scale), recomputed from x:
//   with p = softmax(x), dp = scale * grad_out * out * (1 - out),
//   grad_x = p * (dp - sum_c p * dp) and grad_bias = dp summed over all but the channels.
//
// Every backend sees x, grad_out and grad_x through the forward's (N, C, S) view.

#include <ATen/core/Tensor.h>

#include "ops/softmax_bias_sigmoid.h"

namespace fused_ops {

// Two channel views with the same grouping of the spatial dimensions, hence the same sizes
// and the same strides of x: one with grad_out as its `out`, one with grad_x.
struct BackwardView {
  ChannelView grad_out;
  ChannelView grad_x;
};

// The CPU kernel: writes grad_x and returns per-chunk sums of dp, (chunks, C) in the compute
// type (float64 for float64, else float32), which the caller adds up into grad_bias. bias is
// C contiguous values.
at::Tensor softmax_bias_sigmoid_backward_cpu_kernel(const at::Tensor& x, const at::Tensor& bias,
                                                   const at::Tensor& grad_out, double scale,
                                                   const BackwardView& view, at::Tensor& grad_x);

// fused::softmax_bias_sigmoid_backward on x's device (no statistics) writing grad_x into
// `grad_x`, which has x's sizes and strides and may be x itself: every kernel reads all of a
// position's x before it writes that position. Returns grad_bias. The fused layer's backward
// turns its recomputed convolution output into grad_y so, holding one such tensor, not two.
at::Tensor softmax_bias_sigmoid_backward_into(const at::Tensor& grad_out, const at::Tensor& x,
                                              const at::Tensor& bias, double scale,
                                              at::Tensor grad_x);

}  // namespace fused_ops
