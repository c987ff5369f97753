#pragma once
// Pieces the CPU kernels share: a vectorizable exp and the softmax over channels of a block of
// positions gathered into a (channels, kBlock) buffer, so that every loop runs along
// contiguous memory whatever the layout of the tensor.
//
// The clamps and NaN selects below vectorize only when GCC may evaluate float comparisons
// speculatively: include this first in a file compiled with "no-trapping-math" (the kernels
// never rely on floating-point exceptions).

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace fused_ops {
namespace cpu {

// Positions per block: the buffer of a block holds kBlock values per channel.
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

template <typename acc_t>
inline acc_t sigmoid_of(acc_t z) {
  return acc_t(1) / (acc_t(1) + exp_of(-z));
}

// values holds x of `count` positions per channel, row c at values + c * kBlock. Replaces
// each value by exp(x - max over the channels of its position) and writes 1 / sum of those
// to inv_sum[j]: value * inv_sum[j] is the softmax. A NaN anywhere in a column makes the
// whole column NaN, as PyTorch's softmax does.
template <typename acc_t>
void column_softmax(acc_t* values, int64_t channels, int64_t count, acc_t* inv_sum) {
  acc_t column_max[kBlock];
  for (int64_t j = 0; j < count; ++j) {
    column_max[j] = -std::numeric_limits<acc_t>::infinity();
    inv_sum[j] = 0;
  }
  for (int64_t c = 0; c < channels; ++c) {
    const acc_t* row = values + c * kBlock;
    for (int64_t j = 0; j < count; ++j) {
      // fmax would skip NaN; the reference's softmax propagates it.
      column_max[j] = (row[j] > column_max[j] || row[j] != row[j]) ? row[j] : column_max[j];
    }
  }
  for (int64_t c = 0; c < channels; ++c) {
    acc_t* row = values + c * kBlock;
    for (int64_t j = 0; j < count; ++j) {
      row[j] = exp_of(row[j] - column_max[j]);
      inv_sum[j] += row[j];
    }
  }
  for (int64_t j = 0; j < count; ++j) inv_sum[j] = acc_t(1) / inv_sum[j];
}

}  // namespace cpu
}  // namespace fused_ops
