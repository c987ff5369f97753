#pragma once
// fused::softmax_bias_sigmoid(Tensor x, Tensor bias, float scale) -> Tensor
//   out = sigmoid((softmax(x, dim=1) + bias) * scale), x of shape (N, C, *spatial).
//
// Every backend sees x and out through the same view, (N, C, S) with the S spatial positions
// of a sample addressed by two strided groups, so no layout needs a copy: position s sits at
// (s / inner_size) * stride_outer + (s % inner_size) * stride_inner.

#include <ATen/core/Tensor.h>
#include <c10/util/DimVector.h>

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
// Whether every offset inside one sample of the view, positions included, fits in 32 bits.
bool offsets_fit_in_32_bits(const ChannelView& view);

// fused::softmax_bias_sigmoid's CUDA kernel writing into `out` (x's shape, dtype and device;
// any strides), which it returns: the fused layer's fallback reads a channels_last convolution
// output and writes its NCHW output in one pass.
at::Tensor softmax_bias_sigmoid_cuda_into(const at::Tensor& x, const at::Tensor& bias,
                                          double scale, at::Tensor out);

// Whether also every offset across the batch fits in 32 bits, batch strides included: the
// softmax_stats variants, which take 32-bit batch strides.
bool all_offsets_fit_in_32_bits(const ChannelView& view);

// `programs` as the grid of one launch; an error that names `op` and x's shape where one launch
// cannot hold them.
uint32_t grid_size(int64_t programs, const char* op, const at::Tensor& x);

// Whether x and out of the view both hold a sample's positions at stride 1, with one channel
// stride: the CONTIGUOUS kernel variants.
bool positions_contiguous(const ChannelView& view);

// The variant of `kernel` (KERNEL_NAME of its triton_src module) for a call, from the table
// the build generated: the most specific layout flavour the call allows (CONTIGUOUS, first
// reading the softmax statistics where `softmax_stats`, which the caller passes only where
// all_offsets_fit_in_32_bits; then the strided view with 32-bit offsets, then 64-bit ones) that
// the kernel has, then its single-pass tile whose BLOCK_C is C if it has one compiled for that
// (channels_exact), else the one with the smallest BLOCK_C that holds C, else its multi-pass tile.
const Variant& choose_variant(const char* kernel, at::ScalarType dtype, int64_t channels,
                              bool contiguous, bool fits_in_32_bits, bool softmax_stats);
#endif

}  // namespace fused_ops
