#pragma once
// fused::softmax_bias_sigmoid(Tensor x, Tensor bias, float scale) -> Tensor
//   out = sigmoid((softmax(x, dim=1) + bias) * scale), x of shape (N, C, *spatial).
//
// Every backend sees x and out through the same view (ops/channel_view.h), so no layout needs a
// copy.

#include <ATen/core/Tensor.h>
#include <c10/util/DimVector.h>

#include <cstdint>

#include "ops/channel_view.h"

namespace fused_ops {

// Validates x and bias as the op takes them (shared with the backward): a RuntimeError that
// starts with `op` and names the problem. Symbolic-shape safe, for the Meta kernels.
void check_softmax_bias_sigmoid_inputs(const at::Tensor& x, const at::Tensor& bias, const char* op);

// The scale as the float that the fp32 math multiplies by. A finite scale beyond float's range
// saturates to +-FLT_MAX instead of becoming +-inf, so that (p + bias) * scale stays 0 where
// p + bias is 0, as in the float64 reference (inf * 0 would be NaN); inf and NaN stay as given.
float scale_as_float(double scale);

// The scale as a kernel computing in x's opmath type takes it: unchanged for float64, else
// scale_as_float.
double kernel_scale(at::ScalarType dtype, double scale);

// Whether the CPU kernels run their AVX2+FMA copy on this CPU.
bool cpu_kernels_use_avx2();

// The CPU kernel: writes out (same shape as x, any strides) from x and a contiguous bias of
// C values, all of x's dtype.
void softmax_bias_sigmoid_cpu_kernel(const at::Tensor& x, const at::Tensor& bias, double scale,
                                     const ChannelView& view, at::Tensor& out);

// fused::softmax_bias_sigmoid_forward(Tensor x, Tensor bias, float scale)
//     -> (Tensor out, Tensor softmax_stats)
//   out as above, and the softmax statistics of every position, which the backward reads
//   instead of reducing x over the channels again: shape (N, 2, *spatial), contiguous, in x's
//   compute type (float64 for float64, else float32); [:, 0] the channel max, [:, 1] the
//   inverse of sum_c exp(x - max). Autograd runs this forward where softmax_stats_pay_off(x);
//   the op itself never writes them.

// Whether the statistics save the backward more than they cost the forward: x on CUDA,
// contiguous NCHW, of a dtype with statistics variants (fp32: docs/performance.md), fewer than
// 2^31 elements, with C inside a single-pass tile of the forward that writes them and of the
// backward that reads them. Elsewhere a kernel would not read them, and on the CPU the
// backward's kernel recomputes them at no extra pass. Under symbolic sizes C is guarded, not
// specialized; the element count is not guarded (see the definition).
bool softmax_stats_pay_off(const at::Tensor& x);

// The statistics' shape for x, and an uninitialized tensor of it. Symbolic-shape safe, for the
// Meta kernels.
c10::SymDimVector softmax_stats_sizes(const at::Tensor& x);
at::Tensor empty_softmax_stats(const at::Tensor& x);

// The statistics from ATen ops: for the CPU, and for calls no statistics-writing kernel serves.
at::Tensor softmax_stats_by_aten(const at::Tensor& x);

#ifdef FUSED_OPS_WITH_CUDA
// fused::softmax_bias_sigmoid's CUDA kernel writing into `out` (x's shape, dtype and device;
// any strides), which it returns: the fused layer's fallback reads a channels_last convolution
// output and writes its NCHW output in one pass.
at::Tensor softmax_bias_sigmoid_cuda_into(const at::Tensor& x, const at::Tensor& bias,
                                          double scale, at::Tensor out);

// `programs` as the grid of one launch; an error that names `op` and x's shape where one launch
// cannot hold them.
uint32_t grid_size(int64_t programs, const char* op, const at::Tensor& x);
#endif

}  // namespace fused_ops
