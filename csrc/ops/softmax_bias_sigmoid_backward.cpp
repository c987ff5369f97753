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

#include <cmath>
#include <tuple>

#ifdef FUSED_OPS_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "launcher.h"
#endif

namespace fused_ops {
namespace {

constexpr const char* kOp = "fused::softmax_bias_sigmoid_backward";

using Gradients = std::tuple<at::Tensor, at::Tensor>;

// Symbolic-shape safe, for the Meta kernel.
void check_inputs(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& bias) {
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
}

// Both views of x, grad_out and grad_x, or false when their spatial strides need more than two
// groups or group differently.
bool backward_view(const at::Tensor& x, const at::Tensor& grad_out, const at::Tensor& grad_x,
                   BackwardView& view) {
  return channel_view(x, grad_out, view.grad_out) && channel_view(x, grad_x, view.grad_x) &&
         view.grad_out.inner_size == view.grad_x.inner_size;
}

// The sums of the columns of the partial sums (rows, C). ATen's one sum over the rows is slow for
// the tallest buffers: 78 us for the workload's 66564 x 128 fp32 rows on the H100 (440 GB/s, 5%
// of the backward). There, summing 258 groups of 258 rows first, then the groups' sums, took
// 33 us. Elsewhere grouping by about sqrt(rows) measured slower, so it is kept to tall, wide
// buffers: (8320, 128) 18 -> 25 us, (1040, 128) 12 -> 187 us, (266256, 16) 21 -> 35 us,
// (4160, 1024) 21 -> 19 us. The groups are equal (a divisor of rows near its square root, else
// no grouping), and depend on the shape alone, so the result stays deterministic.
at::Tensor column_sums(const at::Tensor& rows) {
  const int64_t count = rows.size(0);
  if (count >= 32768 && rows.size(1) >= 128) {
    const auto root = static_cast<int64_t>(std::sqrt(static_cast<double>(count)));
    for (int64_t groups = root; groups > root / 2; --groups) {
      if (count % groups == 0) {
        return rows.view({groups, count / groups, rows.size(1)}).sum(1).sum(0);
      }
    }
  }
  return rows.sum(0);
}

// The outputs are empty_like(x) and empty_like(bias), as in the Meta kernel. `kernel(x,
// bias_flat, grad_out, grad_x, view)` writes grad_x and returns the partial sums of dp, one row
// of C values per piece of the work, which add up to grad_bias. Layouts the view cannot
// express run on contiguous copies.
template <typename Kernel>
Gradients with_backward_view(const at::Tensor& grad_out, const at::Tensor& x,
                             const at::Tensor& bias, Kernel&& kernel) {
  check_inputs(grad_out, x, bias);
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_bias = at::empty_like(bias);
  if (x.numel() == 0) return {grad_x, grad_bias.zero_()};
  const at::Tensor bias_flat = bias.reshape({-1}).contiguous();
  BackwardView view;
  at::Tensor partial_sums;
  if (backward_view(x, grad_out, grad_x, view)) {
    partial_sums = kernel(x, bias_flat, grad_out, grad_x, view);
  } else {
    const at::Tensor x_contiguous = x.contiguous();
    const at::Tensor grad_out_contiguous = grad_out.contiguous();
    at::Tensor staged = at::empty_like(x_contiguous);
    TORCH_INTERNAL_ASSERT(backward_view(x_contiguous, grad_out_contiguous, staged, view));
    partial_sums = kernel(x_contiguous, bias_flat, grad_out_contiguous, staged, view);
    grad_x.copy_(staged);
  }
  grad_bias.copy_(column_sums(partial_sums).view(bias.sizes()));
  return {grad_x, grad_bias};
}

Gradients softmax_bias_sigmoid_backward_meta(const at::Tensor& grad_out, const at::Tensor& x,
                                             const at::Tensor& bias, double scale) {
  check_inputs(grad_out, x, bias);
  return {at::empty_like(x), at::empty_like(bias)};
}

Gradients softmax_bias_sigmoid_backward_unsupported_layout(const at::Tensor& grad_out,
                                                           const at::Tensor& x,
                                                           const at::Tensor& bias, double scale) {
  check_inputs(grad_out, x, bias);
  TORCH_INTERNAL_ASSERT(false, "unreachable: check_inputs accepts only strided tensors");
}

Gradients softmax_bias_sigmoid_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                            const at::Tensor& bias, double scale) {
  return with_backward_view(grad_out, x, bias,
                            [&](const at::Tensor& input, const at::Tensor& bias_flat,
                                const at::Tensor& grad, at::Tensor& grad_x,
                                const BackwardView& view) {
                              return softmax_bias_sigmoid_backward_cpu_kernel(
                                  input, bias_flat, grad, scale, view, grad_x);
                            });
}

#ifdef FUSED_OPS_WITH_CUDA

Gradients softmax_bias_sigmoid_backward_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                                             const at::Tensor& bias, double scale) {
  const c10::cuda::CUDAGuard guard(x.device());
  return with_backward_view(grad_out, x, bias, [&](const at::Tensor& input,
                                                   const at::Tensor& bias_flat,
                                                   const at::Tensor& grad, at::Tensor& grad_x,
                                                   const BackwardView& view) {
    const ChannelView& v = view.grad_out;
    const ChannelStrides& gx = view.grad_x.out;
    const Variant& variant = choose_variant(
        "softmax_bias_sigmoid_backward", input.scalar_type(), v.channels,
        positions_contiguous(view.grad_out) && positions_contiguous(view.grad_x),
        offsets_fit_in_32_bits(view.grad_out) && offsets_fit_in_32_bits(view.grad_x));
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
    return partial_sums;
  });
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

Gradients call_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& bias,
                        double scale) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("fused::softmax_bias_sigmoid_backward", "")
          .typed<Gradients(const at::Tensor&, const at::Tensor&, const at::Tensor&, double)>();
  return op.call(grad_out, x, bias, scale);
}

