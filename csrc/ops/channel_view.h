#pragma once
// The view every kernel of the tail op takes of x and out: (N, C, S), the S spatial positions
// of a sample addressed by two strided groups, so that no layout needs a copy: position s sits
// at (s / inner_size) * stride_outer + (s % inner_size) * stride_inner. Also the facts about a
// view that decide which kernel variants may run it.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <limits>

namespace fused_ops {

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

inline bool fits_in_32_bits(int64_t value) { return value <= std::numeric_limits<int32_t>::max(); }

// The largest element offset inside one sample, for strides that are never negative.
int64_t largest_offset(const ChannelView& v, const ChannelStrides& strides);

// The offset of x's (or out's) last element from the first sample's first, for strides that
// are never negative.
int64_t last_offset(const ChannelView& v, const ChannelStrides& strides);

// Whether every offset inside one sample of the view, positions included, fits in 32 bits.
bool offsets_fit_in_32_bits(const ChannelView& view);

// Whether also every offset across the batch fits in 32 bits, batch strides included: the
// softmax_stats variants, which take 32-bit batch strides.
bool all_offsets_fit_in_32_bits(const ChannelView& view);

// Whether x and out of the view both hold a sample's positions at stride 1, with one channel
// stride: the CONTIGUOUS kernel variants.
bool positions_contiguous(const ChannelView& view);

// Whether out holds a sample's positions at stride 1, as the op allocates it for a non-dense x.
bool out_positions_contiguous(const ChannelView& view);

// For a dense channels_last view (channels at stride 1, every position of every sample a row
// of them at one stride, out laid out alike): that row stride. Otherwise 0.
int64_t channels_last_row_stride(const ChannelView& view);

}  // namespace fused_ops
