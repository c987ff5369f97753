// The CPU kernel of fused::softmax_bias_sigmoid_backward: one pass over x and grad_out,
// parallel over fixed chunks of blocks of positions (the bias sums of each chunk go to a row
// of their own, so the result does not depend on the thread count). Like the forward, a block
// is gathered channel by channel into small buffers where the arithmetic runs contiguously.

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "cpu/column_softmax.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "ops/softmax_bias_sigmoid_backward.h"

namespace fused_ops {
namespace {

using cpu::kBlock;

struct BackwardPointers {
  const void* x;
  const void* bias;
  const void* grad_out;
  void* grad_x;
};

// Chunks [chunk_begin, chunk_end) of `chunk` tasks, each kBlock positions of one sample; the
// bias sums of chunk k go to row k of bias_sums.
template <typename scalar_t>
FUSED_OPS_ALWAYS_INLINE void run_chunks(const BackwardPointers& data,
                                        at::opmath_type<scalar_t> scale, const BackwardView& bv,
                                        int64_t chunk, int64_t chunk_begin, int64_t chunk_end,
                                        at::opmath_type<scalar_t>* bias_sums) {
  using acc_t = at::opmath_type<scalar_t>;
  const ChannelView& v = bv.grad_out;
  const auto* x_data = static_cast<const scalar_t*>(data.x);
  const auto* bias_data = static_cast<const scalar_t*>(data.bias);
  const auto* grad_out_data = static_cast<const scalar_t*>(data.grad_out);
  auto* grad_x_data = static_cast<scalar_t*>(data.grad_x);
  const int64_t channels = v.channels;
  const int64_t blocks_per_sample = (v.positions + kBlock - 1) / kBlock;
  const int64_t tasks = v.batch * blocks_per_sample;
  std::vector<acc_t> probs(static_cast<size_t>(channels * kBlock));
  std::vector<acc_t> grad_probs(static_cast<size_t>(channels * kBlock));
  int64_t x_offset[kBlock];
  int64_t grad_out_offset[kBlock];
  int64_t grad_x_offset[kBlock];
  acc_t inv_sum[kBlock];
  acc_t dot[kBlock];
  for (int64_t k = chunk_begin; k < chunk_end; ++k) {
    acc_t* chunk_bias_sums = bias_sums + k * channels;
    for (int64_t task = k * chunk; task < std::min(tasks, (k + 1) * chunk); ++task) {
      const int64_t n = task / blocks_per_sample;
      const int64_t first = (task % blocks_per_sample) * kBlock;
      const int64_t count = std::min(kBlock, v.positions - first);
      cpu::position_offsets(v.x, v.inner_size, n, first, count, x_offset);
      cpu::position_offsets(v.out, v.inner_size, n, first, count, grad_out_offset);
      cpu::position_offsets(bv.grad_x.out, v.inner_size, n, first, count, grad_x_offset);
      std::fill(dot, dot + count, acc_t(0));
      const bool in_one_group = first % v.inner_size + count <= v.inner_size;
      for (int64_t c = 0; c < channels; ++c) {
        cpu::load_row(probs.data() + c * kBlock, x_data + c * v.x.c, x_offset, count,
                      in_one_group && v.x.inner == 1);
      }
      cpu::column_softmax(probs.data(), channels, count, inv_sum);
      for (int64_t c = 0; c < channels; ++c) {
        acc_t* p_row = probs.data() + c * kBlock;
        acc_t* dp_row = grad_probs.data() + c * kBlock;
        cpu::load_row(dp_row, grad_out_data + c * v.out.c, grad_out_offset, count,
                      in_one_group && v.out.inner == 1);
        const acc_t channel_bias = static_cast<acc_t>(bias_data[c]);
        acc_t channel_sum = 0;
        for (int64_t j = 0; j < count; ++j) {
          const acc_t p = p_row[j] * inv_sum[j];
          const acc_t out = cpu::sigmoid_of((p + channel_bias) * scale);
          const acc_t dp = scale * dp_row[j] * out * (acc_t(1) - out);
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
        cpu::store_row(grad_x_data + c * bv.grad_x.out.c, p_row, grad_x_offset, count,
                       in_one_group && bv.grad_x.out.inner == 1);
      }
    }
  }
}

template <typename scalar_t>
FUSED_OPS_AVX2 void run_chunks_avx2(const BackwardPointers& data, at::opmath_type<scalar_t> scale,
                                    const BackwardView& bv, int64_t chunk, int64_t chunk_begin,
                                    int64_t chunk_end, at::opmath_type<scalar_t>* bias_sums) {
  run_chunks<scalar_t>(data, scale, bv, chunk, chunk_begin, chunk_end, bias_sums);
}

template <typename scalar_t>
at::Tensor run(const at::Tensor& x, const at::Tensor& bias, const at::Tensor& grad_out,
               double scale, const BackwardView& bv, at::Tensor& grad_x) {
  using acc_t = at::opmath_type<scalar_t>;
  const ChannelView& v = bv.grad_out;
  const BackwardPointers data{x.const_data_ptr(), bias.const_data_ptr(), grad_out.const_data_ptr(),
                              grad_x.mutable_data_ptr()};
  const int64_t tasks = v.batch * ((v.positions + kBlock - 1) / kBlock);
  const acc_t scale_acc = static_cast<acc_t>(kernel_scale(x.scalar_type(), scale));
  // A task touches all C channels of its positions: chunks by bytes, not by blocks.
  const int64_t chunk = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, v.channels * kBlock));
  const int64_t chunks = (tasks + chunk - 1) / chunk;
  at::Tensor bias_sums =
      at::zeros({chunks, v.channels}, x.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
  acc_t* bias_sums_data = bias_sums.mutable_data_ptr<acc_t>();
  const bool avx2 = cpu::with_avx2();
  at::parallel_for(0, chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    if (avx2) {
      run_chunks_avx2<scalar_t>(data, scale_acc, bv, chunk, chunk_begin, chunk_end, bias_sums_data);
    } else {
      run_chunks<scalar_t>(data, scale_acc, bv, chunk, chunk_begin, chunk_end, bias_sums_data);
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
