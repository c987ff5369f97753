// fused::softmax_bias_sigmoid_backward: validation and outputs shared by every backend, then
// the CPU kernel (csrc/cpu/) or the ahead-of-time compiled Triton kernel (CUDA); and the
// Autograd kernels of both ops, in C++ so that training works wherever the dispatcher runs:
// eager Python, torch.compile and torch.export (which trace through it), and TorchScript
// modules loaded in C++.

#include "ops/softmax_bias_sigmoid_backward.h"

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cstring>
#include <optional>
#include <tuple>

#ifdef FUSED_OPS_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "launcher.h"
#include "ops/flavour_choice.h"
#endif

namespace fused_ops {
namespace {

constexpr const char* kOp = "fused::softmax_bias_sigmoid_backward";

using Gradients = std::tuple<at::Tensor, at::Tensor>;
using OptionalTensor = std::optional<at::Tensor>;

// Symbolic-shape safe, for the Meta kernel.
void check_inputs(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& bias,
                  const OptionalTensor& softmax_stats) {
  check_softmax_bias_sigmoid_inputs(x, bias, kOp);
  TORCH_CHECK(grad_out.layout() == at::kStrided, kOp,
              ": grad_out must be a dense (strided) tensor; got layout ", grad_out.layout());
  TORCH_CHECK(grad_out.scalar_type() == x.scalar_type(), kOp,
              ": grad_out must have the dtype of x (", x.scalar_type(), "); got ",
              grad_out.scalar_type());
  TORCH_CHECK(grad_out.device() == x.device(), kOp, ": x is on ", x.device(),
              " but grad_out is on ", grad_out.device(), "; both must be on the same device");
  TORCH_CHECK(grad_out.sym_sizes() == x.sym_sizes(), kOp,
              ": grad_out must have the shape of x (", x.sym_sizes(), "); got ",
              grad_out.sym_sizes());
  if (!softmax_stats.has_value()) return;
  const at::Tensor& stats = *softmax_stats;
  const c10::SymDimVector sizes = softmax_stats_sizes(x);
  const at::ScalarType dtype = at::toOpMathType(x.scalar_type());
  TORCH_CHECK(stats.layout() == at::kStrided, kOp,
              ": softmax_stats must be a dense (strided) tensor; got layout ", stats.layout());
  TORCH_CHECK(stats.scalar_type() == dtype && stats.sym_sizes() == c10::SymIntArrayRef(sizes),
              kOp, ": softmax_stats must be what fused::softmax_bias_sigmoid_forward returned for x: ",
              dtype, " of shape ", c10::SymIntArrayRef(sizes), "; got ", stats.scalar_type(),
              " of shape ", stats.sym_sizes());
  TORCH_CHECK(stats.device() == x.device(), kOp, ": x is on ", x.device(),
              " but softmax_stats is on ", stats.device(), "; both must be on the same device");
}

// Both views of x, grad_out and grad_x, or false when their spatial strides need more than two
// groups or group differently.
bool backward_view(const at::Tensor& x, const at::Tensor& grad_out, const at::Tensor& grad_x,
                   BackwardView& view) {
  return channel_view(x, grad_out, view.grad_out) && channel_view(x, grad_x, view.grad_x) &&
         view.grad_out.inner_size == view.grad_x.inner_size;
}

// The outputs are empty_like(x) and empty_like(bias), as in the Meta kernel, or the caller's
// grad_x. `kernel(x, bias_flat, grad_out, grad_x, view)` writes grad_x and returns the C sums
// of dp that are grad_bias, in the compute type. Layouts the view cannot express run on
// contiguous copies.
template <typename Kernel>
Gradients with_backward_view(const at::Tensor& grad_out, const at::Tensor& x,
                             const at::Tensor& bias, const OptionalTensor& softmax_stats,
                             Kernel&& kernel, at::Tensor grad_x = at::Tensor()) {
  check_inputs(grad_out, x, bias, softmax_stats);
  if (!grad_x.defined()) grad_x = at::empty_like(x);
  at::Tensor grad_bias = at::empty_like(bias);
  if (x.numel() == 0) return {grad_x, grad_bias.zero_()};
  const at::Tensor bias_flat = bias.reshape({-1}).contiguous();
  BackwardView view;
  at::Tensor bias_sums;
  if (backward_view(x, grad_out, grad_x, view)) {
    bias_sums = kernel(x, bias_flat, grad_out, grad_x, view);
  } else {
    const at::Tensor x_contiguous = x.contiguous();
    const at::Tensor grad_out_contiguous = grad_out.contiguous();
    at::Tensor staged = at::empty_like(x_contiguous);
    TORCH_INTERNAL_ASSERT(backward_view(x_contiguous, grad_out_contiguous, staged, view));
    bias_sums = kernel(x_contiguous, bias_flat, grad_out_contiguous, staged, view);
    grad_x.copy_(staged);
  }
  grad_bias.copy_(bias_sums.view(bias.sizes()));
  return {grad_x, grad_bias};
}

Gradients softmax_bias_sigmoid_backward_meta(const at::Tensor& grad_out, const at::Tensor& x,
                                             const at::Tensor& bias, double scale,
                                             const OptionalTensor& softmax_stats) {
  check_inputs(grad_out, x, bias, softmax_stats);
  return {at::empty_like(x), at::empty_like(bias)};
}

Gradients softmax_bias_sigmoid_backward_unsupported_layout(const at::Tensor& grad_out,
                                                           const at::Tensor& x,
                                                           const at::Tensor& bias, double scale,
                                                           const OptionalTensor& softmax_stats) {
  check_inputs(grad_out, x, bias, softmax_stats);
  TORCH_INTERNAL_ASSERT(false, "unreachable: check_inputs accepts only strided tensors");
}

// The CPU kernel recomputes the statistics as it goes (they cost it no extra pass over x), so
// it checks softmax_stats and does not read them.
Gradients backward_cpu_into(const at::Tensor& grad_out, const at::Tensor& x,
                            const at::Tensor& bias, double scale,
                            const OptionalTensor& softmax_stats, at::Tensor given_grad_x) {
  return with_backward_view(
      grad_out, x, bias, softmax_stats,
      [&](const at::Tensor& input, const at::Tensor& bias_flat, const at::Tensor& grad,
          at::Tensor& grad_x, const BackwardView& view) {
        return softmax_bias_sigmoid_backward_cpu_kernel(input, bias_flat, grad, scale, view,
                                                        grad_x)
            .sum(0);
      },
      std::move(given_grad_x));
}

Gradients softmax_bias_sigmoid_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                            const at::Tensor& bias, double scale,
                                            const OptionalTensor& softmax_stats) {
  return backward_cpu_into(grad_out, x, bias, scale, softmax_stats, at::Tensor());
}

#ifdef FUSED_OPS_WITH_CUDA

// The column_sums kernel (triton_src/column_sums.py) for partial sums of `dtype`.
const Variant& column_sums_variant(at::ScalarType dtype) {
  static const auto find = [](const char* name) {
    const Variant* found =
        find_variant("column_sums", [&](const Variant& v) { return std::strcmp(v.dtype, name) == 0; });
    TORCH_CHECK(found != nullptr, kOp, ": this build has no ", name, " column_sums kernel");
    return found;
  };
  static const Variant* const fp32 = find("fp32");
  static const Variant* const fp64 = find("fp64");
  return dtype == at::kDouble ? *fp64 : *fp32;
}

// The sums of the columns of `rows` (R, C), contiguous in the compute type. Tall buffers go to
// the column_sums kernel: chunks of kRowsPerProgram rows, then the chunks' sums, one launch per
// level, until one row is left. Shorter ones to ATen's sum, which is as fast there and costs one
// launch (docs/performance.md has both measurements).
at::Tensor column_sums(at::Tensor rows) {
  constexpr int64_t kTallRows = 32768;
  constexpr int64_t kRowsPerProgram = 256;
  if (rows.size(0) < kTallRows) return rows.sum(0);
  const Variant& variant = column_sums_variant(rows.scalar_type());
  const int64_t columns = rows.size(1);
  const int64_t block_c = variant.constexpr_value("BLOCK_C");
  const int64_t column_blocks = (columns + block_c - 1) / block_c;
  const int device = rows.get_device();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device).stream();
  while (rows.size(0) > 1) {
    // Two levels for the tallest buffers; one program per column block where few rows are left.
    const int64_t per_program = rows.size(0) > 2 * kRowsPerProgram ? kRowsPerProgram : rows.size(0);
    const int64_t chunks = (rows.size(0) + per_program - 1) / per_program;
    at::Tensor sums = at::empty({chunks, columns}, rows.options());
    LaunchArgs args(variant);
    args.pointer(rows.const_data_ptr())
        .pointer(sums.mutable_data_ptr())
        .integer(rows.size(0))
        .integer(columns)
        .integer(per_program);
    launch(args, grid_size(chunks * column_blocks, kOp, rows), device, stream);
    rows = sums;
  }
  return rows.view({columns});
}

