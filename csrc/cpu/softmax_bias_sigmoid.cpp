// The CPU kernel of fused::softmax_bias_sigmoid: one pass over x, parallel over blocks of
// spatial positions. A block of positions is gathered channel by channel into a small
// buffer so that the max, the exponentials and the sum run along contiguous memory
// whatever the layout of x.

// The clamps and NaN selects of the loops below vectorize only when GCC may evaluate float
// comparisons speculatively; the kernel never relies on floating-point exceptions.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "cpu/column_softmax.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "ops/softmax_bias_sigmoid.h"

namespace fused_ops {
namespace {

using cpu::kBlock;

// The softmax tail of tasks [begin, end), each kBlock positions of one sample.
template <typename scalar_t>
FUSED_OPS_ALWAYS_INLINE void run_tasks(const scalar_t* x_data, const scalar_t* bias_data,
                                       scalar_t* out_data, at::opmath_type<scalar_t> scale,
                                       const ChannelView& v, int64_t begin, int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t channels = v.channels;
  const int64_t blocks_per_sample = (v.positions + kBlock - 1) / kBlock;
  std::vector<acc_t> values(static_cast<size_t>(channels * kBlock));
  int64_t x_offset[kBlock];
  int64_t out_offset[kBlock];
  acc_t inv_sum[kBlock];
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / blocks_per_sample;
    const int64_t first = (task % blocks_per_sample) * kBlock;
    const int64_t count = std::min(kBlock, v.positions - first);
    cpu::position_offsets(v.x, v.inner_size, n, first, count, x_offset);
    cpu::position_offsets(v.out, v.inner_size, n, first, count, out_offset);
    // Blocks inside one inner group of a layout whose positions lie at stride 1 (contiguous
    // NCHW) move as plain runs.
    const bool in_one_group = first % v.inner_size + count <= v.inner_size;
    for (int64_t c = 0; c < channels; ++c) {
      cpu::load_row(values.data() + c * kBlock, x_data + c * v.x.c, x_offset, count,
                    in_one_group && v.x.inner == 1);
    }
    cpu::column_softmax(values.data(), channels, count, inv_sum);
    for (int64_t c = 0; c < channels; ++c) {
      acc_t* row = values.data() + c * kBlock;
      const acc_t channel_bias = static_cast<acc_t>(bias_data[c]);
      for (int64_t j = 0; j < count; ++j) {
        row[j] = cpu::sigmoid_of((row[j] * inv_sum[j] + channel_bias) * scale);
      }
      cpu::store_row(out_data + c * v.out.c, row, out_offset, count, in_one_group && v.out.inner == 1);
    }
  }
}

template <typename scalar_t>
FUSED_OPS_AVX2 void run_tasks_avx2(const scalar_t* x_data, const scalar_t* bias_data,
                                   scalar_t* out_data, at::opmath_type<scalar_t> scale,
                                   const ChannelView& v, int64_t begin, int64_t end) {
  run_tasks<scalar_t>(x_data, bias_data, out_data, scale, v, begin, end);
}

template <typename scalar_t>
void run(const at::Tensor& x, const at::Tensor& bias, double scale, const ChannelView& v,
         at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x_data = x.const_data_ptr<scalar_t>();
  const scalar_t* bias_data = bias.const_data_ptr<scalar_t>();
  scalar_t* out_data = out.mutable_data_ptr<scalar_t>();
  const acc_t scale_acc = static_cast<acc_t>(kernel_scale(x.scalar_type(), scale));
  const int64_t tasks = v.batch * ((v.positions + kBlock - 1) / kBlock);
  // Each task touches all C channels of its positions: grain by bytes, not by blocks.
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, v.channels * kBlock));
  const bool avx2 = cpu::with_avx2();
  at::parallel_for(0, tasks, grain, [&](int64_t begin, int64_t end) {
    if (avx2) {
      run_tasks_avx2<scalar_t>(x_data, bias_data, out_data, scale_acc, v, begin, end);
    } else {
      run_tasks<scalar_t>(x_data, bias_data, out_data, scale_acc, v, begin, end);
    }
  });
}

}  // namespace

bool cpu_kernels_use_avx2() { return cpu::with_avx2(); }

void softmax_bias_sigmoid_cpu_kernel(const at::Tensor& x, const at::Tensor& bias, double scale,
                                     const ChannelView& view, at::Tensor& out) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "fused::softmax_bias_sigmoid (CPU)",
                                  [&] { run<scalar_t>(x, bias, scale, view, out); });
}

}  // namespace fused_ops
