// fused::softmax_bias_sigmoid: validation and output allocation shared by every backend,
// then the CPU kernel (csrc/cpu/) or the ahead-of-time compiled Triton kernel (CUDA).

#include "ops/softmax_bias_sigmoid.h"

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/core/SymBool.h>
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

#ifdef FUSED_OPS_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstring>

#include "kernel_table.h"
#include "launcher.h"
#include "ops/flavour_choice.h"
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

// Whether an inner_stride_2 tile may read the whole span under its positions, one element past
// the last of each inner group: where that element of x's last position lies inside x's storage
// and its offset still fits the tile's 32-bit arithmetic.
bool whole_spans_readable(const at::Tensor& x, const ChannelView& v) {
  const int64_t storage_elements = static_cast<int64_t>(x.storage().nbytes()) / x.element_size();
  return fits_in_32_bits(largest_offset(v, v.x) + 1) &&
         x.storage_offset() + last_offset(v, v.x) + 1 < storage_elements;
}

// The facts of a forward call (ops/flavour_choice.h) for the flavours of softmax_bias_sigmoid
// (triton_src/softmax_bias_sigmoid_flavours.py). `with_stats`: the caller wants the softmax
// statistics written.
Facts forward_facts(const at::Tensor& x, const at::Tensor& bias_flat, const at::Tensor& out,
                    const ChannelView& v, bool with_stats) {
  const bool pointers_aligned = both_aligned_16(x, out);
  const int64_t row_stride = channels_last_row_stride(v);
  Facts facts;
  set(facts, Fact::kOffsets32Bits, offsets_fit_in_32_bits(v));
  set(facts, Fact::kPositionsContiguous, positions_contiguous(v));
  set(facts, Fact::kNchwRowsAligned, nchw_rows_aligned(x, out, v));
  static const int64_t small_tensor_bytes = kernel_table().fact_limit("small_tensor_bytes");
  static const int64_t max_samples_on_axis_1 = kernel_table().fact_limit("max_samples_on_axis_1");
  set(facts, Fact::kSmallTensor,
      static_cast<int64_t>(x.nbytes()) <= small_tensor_bytes && v.batch <= max_samples_on_axis_1);
  set(facts, Fact::kChannelsLast, row_stride > 0 && fits_in_32_bits(v.batch * v.positions * row_stride));
  set(facts, Fact::kChannelsLastAligned, pointers_aligned && aligned_16(bias_flat.const_data_ptr()) &&
                                             whole_16_byte_vectors(x, {v.channels, row_stride}));
  set(facts, Fact::kOutPositionsContiguous, out_positions_contiguous(v));
  set(facts, Fact::kXInnerStride2, v.x.inner == 2);
  set(facts, Fact::kSpansAligned,
      pointers_aligned &&
          whole_16_byte_vectors(x, {v.positions, v.inner_size, v.x.n, v.x.c, v.x.outer, v.out.n, v.out.c}) &&
          whole_spans_readable(x, v));
  set(facts, Fact::kSoftmaxStats, with_stats && all_offsets_fit_in_32_bits(v));
  return facts;
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

// What the forward runs for a call: a variant of softmax_bias_sigmoid, or the split kernel's two
// launches. `passed_over`, where given, receives why each flavour before the chosen one was not
// taken.
struct ForwardChoice {
  const Variant* variant;
  const Flavour* flavour;
  const SplitKernel* split = nullptr;
};

ForwardChoice choose_forward(const at::Tensor& input, const at::Tensor& bias_flat,
                             const at::Tensor& out, const ChannelView& v, bool with_stats,
                             std::string* passed_over = nullptr) {
  const auto [variant, flavour] =
      choose_flavour("softmax_bias_sigmoid", input.scalar_type(), v.channels, v.inner_size,
                     forward_facts(input, bias_flat, out, v, with_stats), passed_over);
  // The multi-pass kernel gives one program every channel of its positions: too few programs
  // where C is this large. The split kernel spreads them (docs/performance.md).
  if (variant->constexpr_value("CONTIGUOUS") == 1 && variant->constexpr_value("SINGLE_PASS") == 0) {
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
    const auto constexpr_flag = [variant](const char* name) { return variant->constexpr_value(name) > 0; };
    TORCH_INTERNAL_ASSERT(!constexpr_flag("CHANNELS_EXACT") || variant->constexpr_value("BLOCK_C") == v.channels);
    const int64_t block_s = variant->constexpr_value("BLOCK_S");
    // channels_last runs all N * S rows as one sample.
    const bool channels_last = constexpr_flag("CHANNELS_LAST");
    const int64_t batch = channels_last ? 1 : v.batch;
    const int64_t positions = channels_last ? v.batch * v.positions : v.positions;
    const int64_t inner_size = channels_last ? positions : v.inner_size;
    const int64_t x_inner = channels_last ? channels_last_row_stride(v) : v.x.inner;
    // A sector_stores tile's warps each take 32 - sector new positions, and the first warp of a
    // sample starts up to sector - 1 positions before its first: the programs must reach that far
    // past the last.
    const int64_t sector = std::max<int64_t>(0, variant->constexpr_value("SECTOR_STORES"));
    const int64_t positions_per_program = sector > 0 ? block_s / 32 * (32 - sector) : block_s;
    const int64_t reach = sector > 0 ? positions + sector - 1 : positions;
    const int64_t position_blocks = (reach + positions_per_program - 1) / positions_per_program;
    const bool samples_on_axis_1 = constexpr_flag("SMALL_TENSOR");
    const bool writes_stats = constexpr_flag("SOFTMAX_STATS");
    const uint32_t programs =
        grid_size(samples_on_axis_1 ? position_blocks : batch * position_blocks, kOp, input);
    if (writes_stats) *stats = stats_buffer;
    LaunchArgs args(*variant);
    args.pointer(input.const_data_ptr())
        .pointer(bias_flat.const_data_ptr())
        .pointer(out.mutable_data_ptr())
        .pointer(writes_stats ? stats_buffer.mutable_data_ptr() : nullptr)
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
// same choice, and the image of this GPU each variant runs from. Meta tensors stand for CUDA
// tensors of their layout whose storage starts on 16 bytes (as every CUDA allocation does), so
// the choice can be inspected, and tested, on a machine without a GPU.
std::string explain_cuda(const at::Tensor& x, const at::Tensor& bias) {
  std::string text = "no kernel: x is empty";
  with_channel_view(x, bias, [&](const at::Tensor& input, const at::Tensor& bias_flat,
                                 at::Tensor& out, const ChannelView& v) {
    const bool on_gpu = input.is_cuda();
    const c10::OptionalDeviceGuard guard(on_gpu ? std::optional<c10::Device>(input.device()) : std::nullopt);
    std::string passed_over;
    const ForwardChoice choice = choose_forward(input, bias_flat, out, v, false, &passed_over);
    const int device = input.get_device();
    const auto with_image = [&](const Variant& variant) {
      return describe(variant) + " (" + (on_gpu ? image_for_device(variant, device) : "for CUDA") + ")";
    };
    text = choice.split != nullptr
               ? with_image(*choice.split->statistics) + ", then " +
                     with_image(*choice.split->output) + ": C = " + std::to_string(v.channels) +
                     " is beyond every single-pass tile of contiguous NCHW"
               : with_image(*choice.variant);
    text += std::string("; flavour ") + choice.flavour->name;
    if (!passed_over.empty()) text += "; passed over: " + passed_over;
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

uint32_t grid_size(int64_t programs, const char* op, const at::Tensor& x) {
  TORCH_CHECK(programs <= std::numeric_limits<int32_t>::max(), op, ": x of shape ", x.sizes(),
              " needs ", programs, " programs, more than one launch can hold");
  return static_cast<uint32_t>(programs);
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
  const int64_t widest =
      std::min(widest_tile_requiring("softmax_bias_sigmoid", dtype, Fact::kSoftmaxStats),
               widest_tile_requiring("softmax_bias_sigmoid_backward", dtype, Fact::kSoftmaxStats));
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

TORCH_LIBRARY_IMPL(fused, Meta, m) {
  m.impl("softmax_bias_sigmoid", &softmax_bias_sigmoid_meta);
  m.impl("softmax_bias_sigmoid_forward", &softmax_bias_sigmoid_forward_meta);
#ifdef FUSED_OPS_WITH_CUDA
  m.impl("explain_softmax_bias_sigmoid", &explain_cuda);
#else
  m.impl("explain_softmax_bias_sigmoid", [](const at::Tensor& x, const at::Tensor& bias) {
    check_softmax_bias_sigmoid_inputs(x, bias, "fused::explain_softmax_bias_sigmoid");
    return std::string("no kernel: this build of fused_ops has no CUDA kernels");
  });
#endif
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