Gradients backward_cuda_into(const at::Tensor& grad_out, const at::Tensor& x,
                             const at::Tensor& bias, double scale,
                             const OptionalTensor& softmax_stats, at::Tensor given_grad_x) {
  const c10::cuda::CUDAGuard guard(x.device());
  return with_backward_view(grad_out, x, bias, softmax_stats, [&](const at::Tensor& input,
                                                                  const at::Tensor& bias_flat,
                                                                  const at::Tensor& grad,
                                                                  at::Tensor& grad_x,
                                                                  const BackwardView& view) {
    const ChannelView& v = view.grad_out;
    const ChannelStrides& gx = view.grad_x.out;
    // The facts of the backward's flavours (triton_src/softmax_bias_sigmoid_flavours.py), over
    // grad_out's view and grad_x's alike.
    Facts facts;
    set(facts, Fact::kOffsets32Bits, offsets_fit_in_32_bits(view.grad_out) && offsets_fit_in_32_bits(view.grad_x));
    set(facts, Fact::kPositionsContiguous,
        positions_contiguous(view.grad_out) && positions_contiguous(view.grad_x));
    set(facts, Fact::kSoftmaxStats, softmax_stats.has_value() && all_offsets_fit_in_32_bits(view.grad_out) &&
                                        all_offsets_fit_in_32_bits(view.grad_x));
    const Variant& variant =
        *choose_flavour("softmax_bias_sigmoid_backward", input.scalar_type(), v.channels, v.inner_size, facts)
             .variant;
    // Dense as the forward returns them, so contiguous() copies nothing there.
    const at::Tensor stats = variant.constexpr_value("SOFTMAX_STATS") == 1
                                 ? softmax_stats->contiguous()
                                 : at::Tensor();
    const int64_t block_s = variant.constexpr_value("BLOCK_S");
    const int64_t position_blocks = (v.positions + block_s - 1) / block_s;
    const uint32_t programs = grid_size(v.batch * position_blocks, kOp, input);
    at::Tensor partial_sums =
        at::empty({static_cast<int64_t>(programs), v.channels},
                  input.options().dtype(at::toOpMathType(input.scalar_type())));
    LaunchArgs args(variant);
    args.pointer(input.const_data_ptr())
        .pointer(bias_flat.const_data_ptr())
        .pointer(grad.const_data_ptr())
        .pointer(grad_x.mutable_data_ptr())
        .pointer(partial_sums.mutable_data_ptr())
        .pointer(stats.defined() ? stats.const_data_ptr() : nullptr)
        .integer(v.channels)
        .integer(v.positions)
        .integer(v.inner_size)
        .integer(position_blocks)
        .integer(v.x.n).integer(v.x.c).integer(v.x.outer).integer(v.x.inner)
        .integer(v.out.n).integer(v.out.c).integer(v.out.outer).integer(v.out.inner)
        .integer(gx.n).integer(gx.c).integer(gx.outer).integer(gx.inner)
        .real(kernel_scale(x.scalar_type(), scale));
    launch(args, programs, input.get_device(),
           c10::cuda::getCurrentCUDAStream(input.get_device()).stream());
    return column_sums(partial_sums);
  }, std::move(given_grad_x));
}

