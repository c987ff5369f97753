// fused::softmax_bias_sigmoid: validation and output allocation shared by every backend,
// then the CPU kernel (csrc/cpu/) or the ahead-of-time compiled Triton kernel (CUDA).

#include "ops/softmax_bias_sigmoid.h"

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/core/SymBool.h>
#include <c10/util/SmallVector.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#ifdef FUSED_OPS_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstring>

#include "kernel_table.h"
#include "launcher.h"
#endif

namespace fused_ops {
namespace {

constexpr const char* kOp = "fused::softmax_bias_sigmoid";

using OutAndStats = std::tuple<at::Tensor, at::Tensor>;

void check_inputs(const at::Tensor& x, const at::Tensor& bias) {
  check_softmax_bias_sigmoid_inputs(x, bias, kOp);
}

// The output is empty_like(x), unless the caller gives one (x's shape, any strides): it keeps
// x's memory format, on every backend and in the Meta kernel alike. `kernel(x, bias, out,
// view)` fills it, bias flattened to C contiguous values; the one layout the strided view
// cannot express (more than two spatial groups) runs on contiguous copies.
template <typename Kernel>
at::Tensor with_channel_view(const at::Tensor& x, const at::Tensor& bias, Kernel&& kernel,
                             at::Tensor out = at::Tensor()) {
  check_inputs(x, bias);
  if (!out.defined()) out = at::empty_like(x);
  if (out.numel() == 0) return out;
  const at::Tensor bias_flat = bias.reshape({-1}).contiguous();
  ChannelView view;
  if (channel_view(x, out, view)) {
    kernel(x, bias_flat, out, view);
    return out;
  }
  const at::Tensor x_contiguous = x.contiguous();
  at::Tensor staged = at::empty_like(x_contiguous);
  TORCH_INTERNAL_ASSERT(channel_view(x_contiguous, staged, view));
  kernel(x_contiguous, bias_flat, staged, view);
  return out.copy_(staged);
}

at::Tensor softmax_bias_sigmoid_meta(const at::Tensor& x, const at::Tensor& bias, double scale) {
  check_inputs(x, bias);
  return at::empty_like(x);
}

OutAndStats softmax_bias_sigmoid_forward_meta(const at::Tensor& x, const at::Tensor& bias,
                                              double scale) {
  check_inputs(x, bias);
  return {at::empty_like(x), empty_softmax_stats(x)};
}

// Sparse and other non-strided inputs reach the op through their own dispatch keys; they
// get the same named error as every other invalid input.
at::Tensor softmax_bias_sigmoid_unsupported_layout(const at::Tensor& x, const at::Tensor& bias,
                                                   double scale) {
  check_inputs(x, bias);
  TORCH_INTERNAL_ASSERT(false, "unreachable: check_inputs accepts only strided tensors");
}

OutAndStats softmax_bias_sigmoid_forward_unsupported_layout(const at::Tensor& x,
                                                            const at::Tensor& bias, double scale) {
  return {softmax_bias_sigmoid_unsupported_layout(x, bias, scale), at::Tensor()};
}

at::Tensor softmax_bias_sigmoid_cpu(const at::Tensor& x, const at::Tensor& bias, double scale) {
  return with_channel_view(x, bias, [&](const at::Tensor& input, const at::Tensor& bias_flat,
                                        at::Tensor& out, const ChannelView& view) {
    softmax_bias_sigmoid_cpu_kernel(input, bias_flat, scale, view, out);
  });
}

OutAndStats softmax_bias_sigmoid_forward_cpu(const at::Tensor& x, const at::Tensor& bias,
                                             double scale) {
  at::Tensor out = softmax_bias_sigmoid_cpu(x, bias, scale);
  return {out, softmax_stats_by_aten(x)};
}

#ifdef FUSED_OPS_WITH_CUDA

const char* triton_dtype(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "fp32";
    case at::kHalf: return "fp16";
    case at::kBFloat16: return "bf16";
    case at::kDouble: return "fp64";
    default: TORCH_INTERNAL_ASSERT(false, "no Triton kernels for ", dtype);
  }
}

// For a dense channels_last view (channels at stride 1, every position of every sample a row
// of them at one stride, out laid out alike): that row stride. Otherwise 0.
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

bool fits_in_32_bits(int64_t value) { return value <= std::numeric_limits<int32_t>::max(); }

bool multiple_of_16(int64_t value) { return value % 16 == 0; }

bool aligned_16(const void* pointer) { return reinterpret_cast<uintptr_t>(pointer) % 16 == 0; }

// Whether every count of x's elements is a whole number of 16-byte vectors.
bool whole_16_byte_vectors(const at::Tensor& x, std::initializer_list<int64_t> counts) {
  const int64_t per_vector = 16 / x.element_size();
  return std::all_of(counts.begin(), counts.end(),
                     [per_vector](int64_t count) { return count % per_vector == 0; });
}

bool both_aligned_16(const at::Tensor& x, const at::Tensor& out) {
  return aligned_16(x.const_data_ptr()) && aligned_16(out.const_data_ptr());
}

// The promise of the ALIGNED contiguous NCHW variants (triton_src: multiples): x and out on 16
// bytes, and every channel row of positions starting on 16 bytes.
bool nchw_rows_aligned(const at::Tensor& x, const at::Tensor& out, const ChannelView& v) {
  return both_aligned_16(x, out) && whole_16_byte_vectors(x, {v.positions, v.x.n, v.x.c, v.out.n});
}

// The largest element offset inside one sample, for strides that are never negative.
int64_t largest_offset(const ChannelView& v, const ChannelStrides& strides) {
  const int64_t outer_count = v.positions / v.inner_size;
  return (v.channels - 1) * strides.c + (outer_count - 1) * strides.outer +
         (v.inner_size - 1) * strides.inner;
}

// The offset of x's (or out's) last element from the first sample's first, for strides that
// are never negative.
int64_t last_offset(const ChannelView& v, const ChannelStrides& strides) {
  return (v.batch - 1) * strides.n + largest_offset(v, strides);
}

// How a kernel walks the view, and what it may assume: the constexprs its variant must have.
// Kernels without channels_last or aligned variants (the backward) declare neither constexpr:
// they read as 0. channels_by_16 variants are compiled for C a multiple of 16; out_contiguous
// ones (of the strided view) write out's positions at stride 1; inner_stride_2 ones also read
// x's positions, at stride 2 in their inner group, as the contiguous span under a tile (aligned
// ones the whole span, one element past the group's last position included); softmax_stats
// ones write (the forward) or read (the backward) the softmax statistics; channels_exact ones
// are compiled for C equal to their BLOCK_C; sector_stores ones (contiguous NCHW) store whole
// 32-byte sectors of out, each warp over positions that overlap the warp before's; small_tensor
// ones (contiguous NCHW) are tiles tuned for tensors of at most kSmallTensorBytes
// (triton_src/softmax_bias_sigmoid.py).
struct Flavour {
  int64_t contiguous, channels_last, aligned, index_bits, channels_by_16 = 0, out_contiguous = 0,
      inner_stride_2 = 0, softmax_stats = 0, channels_exact = 0, sector_stores = 0,
      small_tensor = 0;
};

using FlavourKey = std::tuple<std::string, std::string, int64_t, int64_t, int64_t, int64_t,
                              int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>;

// The variants of one (kernel, dtype, flavour): single-pass tiles by ascending BLOCK_C, and
// the multi-pass tile if there is one. The flavours that the tuner keeps for some buckets only,
// each measured against the tile of the same BLOCK_C of a plainer flavour (masked sector_stores
// against the same without whole-sector stores, aligned inner_stride_2 against unaligned), are
// linked to that flavour when the table is indexed: their single-pass tiles serve C only where
// the plain flavour would take the same BLOCK_C. For a linked flavour, fewest_channels holds,
// beside each single-pass tile, the least C it serves: one more than the plain flavour's next
// smaller BLOCK_C, or never where the plain flavour has no tile of its BLOCK_C.
struct FlavourVariants {
  std::vector<const Variant*> single_pass;
  const Variant* multi_pass = nullptr;
  std::vector<int64_t> fewest_channels;
};

FlavourKey key_of(const char* kernel, const char* dtype_name, const Flavour& f) {
  return {kernel,           dtype_name,       f.contiguous,     f.channels_last,
          f.aligned,        f.index_bits,     f.channels_by_16, f.out_contiguous,
          f.inner_stride_2, f.softmax_stats,  f.channels_exact, f.sector_stores,
          f.small_tensor};
}

int64_t flag(const Variant& v, const char* name) { return std::max<int64_t>(0, v.constexpr_value(name)); }

// The build's table indexed once per process, so that a call's choice costs a map lookup
// rather than a scan over every compiled variant (small tensors are launch-bound).
const std::map<FlavourKey, FlavourVariants>& variants_by_flavour() {
  static const std::map<FlavourKey, FlavourVariants> index = [] {
    std::map<FlavourKey, FlavourVariants> built;
    std::map<FlavourKey, FlavourKey> plain_of_linked;
    const KernelTable& table = kernel_table();
    for (size_t i = 0; i < table.size; ++i) {
      const Variant& v = table.variants[i];
      if (v.constexpr_value("CONTIGUOUS") < 0) continue;  // not a kernel over the channel view
      const Flavour flavour{flag(v, "CONTIGUOUS"), flag(v, "CHANNELS_LAST"), flag(v, "ALIGNED"),
                            v.constexpr_value("INDEX_BITS"), flag(v, "CHANNELS_BY_16"),
                            flag(v, "OUT_CONTIGUOUS"), flag(v, "INNER_STRIDE_2"),
                            flag(v, "SOFTMAX_STATS"), flag(v, "CHANNELS_EXACT"),
                            int64_t{flag(v, "SECTOR_STORES") > 0}, flag(v, "SMALL_TENSOR")};
      const FlavourKey key = key_of(v.kernel, v.dtype, flavour);
      const bool masked_sectors = flavour.sector_stores && !flavour.channels_exact;
      if (masked_sectors || (flavour.inner_stride_2 && flavour.aligned)) {
        Flavour plain = flavour;
        plain.sector_stores = plain.channels_by_16 = plain.aligned = 0;
        plain_of_linked.emplace(key, key_of(v.kernel, v.dtype, plain));
      }
      FlavourVariants& entry = built[key];
      if (v.constexpr_value("SINGLE_PASS") == 0) {
        entry.multi_pass = &v;
      } else {
        entry.single_pass.push_back(&v);
      }
    }
    for (auto& [key, entry] : built) {
      std::sort(entry.single_pass.begin(), entry.single_pass.end(),
                [](const Variant* a, const Variant* b) {
                  return a->constexpr_value("BLOCK_C") < b->constexpr_value("BLOCK_C");
                });
    }
    for (const auto& [linked, plain] : plain_of_linked) {
      const auto plain_entry = built.find(plain);
      const auto linked_entry = built.find(linked);
      if (plain_entry == built.end()) {
        built.erase(linked_entry);  // nothing to measure its buckets against
        continue;
      }
      for (const Variant* tile : linked_entry->second.single_pass) {
        const int64_t block_c = tile->constexpr_value("BLOCK_C");
        int64_t next_smaller = 0;
        bool same_in_plain = false;
        for (const Variant* plain_tile : plain_entry->second.single_pass) {
          const int64_t plain_block_c = plain_tile->constexpr_value("BLOCK_C");
          if (plain_block_c < block_c) next_smaller = plain_block_c;
          same_in_plain = same_in_plain || plain_block_c == block_c;
        }
        linked_entry->second.fewest_channels.push_back(
            same_in_plain ? next_smaller + 1 : std::numeric_limits<int64_t>::max());
      }
    }
    return built;
  }();
  return index;
}

// In the first of `flavours` that `kernel` has for the dtype: the single-pass tile with the
// smallest BLOCK_C that holds C, else the multi-pass tile. Each flavour is tried first in its
// channels_exact form (a tile whose BLOCK_C is C), then in its channels_by_16 form where C
// allows it; only single-pass tiles have either. The tuner keeps a tile only where it beats
// every tile that this order would put after it for C equal to its BLOCK_C. A linked flavour's
// tile serves C only from its fewest_channels on, where the plain flavour would take the same
// BLOCK_C (C = 100 must not run in a 256-channel whole-sector tile because 128 has none); where
// none of its single-pass tiles holds C, its multi-pass tile does (the aligned spans' two-pass
// tile serves bf16 C = 4096).
std::pair<const Variant*, Flavour> choose_from(const char* kernel, at::ScalarType dtype,
                                               int64_t channels, c10::ArrayRef<Flavour> layouts) {
  const char* dtype_name = triton_dtype(dtype);
  const auto& index = variants_by_flavour();
  // A tile's BLOCK_C is a power of two (tl.arange's rule), so only such C can have an exact one;
  // other calls skip those lookups.
  const bool exact_possible = (channels & (channels - 1)) == 0;
  c10::SmallVector<Flavour, 24> flavours;
  for (const Flavour& layout : layouts) {
    if (exact_possible) {
      Flavour exact = layout;
      exact.channels_exact = 1;
      flavours.push_back(exact);
    }
    if (multiple_of_16(channels)) {
      Flavour by_16 = layout;
      by_16.channels_by_16 = 1;
      flavours.push_back(by_16);
    }
    flavours.push_back(layout);
  }
  for (const Flavour& flavour : flavours) {
    const auto found = index.find(key_of(kernel, dtype_name, flavour));
    if (found == index.end()) continue;
    const FlavourVariants& tiles = found->second;
    const auto holds = [&](const Variant* tile) {
      const int64_t block_c = tile->constexpr_value("BLOCK_C");
      return flavour.channels_exact ? block_c == channels : block_c >= channels;
    };
    const auto tile = std::find_if(tiles.single_pass.begin(), tiles.single_pass.end(), holds);
    if (tile == tiles.single_pass.end()) {
      if (tiles.multi_pass && !flavour.channels_exact) return {tiles.multi_pass, flavour};
      continue;
    }
    if (!tiles.fewest_channels.empty() &&
        channels < tiles.fewest_channels[tile - tiles.single_pass.begin()]) {
      continue;
    }
    return {*tile, flavour};
  }
  TORCH_CHECK(false, kernel, ": this build has no ", dtype_name, " kernel for C = ", channels);
}

// Whether an inner_stride_2 tile may read the whole span under its positions, one element past
// the last of each inner group: where that element of x's last position lies inside x's storage
// and its offset still fits the tile's 32-bit arithmetic.
bool whole_spans_readable(const at::Tensor& x, const ChannelView& v) {
  const int64_t storage_elements = static_cast<int64_t>(x.storage().nbytes()) / x.element_size();
  return fits_in_32_bits(largest_offset(v, v.x) + 1) &&
         x.storage_offset() + last_offset(v, v.x) + 1 < storage_elements;
}

// Whether out holds a sample's positions at stride 1, as the op allocates it for a non-dense x.
bool out_positions_contiguous(const ChannelView& v) {
  return v.out.inner == 1 && (v.inner_size == v.positions || v.out.outer == v.inner_size);
}

// The largest x that takes the small_tensor tiles of contiguous NCHW where the build has one for
// C: a tensor that moves in less time than a launch takes, to which the tiles tuned on 128 MB
// would give few programs, each computing many positions, or masked channels where C < 16.
constexpr int64_t kSmallTensorBytes = int64_t{1} << 20;
// Their grid is (position blocks, samples) (triton_src: SAMPLES_ON_AXIS_1), and a grid's axis 1
// holds at most this many; a larger batch takes the other tiles.
constexpr int64_t kMaxSamplesOnAxis1 = 65535;

// The forward's flavours for a call, fastest first: contiguous NCHW or dense channels_last
// (each 16-byte aligned where x, out and the strides allow it, and for channels_last bias too;
// unaligned NCHW first with whole sector stores, where the build has such a tile for C; before
// them all the small-tensor tiles, aligned first, for x of at most kSmallTensorBytes and
// kMaxSamplesOnAxis1 samples), then the general strided view at 32 bits (first with out's
// positions at stride 1 where they are, and before that with x's read as spans where its inner
// stride is 2, those 16-byte aligned and read whole where they can be) and at 64 bits.
c10::SmallVector<Flavour, 8> forward_flavours(const at::Tensor& x, const at::Tensor& bias_flat,
                                              const at::Tensor& out, const ChannelView& v) {
  c10::SmallVector<Flavour, 8> flavours;
  const bool pointers_aligned = both_aligned_16(x, out);
  const bool small = offsets_fit_in_32_bits(v);
  const int64_t row_stride = channels_last_row_stride(v);
  if (small && positions_contiguous(v)) {
    const bool aligned = nchw_rows_aligned(x, out, v);
    if (static_cast<int64_t>(x.nbytes()) <= kSmallTensorBytes && v.batch <= kMaxSamplesOnAxis1) {
      Flavour small_tensor{1, 0, 1, 32};
      small_tensor.small_tensor = 1;
      if (aligned) flavours.push_back(small_tensor);
      small_tensor.aligned = 0;
      flavours.push_back(small_tensor);
    }
    if (aligned) flavours.push_back({1, 0, 1, 32});
    Flavour sector_stores{1, 0, 0, 32};
    sector_stores.sector_stores = 1;
    flavours.push_back(sector_stores);
    flavours.push_back({1, 0, 0, 32});
  } else if (row_stride > 0 && fits_in_32_bits(v.batch * v.positions * row_stride)) {
    if (pointers_aligned && aligned_16(bias_flat.const_data_ptr()) &&
        whole_16_byte_vectors(x, {v.channels, row_stride})) {
      flavours.push_back({0, 1, 1, 32});
    }
    flavours.push_back({0, 1, 0, 32});
  }
  if (small && out_positions_contiguous(v)) {
    if (v.x.inner == 2) {
      if (pointers_aligned &&
          whole_16_byte_vectors(x, {v.positions, v.inner_size, v.x.n, v.x.c, v.x.outer, v.out.n, v.out.c}) &&
          whole_spans_readable(x, v)) {
        flavours.push_back(
            {0, 0, /*aligned=*/1, 32, /*channels_by_16=*/0, /*out_contiguous=*/1, /*inner_stride_2=*/1});
      }
      flavours.push_back(
          {0, 0, 0, 32, /*channels_by_16=*/0, /*out_contiguous=*/1, /*inner_stride_2=*/1});
    }
    flavours.push_back({0, 0, 0, 32, /*channels_by_16=*/0, /*out_contiguous=*/1});
  }
  if (small) flavours.push_back({0, 0, 0, 32});
  flavours.push_back({0, 0, 0, 64});
  return flavours;
}

// The two launches of softmax_bias_sigmoid_split (triton_src/softmax_bias_sigmoid_split.py),
// for C that no single-pass tile of contiguous NCHW holds.
struct SplitKernel {
  const Variant* statistics = nullptr;  // PHASE 0
  const Variant* output = nullptr;      // PHASE 1
};

// The split kernel of a dtype, its ALIGNED tile where `aligned` and the build has one; nullptr
// where the build has none (float64 has none).
const SplitKernel* split_kernel(const char* dtype_name, bool aligned) {
  static const std::map<std::pair<std::string, int64_t>, SplitKernel> by_dtype = [] {
    std::map<std::pair<std::string, int64_t>, SplitKernel> built;
    const KernelTable& table = kernel_table();
    for (size_t i = 0; i < table.size; ++i) {
      const Variant& v = table.variants[i];
      if (std::strcmp(v.kernel, "softmax_bias_sigmoid_split") != 0) continue;
      SplitKernel& entry = built[{v.dtype, v.constexpr_value("ALIGNED")}];
      (v.constexpr_value("PHASE") == 0 ? entry.statistics : entry.output) = &v;
    }
    return built;
  }();
  const auto complete = [&](int64_t tile_aligned) -> const SplitKernel* {
    const auto found = by_dtype.find({dtype_name, tile_aligned});
    const bool both_phases = found != by_dtype.end() && found->second.statistics && found->second.output;
    return both_phases ? &found->second : nullptr;
  };
  const SplitKernel* aligned_tile = aligned ? complete(1) : nullptr;
  return aligned_tile ? aligned_tile : complete(0);
}

// Both phases over the same grid: every (sample, chunk of C, block of positions).
void launch_split(const SplitKernel& kernel, const at::Tensor& x, const at::Tensor& bias_flat,
                  at::Tensor& out, const ChannelView& v, double scale) {
  const int64_t channels_per_split = kernel.statistics->constexpr_value("CHANNELS_PER_SPLIT");
  const int64_t block_s = kernel.statistics->constexpr_value("BLOCK_S");
  TORCH_INTERNAL_ASSERT(
      kernel.output->constexpr_value("CHANNELS_PER_SPLIT") == channels_per_split &&
      kernel.output->constexpr_value("BLOCK_S") == block_s);
  const int64_t splits = (v.channels + channels_per_split - 1) / channels_per_split;
  const int64_t position_blocks = (v.positions + block_s - 1) / block_s;
  const uint32_t programs = grid_size(v.batch * splits * position_blocks, kOp, x);
  // Per (sample, chunk): the chunk's softmax reference point and 1 / sum, for every position.
  at::Tensor statistics =
      at::empty({v.batch, splits, 2, v.positions}, x.options().dtype(at::kFloat));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.get_device()).stream();
  for (const Variant* phase : {kernel.statistics, kernel.output}) {
    LaunchArgs args(*phase);
    args.pointer(x.const_data_ptr())
        .pointer(bias_flat.const_data_ptr())
        .pointer(out.mutable_data_ptr())
        .pointer(statistics.mutable_data_ptr())
        .integer(v.channels)
        .integer(v.positions)
        .integer(position_blocks)
        .integer(splits)
        .integer(v.x.n).integer(v.x.c).integer(v.out.n)
        .real(kernel_scale(x.scalar_type(), scale));
    launch(args, programs, x.get_device(), stream);
  }
}

