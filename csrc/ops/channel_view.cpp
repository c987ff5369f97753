#include "ops/channel_view.h"

#include <c10/util/SmallVector.h>

namespace fused_ops {

bool channel_view(const at::Tensor& x, const at::Tensor& out, ChannelView& view) {
  struct Group {
    int64_t size, x_stride, out_stride;
  };
  // Spatial dimensions, innermost first, merged wherever both tensors allow it.
  c10::SmallVector<Group, 4> groups;
  int64_t positions = 1;
  for (int64_t d = x.dim() - 1; d >= 2; --d) {
    const int64_t size = x.size(d);
    positions *= size;
    if (size == 1) continue;
    if (!groups.empty()) {
      Group& g = groups.back();
      if (x.stride(d) == g.size * g.x_stride && out.stride(d) == g.size * g.out_stride) {
        g.size *= size;
        continue;
      }
    }
    groups.push_back({size, x.stride(d), out.stride(d)});
  }
  if (groups.size() > 2) return false;
  const Group inner = groups.empty() ? Group{1, 0, 0} : groups[0];
  const Group outer = groups.size() < 2 ? Group{1, 0, 0} : groups[1];
  view.batch = x.size(0);
  view.channels = x.size(1);
  view.positions = positions;
  view.inner_size = inner.size;
  view.x = {x.stride(0), x.stride(1), outer.x_stride, inner.x_stride};
  view.out = {out.stride(0), out.stride(1), outer.out_stride, inner.out_stride};
  return true;
}

int64_t largest_offset(const ChannelView& v, const ChannelStrides& strides) {
  const int64_t outer_count = v.positions / v.inner_size;
  return (v.channels - 1) * strides.c + (outer_count - 1) * strides.outer +
         (v.inner_size - 1) * strides.inner;
}

int64_t last_offset(const ChannelView& v, const ChannelStrides& strides) {
  return (v.batch - 1) * strides.n + largest_offset(v, strides);
}

bool offsets_fit_in_32_bits(const ChannelView& v) {
  return fits_in_32_bits(v.positions) && fits_in_32_bits(largest_offset(v, v.x)) &&
         fits_in_32_bits(largest_offset(v, v.out));
}

bool all_offsets_fit_in_32_bits(const ChannelView& v) {
  return offsets_fit_in_32_bits(v) && fits_in_32_bits(v.x.n) && fits_in_32_bits(v.out.n) &&
         fits_in_32_bits(last_offset(v, v.x)) && fits_in_32_bits(last_offset(v, v.out));
}

bool positions_contiguous(const ChannelView& v) {
  return v.inner_size == v.positions && v.x.inner == 1 && v.out.inner == 1 && v.x.c == v.out.c;
}

bool out_positions_contiguous(const ChannelView& v) {
  return v.out.inner == 1 && (v.inner_size == v.positions || v.out.outer == v.inner_size);
}

int64_t channels_last_row_stride(const ChannelView& v) {
  const int64_t row_stride = v.positions == 1 ? v.x.n : v.x.inner;
  const bool one_group = v.inner_size == v.positions;
  const bool same_strides = v.x.n == v.out.n && v.x.c == v.out.c && v.x.inner == v.out.inner;
  if (v.channels > 1 && v.x.c == 1 && one_group && same_strides && row_stride >= v.channels &&
      v.x.n == v.positions * row_stride) {
    return row_stride;
  }
  return 0;
}

}  // namespace fused_ops
