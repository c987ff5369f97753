// The CPU kernel of fused::softmax_bias_sigmoid: one pass over x, parallel over blocks of
// spatial positions. A block of positions is gathered channel by channel into a small
// buffer so that the max, the exponentials and the sum run along contiguous memory
// whatever the layout of x.

// The clamps and NaN selects of the loops below vectorize only when GCC may evaluate float
// comparisons speculatively; the kernel never relies on floating-point exceptions.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/util/SmallVector.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "ops/softmax_bias_sigmoid.h"

namespace fused_ops {
namespace {

constexpr int64_t kBlock = 64;

// exp for float without branches or calls, so that GCC vectorizes the loops below at the
// baseline ISA (std::exp stays a scalar call; it made the kernel 7x slower than eager ATen).
// Cephes' expf: 2^n * p(r) with n = round(x * log2(e)) and r = x - n * ln(2) in two parts;
// within 2 ulp. Inputs are clamped to the range where 2^n is a normal float, so exp(-inf)
// gives 1e-38 rather than 0; a NaN stays NaN (the comparisons below are false for it).
inline float exp_branchless(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.3f ? 88.3f : x;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t exponent_bits = (static_cast<int32_t>(n) + 127) << 23;
  float two_to_n;
  std::memcpy(&two_to_n, &exponent_bits, sizeof(two_to_n));
  return p * two_to_n;
}

inline float exp_of(float x) { return exp_branchless(x); }
inline double exp_of(double x) { return std::exp(x); }

template <typename scalar_t>
void run(const at::Tensor& x, const at::Tensor& bias, double scale, const ChannelView& v,
         at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x_data = x.const_data_ptr<scalar_t>();
  const scalar_t* bias_data = bias.const_data_ptr<scalar_t>();
  scalar_t* out_data = out.mutable_data_ptr<scalar_t>();
  const int64_t channels = v.channels;
  const int64_t blocks_per_sample = (v.positions + kBlock - 1) / kBlock;
  const acc_t scale_acc =
      std::is_same<acc_t, double>::value ? static_cast<acc_t>(scale) : scale_as_float(scale);
  // Each task touches all C channels of its positions: grain by bytes, not by blocks.
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, channels * kBlock));

  at::parallel_for(0, v.batch * blocks_per_sample, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> values(static_cast<size_t>(channels * kBlock));
    int64_t x_offset[kBlock];
    int64_t out_offset[kBlock];
    acc_t column_max[kBlock];
    acc_t column_sum[kBlock];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks_per_sample;
      const int64_t first = (task % blocks_per_sample) * kBlock;
      const int64_t count = std::min(kBlock, v.positions - first);
      for (int64_t j = 0; j < count; ++j) {
        const int64_t s = first + j;
        const int64_t outer = s / v.inner_size;
        const int64_t inner = s - outer * v.inner_size;
        x_offset[j] = n * v.x.n + outer * v.x.outer + inner * v.x.inner;
        out_offset[j] = n * v.out.n + outer * v.out.outer + inner * v.out.inner;
        column_max[j] = -std::numeric_limits<acc_t>::infinity();
        column_sum[j] = 0;
      }
      // Gathers and scatters stay in loops of their own, so that the arithmetic loops are
      // contiguous and vectorize.
      for (int64_t c = 0; c < channels; ++c) {
        acc_t* row = values.data() + c * kBlock;
        const scalar_t* x_channel = x_data + c * v.x.c;
        for (int64_t j = 0; j < count; ++j) row[j] = static_cast<acc_t>(x_channel[x_offset[j]]);
        for (int64_t j = 0; j < count; ++j) {
          // fmax would skip NaN; the reference's softmax propagates it.
          column_max[j] = (row[j] > column_max[j] || row[j] != row[j]) ? row[j] : column_max[j];
        }
      }
      for (int64_t c = 0; c < channels; ++c) {
        acc_t* row = values.data() + c * kBlock;
        for (int64_t j = 0; j < count; ++j) {
          row[j] = exp_of(row[j] - column_max[j]);
          column_sum[j] += row[j];
        }
      }
      for (int64_t j = 0; j < count; ++j) column_sum[j] = acc_t(1) / column_sum[j];
      for (int64_t c = 0; c < channels; ++c) {
        acc_t* row = values.data() + c * kBlock;
        const acc_t channel_bias = static_cast<acc_t>(bias_data[c]);
        for (int64_t j = 0; j < count; ++j) {
          const acc_t z = (row[j] * column_sum[j] + channel_bias) * scale_acc;
          row[j] = acc_t(1) / (acc_t(1) + exp_of(-z));
        }
        scalar_t* out_channel = out_data + c * v.out.c;
        for (int64_t j = 0; j < count; ++j) out_channel[out_offset[j]] = static_cast<scalar_t>(row[j]);
      }
    }
  });
}

}  // namespace

void softmax_bias_sigmoid_cpu_kernel(const at::Tensor& x, const at::Tensor& bias, double scale,
                                     const ChannelView& view, at::Tensor& out) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "fused::softmax_bias_sigmoid (CPU)",
                                  [&] { run<scalar_t>(x, bias, scale, view, out); });
}

}  // namespace fused_ops