// The flavours, each contiguous one preceded by its softmax_stats twin.
c10::SmallVector<Flavour, 8> writing_softmax_stats(c10::ArrayRef<Flavour> flavours) {
  c10::SmallVector<Flavour, 8> with_stats;
  for (const Flavour& flavour : flavours) {
    if (flavour.contiguous) {
      Flavour twin = flavour;
      twin.softmax_stats = 1;
      with_stats.push_back(twin);
    }
    with_stats.push_back(flavour);
  }
  return with_stats;
}

// What the forward runs for a call: a variant of softmax_bias_sigmoid and its flavour, or the
// split kernel's two launches. `with_stats`: the caller wants the softmax statistics written.
struct ForwardChoice {
  const Variant* variant;
  Flavour flavour;
  const SplitKernel* split = nullptr;
};

ForwardChoice choose_forward(const at::Tensor& input, const at::Tensor& bias_flat,
                             const at::Tensor& out, const ChannelView& v, bool with_stats) {
  c10::SmallVector<Flavour, 8> flavours = forward_flavours(input, bias_flat, out, v);
  if (with_stats && all_offsets_fit_in_32_bits(v)) flavours = writing_softmax_stats(flavours);
  auto choice = choose_from("softmax_bias_sigmoid", input.scalar_type(), v.channels, flavours);
  // An inner_stride_2 tile must not cross an inner group: where its BLOCK_S does not divide
  // the group, the choice among the other flavours.
  while (choice.second.inner_stride_2 &&
         v.inner_size % choice.first->constexpr_value("BLOCK_S") != 0) {
    const int64_t aligned = choice.second.aligned;
    flavours.erase(std::remove_if(flavours.begin(), flavours.end(),
                                  [aligned](const Flavour& f) {
                                    return f.inner_stride_2 && f.aligned == aligned;
                                  }),
                   flavours.end());
    choice = choose_from("softmax_bias_sigmoid", input.scalar_type(), v.channels, flavours);
  }
  const auto [variant, flavour] = choice;
  // The multi-pass kernel gives one program every channel of its positions: too few programs
  // where C is this large. The split kernel spreads them (docs/performance.md).
  if (flavour.contiguous && variant->constexpr_value("SINGLE_PASS") == 0) {
    if (const SplitKernel* split = split_kernel(triton_dtype(input.scalar_type()),
                                                nchw_rows_aligned(input, out, v))) {
      return {variant, flavour, split};
    }
  }
  return {variant, flavour};
}

