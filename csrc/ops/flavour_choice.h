#pragma once
// The choice of a kernel variant for a call, by the layout flavours that the build put in the
// kernel table (triton_src/softmax_bias_sigmoid_flavours.py declares them, in order): the facts
// a call may have, and the one walk over a kernel's flavours that the forward and the backward
// share.

#include <c10/core/ScalarType.h>

#include <bitset>
#include <cstdint>
#include <string>

#include "kernel_table.h"

namespace fused_ops {

// What a call may have, as a flavour's `requires` names it (in quotes). The op that chooses
// computes each from its tensors; kChannelsBy16 the walk sets itself.
enum class Fact : uint8_t {
  kOffsets32Bits,           // "offsets_32_bits": every offset inside one sample fits in 32 bits
  kPositionsContiguous,     // "positions_contiguous": every tensor's positions at stride 1, one channel stride
  kNchwRowsAligned,         // "nchw_rows_aligned": those rows, and the pointers, on 16 bytes
  kSmallTensor,             // "small_tensor": x of at most 1 MB, few enough samples for a grid axis
  kChannelsLast,            // "channels_last": dense channels_last, its rows within 32-bit offsets
  kChannelsLastAligned,     // "channels_last_aligned": those rows, the pointers and bias on 16 bytes
  kOutPositionsContiguous,  // "out_positions_contiguous": out's positions at stride 1
  kXInnerStride2,           // "x_inner_stride_2": x's inner spatial stride is 2 (x[..., ::2])
  kSpansAligned,            // "spans_aligned": its spans on 16 bytes and readable whole
  kChannelsBy16,            // "channels_by_16": C a multiple of 16
  kSoftmaxStats,            // "softmax_stats": the call writes (or reads) the softmax statistics
  kCount
};
using Facts = std::bitset<static_cast<size_t>(Fact::kCount)>;

inline Facts& set(Facts& facts, Fact fact, bool value) {
  facts.set(static_cast<size_t>(fact), value);
  return facts;
}

struct FlavourChoice {
  const Variant* variant;
  const Flavour* flavour;
};

// The first of `kernel`'s flavours, in the table's order, that the call's facts allow and that
// has a tile for it in `dtype`: its single-pass tile with the smallest BLOCK_C that holds C
// (exact_channels: whose BLOCK_C is C), else its multi-pass tile (not for exact_channels). A
// same_tiles_as flavour's single-pass tile serves C only where its partner would run a tile of
// that BLOCK_C; a within_inner_group tile only where its BLOCK_S divides inner_size. Where
// `passed_over` is given, it receives why each flavour before the chosen one (with tiles in
// dtype) was not taken, flavours for calls that pass softmax statistics left out when this one
// does not. An error names the kernel, dtype and C where no flavour serves the call.
FlavourChoice choose_flavour(const char* kernel, at::ScalarType dtype, int64_t channels,
                             int64_t inner_size, Facts facts, std::string* passed_over = nullptr);

// The largest BLOCK_C of a single-pass tile of `kernel` in dtype among the flavours that
// require `fact`; 0 if none.
int64_t widest_tile_requiring(const char* kernel, at::ScalarType dtype, Fact fact);

}  // namespace fused_ops
