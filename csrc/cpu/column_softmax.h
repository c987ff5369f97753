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

// The library is compiled for the baseline ISA; eager ATen's kernels use AVX2. A kernel body
// marked FUSED_OPS_ALWAYS_INLINE is compiled a second time inside a FUSED_OPS_AVX2 function
// (the helpers below inline into both), and with_avx2() picks that copy on CPUs that have it.
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define FUSED_OPS_ALWAYS_INLINE __attribute__((always_inline)) inline
#define FUSED_OPS_AVX2 __attribute__((target("avx2,fma")))
#define FUSED_OPS_HAVE_AVX2_COPY 1
#else
#define FUSED_OPS_ALWAYS_INLINE inline
#define FUSED_OPS_AVX2
#define FUSED_OPS_HAVE_AVX2_COPY 0
#endif

namespace fused_ops {
namespace cpu {

// Positions per block: the buffer of a block holds kBlock values per channel.
constexpr int64_t kBlock = 64;

// exp for float without branches or calls, so that GCC vectorizes the loops below at the
// baseline ISA (std::exp stays a scalar call; it made the kernel 7x slower than eager ATen).
// Cephes' expf: 2^n * p(r) with n = round(x * log2(e)) and r = x - n * ln(2) in two parts;
// within 2 ulp. Inputs are clamped to the range where 2^n is a normal float, so exp(-inf)
// gives 1e-38 rather than 0; a NaN stays NaN (the comparisons below are false for it).
FUSED_OPS_ALWAYS_INLINE float exp_branchless(float x) {
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

FUSED_OPS_ALWAYS_INLINE float exp_of(float x) { return exp_branchless(x); }
FUSED_OPS_ALWAYS_INLINE double exp_of(double x) { return std::exp(x); }

template <typename acc_t>
FUSED_OPS_ALWAYS_INLINE acc_t sigmoid_of(acc_t z) {
  return acc_t(1) / (acc_t(1) + exp_of(-z));
}

// values holds x of `count` positions per channel, row c at values + c * kBlock. Replaces
// each value by exp(x - max over the channels of its position) and writes 1 / sum of those
// to inv_sum[j]: value * inv_sum[j] is the softmax. A NaN anywhere in a column makes the
// whole column NaN, as PyTorch's softmax does.
template <typename acc_t>
FUSED_OPS_ALWAYS_INLINE void column_softmax(acc_t* values, int64_t channels, int64_t count, acc_t* inv_sum) {
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

// The element offsets in `strides` of positions first .. first + count - 1 of sample n, whose
// index splits into (outer, inner) with inner_size positions an inner group.
template <typename Strides>
FUSED_OPS_ALWAYS_INLINE void position_offsets(const Strides& strides, int64_t inner_size, int64_t n,
                                              int64_t first, int64_t count, int64_t* offset) {
  for (int64_t j = 0; j < count; ++j) {
    const int64_t outer = (first + j) / inner_size;
    offset[j] = strides.offset(n, outer, first + j - outer * inner_size);
  }
}

// One channel's values at `count` positions into row, as acc_t: a plain run from channel +
// offset[0] where the positions lie at stride 1 (it vectorizes), else through the offsets.
template <typename acc_t, typename scalar_t>
FUSED_OPS_ALWAYS_INLINE void load_row(acc_t* row, const scalar_t* channel, const int64_t* offset,
                                      int64_t count, bool stride_1) {
  if (stride_1) {
    const scalar_t* run = channel + offset[0];
    for (int64_t j = 0; j < count; ++j) row[j] = static_cast<acc_t>(run[j]);
  } else {
    for (int64_t j = 0; j < count; ++j) row[j] = static_cast<acc_t>(channel[offset[j]]);
  }
}

template <typename scalar_t, typename acc_t>
FUSED_OPS_ALWAYS_INLINE void store_row(scalar_t* channel, const acc_t* row, const int64_t* offset,
                                       int64_t count, bool stride_1) {
  if (stride_1) {
    scalar_t* run = channel + offset[0];
    for (int64_t j = 0; j < count; ++j) run[j] = static_cast<scalar_t>(row[j]);
  } else {
    for (int64_t j = 0; j < count; ++j) channel[offset[j]] = static_cast<scalar_t>(row[j]);
  }
}

// Whether this CPU runs the FUSED_OPS_AVX2 copies.
inline bool with_avx2() {
#if FUSED_OPS_HAVE_AVX2_COPY
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return supported;
#else
  return false;
#endif
}

}  // namespace cpu
}  // namespace fused_ops