// out. Where `stats` holds a buffer for the statistics and the call runs a tile that has a
// softmax_stats twin (the single-pass CONTIGUOUS ones), that twin writes them into it; elsewhere
// *stats is left undefined.
at::Tensor run_forward_cuda(const at::Tensor& x, const at::Tensor& bias, double scale,
                            at::Tensor* stats = nullptr, at::Tensor given_out = at::Tensor()) {
  const at::Tensor stats_buffer = stats != nullptr ? std::exchange(*stats, at::Tensor()) : at::Tensor();
  return with_channel_view(x, bias, [&](const at::Tensor& input, const at::Tensor& bias_flat,
                                        at::Tensor& out, const ChannelView& v) {
    // Taken after the checks: with bias on CUDA this kernel also sees an x on the CPU, which
    // must get the named device error rather than fail in the guard.
    const c10::cuda::CUDAGuard guard(input.device());
    const ForwardChoice choice = choose_forward(input, bias_flat, out, v, stats != nullptr);
    if (choice.split != nullptr) {
      launch_split(*choice.split, input, bias_flat, out, v, scale);
      return;
    }
    const Variant* variant = choice.variant;
    const Flavour& flavour = choice.flavour;
    TORCH_INTERNAL_ASSERT(!flavour.channels_exact || variant->constexpr_value("BLOCK_C") == v.channels);
    const int64_t block_s = variant->constexpr_value("BLOCK_S");
    // channels_last runs all N * S rows as one sample.
    const int64_t batch = flavour.channels_last ? 1 : v.batch;
    const int64_t positions = flavour.channels_last ? v.batch * v.positions : v.positions;
    const int64_t inner_size = flavour.channels_last ? positions : v.inner_size;
    const int64_t x_inner = flavour.channels_last ? channels_last_row_stride(v) : v.x.inner;
    // A sector_stores tile's warps each take 32 - sector new positions, and the first warp of a
    // sample starts up to sector - 1 positions before its first: the programs must reach that far
    // past the last.
    const int64_t sector = flavour.sector_stores ? variant->constexpr_value("SECTOR_STORES") : 0;
    const int64_t positions_per_program = sector > 0 ? block_s / 32 * (32 - sector) : block_s;
    const int64_t reach = sector > 0 ? positions + sector - 1 : positions;
    const int64_t position_blocks = (reach + positions_per_program - 1) / positions_per_program;
    const bool samples_on_axis_1 = flavour.small_tensor;
    const uint32_t programs =
        grid_size(samples_on_axis_1 ? position_blocks : batch * position_blocks, kOp, input);
    if (flavour.softmax_stats) *stats = stats_buffer;
    LaunchArgs args(*variant);
    args.pointer(input.const_data_ptr())
        .pointer(bias_flat.const_data_ptr())
        .pointer(out.mutable_data_ptr())
        .pointer(flavour.softmax_stats ? stats_buffer.mutable_data_ptr() : nullptr)
        .integer(v.channels)
        .integer(positions)
        .integer(inner_size)
        .integer(position_blocks)
        .integer(v.x.n).integer(v.x.c).integer(v.x.outer).integer(x_inner)
        .integer(v.out.n).integer(v.out.c).integer(v.out.outer).integer(v.out.inner)
        .real(kernel_scale(input.scalar_type(), scale));
    launch(args, programs, input.get_device(),
           c10::cuda::getCurrentCUDAStream(input.get_device()).stream(),
           samples_on_axis_1 ? static_cast<uint32_t>(batch) : 1);
  }, std::move(given_out));
}