// Saves x and bias, not the output: the backward recomputes what it needs from x.
class SoftmaxBiasSigmoidFunction : public torch::autograd::Function<SoftmaxBiasSigmoidFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& bias,
                            double scale) {
    ctx->save_for_backward({x, bias});
    ctx->saved_data["scale"] = scale;
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    return call_forward(x, bias, scale);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    auto [grad_x, grad_bias] =
        call_backward(grad_outputs[0], saved[0], saved[1], ctx->saved_data["scale"].toDouble());
    return {grad_x, grad_bias, at::Tensor()};
  }
};

// The backward op as a differentiable function whose own derivative is not implemented: a
// second backward (create_graph=True, then grad again) fails with this message rather than
// silently treating the gradients as constants.
class SoftmaxBiasSigmoidBackwardFunction
    : public torch::autograd::Function<SoftmaxBiasSigmoidBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_out,
                               const at::Tensor& x, const at::Tensor& bias, double scale) {
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [grad_x, grad_bias] = call_backward(grad_out, x, bias, scale);
    return {grad_x, grad_bias};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    TORCH_CHECK(false, kOp,
                ": the second derivative of fused::softmax_bias_sigmoid is not implemented "
                "(double backward, e.g. torch.autograd.grad(..., create_graph=True) followed "
                "by another backward)");
  }
};

at::Tensor softmax_bias_sigmoid_autograd(const at::Tensor& x, const at::Tensor& bias,
                                         double scale) {
  return SoftmaxBiasSigmoidFunction::apply(x, bias, scale);
}

Gradients softmax_bias_sigmoid_backward_autograd(const at::Tensor& grad_out, const at::Tensor& x,
                                                 const at::Tensor& bias, double scale) {
  const variable_list gradients =
      SoftmaxBiasSigmoidBackwardFunction::apply(grad_out, x, bias, scale);
  return {gradients[0], gradients[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(fused, Autograd, m) {
  m.impl("softmax_bias_sigmoid", &softmax_bias_sigmoid_autograd);
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