Gradients softmax_bias_sigmoid_backward_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                                             const at::Tensor& bias, double scale,
                                             const OptionalTensor& softmax_stats) {
  return backward_cuda_into(grad_out, x, bias, scale, softmax_stats, at::Tensor());
}

#endif  // FUSED_OPS_WITH_CUDA

// --- autograd ------------------------------------------------------------------------------

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor call_forward(const at::Tensor& x, const at::Tensor& bias, double scale) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fused::softmax_bias_sigmoid", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double)>();
  return op.call(x, bias, scale);
}

std::tuple<at::Tensor, at::Tensor> call_forward_with_stats(const at::Tensor& x,
                                                           const at::Tensor& bias, double scale) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("fused::softmax_bias_sigmoid_forward", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, double)>();
  return op.call(x, bias, scale);
}

Gradients call_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& bias,
                        double scale, const OptionalTensor& softmax_stats) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fused::softmax_bias_sigmoid_backward", "")
                             .typed<Gradients(const at::Tensor&, const at::Tensor&,
                                              const at::Tensor&, double, const OptionalTensor&)>();
  return op.call(grad_out, x, bias, scale, softmax_stats);
}

// Saves x, bias and, where save_softmax_stats, the softmax statistics (2/C the size of x), not
// the output: the backward recomputes the rest from x.
class SoftmaxBiasSigmoidFunction : public torch::autograd::Function<SoftmaxBiasSigmoidFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& bias,
                            double scale, bool save_softmax_stats) {
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor out, stats;
    if (save_softmax_stats) {
      std::tie(out, stats) = call_forward_with_stats(x, bias, scale);
    } else {
      out = call_forward(x, bias, scale);
    }
    ctx->save_for_backward({x, bias, stats});
    ctx->saved_data["scale"] = scale;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const OptionalTensor stats = saved[2].defined() ? OptionalTensor(saved[2]) : std::nullopt;
    auto [grad_x, grad_bias] = call_backward(grad_outputs[0], saved[0], saved[1],
                                             ctx->saved_data["scale"].toDouble(), stats);
    return {grad_x, grad_bias, at::Tensor(), at::Tensor()};
  }
};