at::Tensor softmax_bias_sigmoid_cuda(const at::Tensor& x, const at::Tensor& bias, double scale) {
  return run_forward_cuda(x, bias, scale);
}

// What the forward would launch for (x, bias): the same view (and contiguous copy) and the
// same choice, and the image of this GPU each variant runs from.
std::string explain_cuda(const at::Tensor& x, const at::Tensor& bias) {
  std::string text = "no kernel: x is empty";
  with_channel_view(x, bias, [&](const at::Tensor& input, const at::Tensor& bias_flat,
                                 at::Tensor& out, const ChannelView& v) {
    const c10::cuda::CUDAGuard guard(input.device());
    const ForwardChoice choice = choose_forward(input, bias_flat, out, v, false);
    const int device = input.get_device();
    const auto with_image = [device](const Variant& variant) {
      return describe(variant) + " (" + image_for_device(variant, device) + ")";
    };
    text = choice.split != nullptr
               ? with_image(*choice.split->statistics) + ", then " +
                     with_image(*choice.split->output) + ": C = " + std::to_string(v.channels) +
                     " is beyond every single-pass tile of contiguous NCHW"
               : with_image(*choice.variant);
    if (!input.is_same(x)) {
      text += "; on a contiguous copy of x (its spatial strides need more than two groups)";
    }
  });
  return text;
}

