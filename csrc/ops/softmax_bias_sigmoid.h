#pragma once
// fused::softmax_bias_sigmoid(Tensor x, Tensor bias, float scale) -> Tensor
//   out = sigmoid((softmax(x, dim=1) + bias) * scale), x of shape (N, C, *spatial).
//
// Every backend sees x and out through the same view, (N, C, S) with the S spatial positions
// of a sample addressed by two strided groups, so no layout needs a copy: position s sits at
// (s / inner_size) * stride_outer + (s % inner_size) * stride_inner.

#include <ATen/core/Tensor.h>

#include <cstdint>

#ifdef FUSED_OPS_WITH_CUDA
#include "kernel_table.h"
#endif

namespace fused_ops {

// Validates x and bias as the op takes them (shared with the backward): a RuntimeError that
// starts with `op` and names the problem. Symbolic-shape safe, for the Meta kernels.
void check_softmax_bias_sigmoid_inputs(const at::Tensor& x, const at::Tensor& bias, const char* op);

struct ChannelStrides {
  int64_t n, c, outer, inner;

  // The element offset of channel 0 at position (outer, inner) of sample n.
  int64_t offset(int64_t sample, int64_t outer_index, int64_t inner_index) const {
    return sample * n + outer_index * outer + inner_index * inner;
  }
};

struct ChannelView {
  int64_t batch;
  int64_t channels;
  int64_t positions;   // spatial positions per sample
  int64_t inner_size;  // positions in one inner group (divides positions)
  ChannelStrides x;
  ChannelStrides out;
};

// The view of x and out, or false when their spatial strides need more than two groups
// (for instance a 5-D tensor sliced in two spatial dims); make x contiguous then.
bool channel_view(const at::Tensor& x, const at::Tensor& out, ChannelView& view);

// The scale as the float that the fp32 math multiplies by. A finite scale beyond float's range
// saturates to +-FLT_MAX instead of becoming +-inf, so that (p + bias) * scale stays 0 where
// p + bias is 0, as in the float64 reference (inf * 0 would be NaN); inf and NaN stay as given.
float scale_as_float(double scale);

// The scale as a kernel computing in x's opmath type takes it: unchanged for float64, else
// scale_as_float.
double kernel_scale(at::ScalarType dtype, double scale);

// The CPU kernel: writes out (same shape as x, any strides) from x and a contiguous bias of
// C values, all of x's dtype.
void softmax_bias_sigmoid_cpu_kernel(const at::Tensor& x, const at::Tensor& bias, double scale,
                                     const ChannelView& view, at::Tensor& out);

#ifdef FUSED_OPS_WITH_CUDA
// Whether every offset inside one sample of the view, positions included, fits in 32 bits.
bool offsets_fit_in_32_bits(const ChannelView& view);

// `programs` as the grid of one launch; an error that names `op` and x's shape where one launch
// cannot hold them.
uint32_t grid_size(int64_t programs, const char* op, const at::Tensor& x);

// Whether x and out of the view both hold a sample's positions at stride 1, with one channel
// stride: the CONTIGUOUS kernel variants.
bool positions_contiguous(const ChannelView& view);

// The variant of `kernel` (KERNEL_NAME of its triton_src module) for a call, from the table
// the build generated: the most specific layout flavour the call allows (CONTIGUOUS, then the
// strided view with 32-bit offsets, then 64-bit ones) that the kernel has, then its
// single-pass tile with the smallest BLOCK_C that holds C, else its multi-pass tile.
const Variant& choose_variant(const char* kernel, at::ScalarType dtype, int64_t channels,
                              bool contiguous, bool fits_in_32_bits);
#endif

}  // namespace fused_ops