// The backward op as a differentiable function whose own derivative is not implemented: a
// second backward (create_graph=True, then grad again) fails with this message rather than
// silently treating the gradients as constants.
class SoftmaxBiasSigmoidBackwardFunction
    : public torch::autograd::Function<SoftmaxBiasSigmoidBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_out,
                               const at::Tensor& x, const at::Tensor& bias, double scale,
                               const OptionalTensor& softmax_stats) {
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [grad_x, grad_bias] = call_backward(grad_out, x, bias, scale, softmax_stats);
    return {grad_x, grad_bias};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    TORCH_CHECK(false, kOp,
                ": the second derivative of fused::softmax_bias_sigmoid is not implemented "
                "(double backward, e.g. torch.autograd.grad(..., create_graph=True) followed "
                "by another backward)");
  }
};

// Only a call that will be differentiated, and where softmax_stats_pay_off, writes the statistics.
at::Tensor softmax_bias_sigmoid_autograd(const at::Tensor& x, const at::Tensor& bias,
                                         double scale) {
  if (at::GradMode::is_enabled() && (x.requires_grad() || bias.requires_grad())) {
    return SoftmaxBiasSigmoidFunction::apply(x, bias, scale, softmax_stats_pay_off(x));
  }
  const at::AutoDispatchBelowADInplaceOrView below_autograd;
  return call_forward(x, bias, scale);
}