OutAndStats softmax_bias_sigmoid_forward_cuda(const at::Tensor& x, const at::Tensor& bias,
                                              double scale) {
  check_inputs(x, bias);
  at::Tensor stats = empty_softmax_stats(x);
  at::Tensor out = run_forward_cuda(x, bias, scale, &stats);
  return {out, stats.defined() ? stats : softmax_stats_by_aten(x)};
}

}  // namespace

at::Tensor softmax_bias_sigmoid_cuda_into(const at::Tensor& x, const at::Tensor& bias,
                                          double scale, at::Tensor out) {
  TORCH_INTERNAL_ASSERT(out.sizes() == x.sizes() && out.scalar_type() == x.scalar_type() &&
                        out.device() == x.device());
  return run_forward_cuda(x, bias, scale, nullptr, std::move(out));
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

// The widest single-pass CONTIGUOUS tile of `kernel` with softmax statistics; 0 if none.
int64_t widest_softmax_stats_tile(const char* kernel, at::ScalarType dtype) {
  Flavour flavour{1, 0, 0, 32};
  flavour.softmax_stats = 1;
  const auto& index = variants_by_flavour();
  const auto found = index.find(key_of(kernel, triton_dtype(dtype), flavour));
  if (found == index.end() || found->second.single_pass.empty()) return 0;
  return found->second.single_pass.back()->constexpr_value("BLOCK_C");
}

uint32_t grid_size(int64_t programs, const char* op, const at::Tensor& x) {
  TORCH_CHECK(programs <= std::numeric_limits<int32_t>::max(), op, ": x of shape ", x.sizes(),
              " needs ", programs, " programs, more than one launch can hold");
  return static_cast<uint32_t>(programs);
}

const Variant& choose_variant(const char* kernel, at::ScalarType dtype, int64_t channels,
                              bool contiguous, bool small, bool softmax_stats) {
  c10::SmallVector<Flavour, 4> flavours;
  if (small && contiguous && softmax_stats) {
    flavours.push_back({1, 0, 0, 32, /*channels_by_16=*/0, /*out_contiguous=*/0,
                        /*inner_stride_2=*/0, /*softmax_stats=*/1});
  }
  if (small && contiguous) flavours.push_back({1, 0, 0, 32});
  if (small) flavours.push_back({0, 0, 0, 32});
  flavours.push_back({0, 0, 0, 64});
  return *choose_from(kernel, dtype, channels, flavours).first;
}

namespace {

#endif  // FUSED_OPS_WITH_CUDA

}  // namespace

float scale_as_float(double scale) {
  constexpr double kLargest = std::numeric_limits<float>::max();
  return static_cast<float>(std::isfinite(scale) ? std::clamp(scale, -kLargest, kLargest) : scale);
}

double kernel_scale(at::ScalarType dtype, double scale) {
  return dtype == at::kDouble ? scale : scale_as_float(scale);
}

// Symbolic-shape safe: the Meta kernel runs this under torch.compile's dynamic shapes.
void check_softmax_bias_sigmoid_inputs(const at::Tensor& x, const at::Tensor& bias, const char* op) {
  TORCH_CHECK(x.layout() == at::kStrided && bias.layout() == at::kStrided, op,
              ": x and bias must be dense (strided) tensors; got layouts ", x.layout(), " and ",
              bias.layout());
  TORCH_CHECK(x.dim() >= 2, op, ": x must have shape (N, C, ...) with at least 2 dimensions; got ",
              x.dim(), "-D shape ", x.sym_sizes());
  const at::ScalarType dtype = x.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16 ||
                  dtype == at::kDouble,
              op, ": x must be float32, float16, bfloat16 or float64; got ", dtype);
  TORCH_CHECK(bias.scalar_type() == dtype, op, ": bias must have the dtype of x (", dtype,
              "); got ", bias.scalar_type(), ". Convert it with bias.to(x.dtype)");
  TORCH_CHECK(bias.device() == x.device(), op, ": x is on ", x.device(), " but bias is on ",
              bias.device(), "; both must be on the same device");
  TORCH_CHECK(bias.sym_numel() == x.sym_size(1), op,
              ": bias must hold one value per channel: x has shape ", x.sym_sizes(),
              " (channels are dimension 1) but bias has shape ", bias.sym_sizes());
}

