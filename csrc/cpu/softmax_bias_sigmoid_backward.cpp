// The CPU kernel of fused::softmax_bias_sigmoid_backward: one pass over x and grad_out,
// parallel over fixed chunks of blocks of positions (the bias sums of each chunk go to a row
// of their own, so the result does not depend on the thread count). Like the forward, a block
// is gathered channel by channel into small buffers where the arithmetic runs contiguously.

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "cpu/column_softmax.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "ops/softmax_bias_sigmoid_backward.h"

namespace fused_ops {
namespace {

using cpu::kBlock;

template <typename scalar_t>
at::Tensor run(const at::Tensor& x, const at::Tensor& bias, const at::Tensor& grad_out,
               double scale, const BackwardView& bv, at::Tensor& grad_x) {
  using acc_t = at::opmath_type<scalar_t>;
  const ChannelView& v = bv.grad_out;
  const scalar_t* x_data = x.const_data_ptr<scalar_t>();
  const scalar_t* bias_data = bias.const_data_ptr<scalar_t>();
  const scalar_t* grad_out_data = grad_out.const_data_ptr<scalar_t>();
  scalar_t* grad_x_data = grad_x.mutable_data_ptr<scalar_t>();
  const int64_t channels = v.channels;
  const int64_t blocks_per_sample = (v.positions + kBlock - 1) / kBlock;
  const int64_t tasks = v.batch * blocks_per_sample;
  const acc_t scale_acc = static_cast<acc_t>(kernel_scale(x.scalar_type(), scale));
  // A task touches all C channels of its positions: chunks by bytes, not by blocks.
  const int64_t chunk = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, channels * kBlock));
  const int64_t chunks = (tasks + chunk - 1) / chunk;
  at::Tensor bias_sums =
      at::zeros({chunks, channels}, x.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
  acc_t* bias_sums_data = bias_sums.mutable_data_ptr<acc_t>();

  at::parallel_for(0, chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    std::vector<acc_t> probs(static_cast<size_t>(channels * kBlock));
    std::vector<acc_t> grad_probs(static_cast<size_t>(channels * kBlock));
    int64_t x_offset[kBlock];
    int64_t grad_out_offset[kBlock];
    int64_t grad_x_offset[kBlock];
    acc_t inv_sum[kBlock];
    acc_t dot[kBlock];
    for (int64_t k = chunk_begin; k < chunk_end; ++k) {
      acc_t* chunk_bias_sums = bias_sums_data + k * channels;
      for (int64_t task = k * chunk; task < std::min(tasks, (k + 1) * chunk); ++task) {
        const int64_t n = task / blocks_per_sample;
        const int64_t first = (task % blocks_per_sample) * kBlock;
        const int64_t count = std::min(kBlock, v.positions - first);
        for (int64_t j = 0; j < count; ++j) {
          const int64_t s = first + j;
          const int64_t outer = s / v.inner_size;
          const int64_t inner = s - outer * v.inner_size;
          x_offset[j] = v.x.offset(n, outer, inner);
          grad_out_offset[j] = v.out.offset(n, outer, inner);
          grad_x_offset[j] = bv.grad_x.out.offset(n, outer, inner);
          dot[j] = 0;
        }
        for (int64_t c = 0; c < channels; ++c) {
          acc_t* row = probs.data() + c * kBlock;
          const scalar_t* x_channel = x_data + c * v.x.c;
          for (int64_t j = 0; j < count; ++j) row[j] = static_cast<acc_t>(x_channel[x_offset[j]]);
        }
        cpu::column_softmax(probs.data(), channels, count, inv_sum);
        for (int64_t c = 0; c < channels; ++c) {
          acc_t* p_row = probs.data() + c * kBlock;
          acc_t* dp_row = grad_probs.data() + c * kBlock;
          const scalar_t* grad_out_channel = grad_out_data + c * v.out.c;
          for (int64_t j = 0; j < count; ++j) {
            dp_row[j] = static_cast<acc_t>(grad_out_channel[grad_out_offset[j]]);
          }
          const acc_t channel_bias = static_cast<acc_t>(bias_data[c]);
          acc_t channel_sum = 0;
          for (int64_t j = 0; j < count; ++j) {
            const acc_t p = p_row[j] * inv_sum[j];
            const acc_t out = cpu::sigmoid_of((p + channel_bias) * scale_acc);
            const acc_t dp = scale_acc * dp_row[j] * out * (acc_t(1) - out);
            p_row[j] = p;
            dp_row[j] = dp;
            dot[j] += p * dp;
            channel_sum += dp;
          }
          chunk_bias_sums[c] += channel_sum;
        }
        for (int64_t c = 0; c < channels; ++c) {
          acc_t* p_row = probs.data() + c * kBlock;
          const acc_t* dp_row = grad_probs.data() + c * kBlock;
          for (int64_t j = 0; j < count; ++j) p_row[j] *= dp_row[j] - dot[j];
          scalar_t* grad_x_channel = grad_x_data + c * bv.grad_x.out.c;
          for (int64_t j = 0; j < count; ++j) {
            grad_x_channel[grad_x_offset[j]] = static_cast<scalar_t>(p_row[j]);
          }
        }
      }
    }
  });
  return bias_sums;
}

}  // namespace

at::Tensor softmax_bias_sigmoid_backward_cpu_kernel(const at::Tensor& x, const at::Tensor& bias,
                                                   const at::Tensor& grad_out, double scale,
                                                   const BackwardView& view, at::Tensor& grad_x) {
  at::Tensor bias_sums;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "fused::softmax_bias_sigmoid_backward (CPU)", [&] {
                                    bias_sums = run<scalar_t>(x, bias, grad_out, scale, view, grad_x);
                                  });
  return bias_sums;
}

}  // namespace fused_ops