// Called directly, with grads on: the statistics are an output that nothing differentiates.
std::tuple<at::Tensor, at::Tensor> softmax_bias_sigmoid_forward_autograd(const at::Tensor& x,
                                                                         const at::Tensor& bias,
                                                                         double scale) {
  TORCH_CHECK(!(at::GradMode::is_enabled() && (x.requires_grad() || bias.requires_grad())),
              "fused::softmax_bias_sigmoid_forward: not differentiable; call "
              "fused::softmax_bias_sigmoid, whose autograd runs this forward");
  const at::AutoDispatchBelowADInplaceOrView below_autograd;
  return call_forward_with_stats(x, bias, scale);
}

Gradients softmax_bias_sigmoid_backward_autograd(const at::Tensor& grad_out, const at::Tensor& x,
                                                 const at::Tensor& bias, double scale,
                                                 const OptionalTensor& softmax_stats) {
  const variable_list gradients =
      SoftmaxBiasSigmoidBackwardFunction::apply(grad_out, x, bias, scale, softmax_stats);
  return {gradients[0], gradients[1]};
}

}  // namespace

at::Tensor softmax_bias_sigmoid_backward_into(const at::Tensor& grad_out, const at::Tensor& x,
                                              const at::Tensor& bias, double scale,
                                              at::Tensor grad_x) {
  TORCH_INTERNAL_ASSERT(grad_x.sizes() == x.sizes() && grad_x.strides() == x.strides() &&
                        grad_x.scalar_type() == x.scalar_type() && grad_x.device() == x.device());
#ifdef FUSED_OPS_WITH_CUDA
  if (x.is_cuda()) {
    return std::get<1>(backward_cuda_into(grad_out, x, bias, scale, std::nullopt, std::move(grad_x)));
  }
#endif
  return std::get<1>(backward_cpu_into(grad_out, x, bias, scale, std::nullopt, std::move(grad_x)));
}

TORCH_LIBRARY_IMPL(fused, Autograd, m) {
  m.impl("softmax_bias_sigmoid", &softmax_bias_sigmoid_autograd);
  m.impl("softmax_bias_sigmoid_forward", &softmax_bias_sigmoid_forward_autograd);
  m.impl("softmax_bias_sigmoid_backward", &softmax_bias_sigmoid_backward_autograd);
}

TORCH_LIBRARY_IMPL(fused, Meta, m) {
  m.impl("softmax_bias_sigmoid_backward", &softmax_bias_sigmoid_backward_meta);
}

TORCH_LIBRARY_IMPL(fused, CPU, m) {
  m.impl("softmax_bias_sigmoid_backward", &softmax_bias_sigmoid_backward_cpu);
}

TORCH_LIBRARY_IMPL(fused, SparseCPU, m) {
  m.impl("softmax_bias_sigmoid_backward", &softmax_bias_sigmoid_backward_unsupported_layout);
}

TORCH_LIBRARY_IMPL(fused, SparseCsrCPU, m) {
  m.impl("softmax_bias_sigmoid_backward", &softmax_bias_sigmoid_backward_unsupported_layout);
}

#ifdef FUSED_OPS_WITH_CUDA
TORCH_LIBRARY_IMPL(fused, CUDA, m) {
  m.impl("softmax_bias_sigmoid_backward", &softmax_bias_sigmoid_backward_cuda);
}

TORCH_LIBRARY_IMPL(fused, SparseCUDA, m) {
  m.impl("softmax_bias_sigmoid_backward", &softmax_bias_sigmoid_backward_unsupported_layout);
}

TORCH_LIBRARY_IMPL(fused, SparseCsrCUDA, m) {
  m.impl("softmax_bias_sigmoid_backward", &softmax_bias_sigmoid_backward_unsupported_layout);
}
#endif

}  // namespace fused_ops