bool softmax_stats_pay_off(const at::Tensor& x) {
#ifdef FUSED_OPS_WITH_CUDA
  const at::ScalarType dtype = x.scalar_type();
  const bool has_kernels = dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16 ||
                           dtype == at::kDouble;
  if (!x.is_cuda() || !has_kernels || x.dim() < 2 || !x.is_contiguous()) return false;
  const int64_t widest = std::min(widest_softmax_stats_tile("softmax_bias_sigmoid", dtype),
                                  widest_softmax_stats_tile("softmax_bias_sigmoid_backward", dtype));
  // x is contiguous: every offset, the batch's included, is below numel (the statistics
  // variants take 32-bit batch strides). Not a guard (sym_gt, not operator>, which guards):
  // under a dynamic batch (torch.export's Dim) a bound on it would break the export. A tensor
  // that turns out larger at run time still gets the right answer: the forward then has ATen
  // compute the statistics, and the backward recomputes them.
  return widest > 0 && x.sym_size(1) <= widest &&
         !TORCH_STATICALLY_KNOWN_TRUE(x.sym_numel().sym_gt(std::numeric_limits<int32_t>::max()));
#else
  return false;
#endif
}

c10::SymDimVector softmax_stats_sizes(const at::Tensor& x) {
  c10::SymDimVector sizes(x.sym_sizes().begin(), x.sym_sizes().end());
  sizes[1] = 2;
  return sizes;
}

at::Tensor empty_softmax_stats(const at::Tensor& x) {
  return at::empty_symint(softmax_stats_sizes(x),
                          x.options().dtype(at::toOpMathType(x.scalar_type())),
                          at::MemoryFormat::Contiguous);
}

at::Tensor softmax_stats_by_aten(const at::Tensor& x) {
  at::Tensor stats = empty_softmax_stats(x);
  if (stats.numel() == 0) return stats;
  if (x.size(1) == 0) {  // the softmax of no channels: max -inf, sum 0
    stats.select(1, 0).fill_(-std::numeric_limits<double>::infinity());
    stats.select(1, 1).fill_(std::numeric_limits<double>::infinity());
    return stats;
  }
  const at::Tensor values = x.to(stats.scalar_type());
  const at::Tensor channel_max = values.amax(1, /*keepdim=*/true);
  stats.narrow(1, 0, 1).copy_(channel_max);
  stats.narrow(1, 1, 1).copy_(values.sub(channel_max).exp_().sum(1, /*keepdim=*/true).reciprocal_());
  return stats;
}

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

TORCH_LIBRARY_IMPL(fused, Meta, m) {
  m.impl("softmax_bias_sigmoid", &softmax_bias_sigmoid_meta);
  m.impl("softmax_bias_sigmoid_forward", &softmax_bias_sigmoid_forward_meta);
}

namespace {

std::string explain_cpu(const at::Tensor& x, const at::Tensor& bias) {
  check_softmax_bias_sigmoid_inputs(x, bias, "fused::explain_softmax_bias_sigmoid");
  return std::string("the CPU kernel (csrc/cpu/softmax_bias_sigmoid.cpp), its ") +
         (cpu_kernels_use_avx2() ? "AVX2+FMA copy" : "baseline-ISA copy (this CPU lacks AVX2 or FMA)");
}

}  // namespace

TORCH_LIBRARY_IMPL(fused, CPU, m) {
  m.impl("softmax_bias_sigmoid", &softmax_bias_sigmoid_cpu);
  m.impl("softmax_bias_sigmoid_forward", &softmax_bias_sigmoid_forward_cpu);
  m.impl("explain_softmax_bias_sigmoid", &explain_cpu);
}

#define FUSED_OPS_REFUSE_LAYOUT(key)                                                       \
  TORCH_LIBRARY_IMPL(fused, key, m) {                                                      \
    m.impl("softmax_bias_sigmoid", &softmax_bias_sigmoid_unsupported_layout);              \
    m.impl("softmax_bias_sigmoid_forward", &softmax_bias_sigmoid_forward_unsupported_layout); \
  }

FUSED_OPS_REFUSE_LAYOUT(SparseCPU)
FUSED_OPS_REFUSE_LAYOUT(SparseCsrCPU)
FUSED_OPS_REFUSE_LAYOUT(SparseMeta)
FUSED_OPS_REFUSE_LAYOUT(SparseCsrMeta)

#ifdef FUSED_OPS_WITH_CUDA
TORCH_LIBRARY_IMPL(fused, CUDA, m) {
  m.impl("softmax_bias_sigmoid", &softmax_bias_sigmoid_cuda);
  m.impl("softmax_bias_sigmoid_forward", &softmax_bias_sigmoid_forward_cuda);
  m.impl("explain_softmax_bias_sigmoid", &explain_cuda);
}

FUSED_OPS_REFUSE_LAYOUT(SparseCUDA)
FUSED_OPS_REFUSE_LAYOUT(SparseCsrCUDA)
#endif

}  // namespace fused_ops
