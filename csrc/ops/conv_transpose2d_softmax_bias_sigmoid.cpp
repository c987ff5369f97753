// fused::conv_transpose2d_softmax_bias_sigmoid(x, weight, conv_bias, bias, stride, padding,
// output_padding, scale):
//   sigmoid((softmax(conv_transpose2d(x, weight, conv_bias, stride, padding, output_padding),
//            dim=1) + bias) * scale), dilation 1, groups 1.
//
// CUDA runs it as one ahead-of-time compiled Triton kernel (the convolution's output never reaches
// memory) where that kernel applies: float16, bfloat16, or float32 with TF32 allowed for
// convolutions (torch.backends.cudnn.allow_tf32, PyTorch's default; float32 x and weight reach it
// as fp16 scaled by powers of two, TF32's precision: triton_src/fp16_operands.py); C_out <= the
// widest channel tile built (128); and 32-bit offsets within one sample. Elsewhere, and on the
// CPU, it runs ATen's convolution followed by fused::softmax_bias_sigmoid (on CUDA the convolution
// in the format its cuDNN kernels take, the tail writing NCHW). Either way the output is a
// contiguous NCHW tensor of x's dtype.
// Differentiable in x, weight, conv_bias and bias (the Autograd kernel at the end).

#include <ATen/ATen.h>
#include <ATen/TensorSubclassLikeUtils.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <limits>
#include <optional>
#include <tuple>
#include <vector>

#ifdef FUSED_OPS_WITH_CUDA
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstring>

#include "kernel_table.h"
#include "launcher.h"
#include "ops/softmax_bias_sigmoid.h"
#endif
#include "ops/softmax_bias_sigmoid_backward.h"

namespace fused_ops {
namespace {

constexpr const char* kOp = "fused::conv_transpose2d_softmax_bias_sigmoid";

// Symbolic-shape safe (the Meta kernel runs it under torch.compile); returns the output shape.
std::vector<c10::SymInt> check_inputs(const at::Tensor& x, const at::Tensor& weight,
                                      const std::optional<at::Tensor>& conv_bias,
                                      const at::Tensor& bias, at::IntArrayRef stride,
                                      at::IntArrayRef padding, at::IntArrayRef output_padding) {
  TORCH_CHECK(x.layout() == at::kStrided && weight.layout() == at::kStrided &&
                  bias.layout() == at::kStrided &&
                  (!conv_bias || conv_bias->layout() == at::kStrided),
              kOp, ": x, weight, conv_bias and bias must be dense (strided) tensors");
  TORCH_CHECK(x.dim() == 4, kOp, ": x must have shape (N, C_in, H, W); got ", x.dim(),
              "-D shape ", x.sym_sizes());
  TORCH_CHECK(weight.dim() == 4, kOp,
              ": weight must have shape (C_in, C_out, kH, kW) (ConvTranspose2d's layout); got ",
              weight.dim(), "-D shape ", weight.sym_sizes());
  TORCH_CHECK(weight.sym_size(0) == x.sym_size(1), kOp, ": weight has shape ", weight.sym_sizes(),
              ", so x needs ", weight.sym_size(0), " channels (dimension 1); x has shape ",
              x.sym_sizes());
  const at::ScalarType dtype = x.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16 ||
                  dtype == at::kDouble,
              kOp, ": x must be float32, float16 or bfloat16 (or float64 on the CPU); got ",
              dtype);
  const c10::SymInt out_channels = weight.sym_size(1);
  auto check_dtype_and_device = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.scalar_type() == dtype, kOp, ": ", name, " must have the dtype of x (", dtype,
                "); got ", t.scalar_type());
    TORCH_CHECK(t.device() == x.device(), kOp, ": x is on ", x.device(), " but ", name, " is on ",
                t.device(), "; all tensors must be on the same device");
  };
  auto check_per_channel = [&](const at::Tensor& t, const char* name) {
    check_dtype_and_device(t, name);
    TORCH_CHECK(t.sym_numel() == out_channels, kOp, ": ", name,
                " must hold one value per output channel: weight has shape ", weight.sym_sizes(),
                " (C_out = ", out_channels, ") but ", name, " has shape ", t.sym_sizes());
  };
  check_dtype_and_device(weight, "weight");
  if (conv_bias) check_per_channel(*conv_bias, "conv_bias");
  check_per_channel(bias, "bias");
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && output_padding.size() == 2, kOp,
              ": stride, padding and output_padding take 2 values (height, width)");
  std::vector<c10::SymInt> shape{x.sym_size(0), out_channels};
  for (int d = 0; d < 2; ++d) {
    TORCH_CHECK(stride[d] >= 1, kOp, ": stride must be positive; got ", stride);
    TORCH_CHECK(padding[d] >= 0, kOp, ": padding must not be negative; got ", padding);
    TORCH_CHECK(output_padding[d] >= 0 && output_padding[d] < stride[d], kOp,
                ": output_padding must be non-negative and smaller than stride (dilation is 1); "
                "got output_padding ", output_padding, " with stride ", stride);
    const c10::SymInt size = (x.sym_size(2 + d) - 1) * stride[d] - 2 * padding[d] +
                             weight.sym_size(2 + d) + output_padding[d];
    TORCH_CHECK(size > 0, kOp, ": the output would have size ", size, " in dimension ", 2 + d,
                " (x ", x.sym_sizes(), ", weight ", weight.sym_sizes(), ", stride ", stride,
                ", padding ", padding, ", output_padding ", output_padding, ")");
    shape.push_back(size);
  }
  return shape;
}

at::Tensor conv_transpose2d_softmax_bias_sigmoid_meta(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& conv_bias,
    const at::Tensor& bias, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef output_padding, double scale) {
  const auto shape = check_inputs(x, weight, conv_bias, bias, stride, padding, output_padding);
  return at::empty_symint(shape, x.options());
}

// Whether a CUDA convolution of x runs on the tensor cores: fp16, bf16, or fp32 as TF32 (unless
// TF32 is turned off for cuDNN). The fused kernel's convolution does so too, so it takes these.
bool convolution_on_tensor_cores(const at::Tensor& x) {
  const at::ScalarType dtype = x.scalar_type();
  return x.is_cuda() && (dtype == at::kHalf || dtype == at::kBFloat16 ||
                         (dtype == at::kFloat && at::globalContext().allowTF32CuDNN()));
}

// The memory format ATen's convolution of x runs fastest in: cuDNN's tensor-core kernels are NHWC
// and wrap an NCHW convolution in transposes, its full-precision fp32 kernels are NCHW and
// transpose an NHWC input instead (docs/performance.md has both measurements).
at::MemoryFormat convolution_format(const at::Tensor& x) {
  return convolution_on_tensor_cores(x) ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// ATen's convolution, then the fused softmax tail (through the dispatcher, so either backend).
at::Tensor unfused(const at::Tensor& x, const at::Tensor& weight,
                   const std::optional<at::Tensor>& conv_bias, const at::Tensor& bias,
                   at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
                   double scale) {
  static const auto tail =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("fused::softmax_bias_sigmoid", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double)>();
  const at::Tensor y = at::conv_transpose2d(x.contiguous(), weight, conv_bias, stride, padding,
                                            output_padding, /*groups=*/1, /*dilation=*/1);
  return tail.call(y, bias, scale).contiguous();
}

at::Tensor conv_transpose2d_softmax_bias_sigmoid_cpu(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& conv_bias,
    const at::Tensor& bias, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef output_padding, double scale) {
  check_inputs(x, weight, conv_bias, bias, stride, padding, output_padding);
  return unfused(x, weight, conv_bias, bias, stride, padding, output_padding, scale);
}

// Sparse and other non-strided inputs reach the op through their own dispatch keys; they get
// the same named error as every other invalid input.
at::Tensor conv_transpose2d_softmax_bias_sigmoid_unsupported_layout(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& conv_bias,
    const at::Tensor& bias, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef output_padding, double scale) {
  check_inputs(x, weight, conv_bias, bias, stride, padding, output_padding);
  TORCH_INTERNAL_ASSERT(false, "unreachable: check_inputs accepts only strided tensors");
}

#ifdef FUSED_OPS_WITH_CUDA

constexpr const char* kKernel = "conv_transpose2d_softmax_bias_sigmoid";

// Outside the fused kernel on CUDA: cuDNN's convolution in its fastest format, then the tail
// reading that layout and writing the NCHW output in one pass.
at::Tensor unfused_cuda(const at::Tensor& x, const at::Tensor& weight,
                        const std::optional<at::Tensor>& conv_bias, const at::Tensor& bias,
                        at::IntArrayRef stride, at::IntArrayRef padding,
                        at::IntArrayRef output_padding, double scale) {
  const at::Tensor y = at::conv_transpose2d(x.contiguous(convolution_format(x)), weight,
                                            conv_bias, stride, padding, output_padding,
                                            /*groups=*/1, /*dilation=*/1);
  return softmax_bias_sigmoid_cuda_into(y, bias, scale, at::empty(y.sizes(), y.options()));
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The first variant (table order) of x's dtype with `w_phases` column phases a program, that the
// call's alignment allows (ALIGNED ones only where `aligned`), whose channel tile holds C_out and
// whose image on this device fits its shared memory per block; nullptr if none does.
const Variant* choose_variant(at::ScalarType dtype, int64_t w_phases, bool aligned, int64_t out_channels,
                              int device) {
  int shared_limit = 0;
  C10_CUDA_CHECK(
      cudaDeviceGetAttribute(&shared_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return find_variant(kKernel, [&](const Variant& candidate) {
    return std::strcmp(candidate.dtype, triton_dtype(dtype)) == 0 &&
           candidate.constexpr_value("W_PHASES") == w_phases &&
           (aligned || candidate.constexpr_value("ALIGNED") == 0) &&
           candidate.constexpr_value("BLOCK_N") >= out_channels &&
           image_for(candidate, device).shared_bytes <= shared_limit;
  });
}

bool aligned_16(const at::Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.const_data_ptr()) % 16 == 0;
}

// The weight rearranged for the kernel: [phase (r_h, r_w)][C_out][tap (t_h, t_w)][C_in], where
// kernel row kh = r_h + stride_h * t_h (zero beyond the kernel), and likewise for columns.
at::Tensor phase_weight(const at::Tensor& weight, int64_t taps_h, int64_t taps_w,
                        at::IntArrayRef stride) {
  const int64_t pad_h = taps_h * stride[0] - weight.size(2);
  const int64_t pad_w = taps_w * stride[1] - weight.size(3);
  const at::Tensor padded = pad_h == 0 && pad_w == 0 ? weight : at::constant_pad_nd(weight, {0, pad_w, 0, pad_h});
  return padded
      .reshape({weight.size(0), weight.size(1), taps_h, stride[0], taps_w, stride[1]})
      .permute({3, 5, 1, 2, 4, 0})
      .contiguous();
}

// The fp16_operands variant (triton_src/fp16_operands.py) of one pass: the rows' largest
// magnitudes (convert false) or the conversion, for aligned rows or any.
const Variant& fp16_operands_variant(bool convert, bool aligned) {
  static const auto find = [](int64_t convert, int64_t aligned) {
    const Variant* found = find_variant("fp16_operands", [&](const Variant& v) {
      return v.constexpr_value("CONVERT") == convert && v.constexpr_value("ALIGNED") == aligned;
    });
    TORCH_CHECK(found != nullptr, kOp, ": this build has no fp16_operands kernel with CONVERT=", convert,
                ", ALIGNED=", aligned);
    return found;
  };
  static const std::array<const Variant*, 4> variants{find(0, 0), find(0, 1), find(1, 0), find(1, 1)};
  return *variants[2 * convert + aligned];
}

// `rows` rows of `row_length` fp32 values, contiguous, as fp16 operands for the fused kernel:
// each row times the power of two that fits it to fp16, its largest finite magnitude written to
// row_max (zeroed) for the kernel to undo the scale.
at::Tensor fp16_operands(const at::Tensor& src, int64_t rows, int64_t row_length, float* row_max,
                         int device, cudaStream_t stream) {
  at::Tensor dst = at::empty(src.sizes(), src.options().dtype(at::kHalf));
  if (rows * row_length == 0) return dst;
  const bool aligned = aligned_16(src) && row_length % 16 == 0;
  for (const bool convert : {false, true}) {
    const Variant& variant = fp16_operands_variant(convert, aligned);
    LaunchArgs args(variant);
    args.pointer(src.const_data_ptr())
        .pointer(row_max)
        .pointer(dst.mutable_data_ptr())
        .integer(row_length);
    launch(args, grid_size(rows * ceil_div(row_length, variant.constexpr_value("BLOCK")), kOp, src),
           device, stream);
  }
  return dst;
}

// The output positions o = stride * q + r - pad of the phases r in [first, last] that lie in
// [0, out_size): how many q they span. The kernel's _phase_range, for the grid.
int64_t phase_count(int64_t pad, int64_t first, int64_t last, int64_t stride, int64_t out_size) {
  const int64_t lo = (pad - last + 2 * stride - 1) / stride - 1;
  const int64_t hi = (out_size - 1 + pad - first + stride) / stride;
  return std::max<int64_t>(hi - lo, 0);
}

at::Tensor conv_transpose2d_softmax_bias_sigmoid_cuda(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& conv_bias,
    const at::Tensor& bias, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef output_padding, double scale) {
  const auto shape = check_inputs(x, weight, conv_bias, bias, stride, padding, output_padding);
  const c10::cuda::CUDAGuard guard(x.device());
  const int device = x.get_device();
  const int64_t batch = x.size(0), in_channels = x.size(1), in_height = x.size(2),
                in_width = x.size(3);
  const int64_t out_channels = weight.size(1);
  const int64_t out_height = shape[2].expect_int(), out_width = shape[3].expect_int();
  const int64_t taps_h = ceil_div(weight.size(2), stride[0]);
  const int64_t taps_w = ceil_div(weight.size(3), stride[1]);
  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
  const bool offsets_fit = in_channels * in_height * in_width <= kInt32Max &&
                           out_channels * out_height * out_width <= kInt32Max &&
                           stride[0] * stride[1] * out_channels * taps_h * taps_w * in_channels <=
                               kInt32Max;
  const at::ScalarType dtype = x.scalar_type();
  if (!convolution_on_tensor_cores(x) || !offsets_fit) {
    return unfused_cuda(x, weight, conv_bias, bias, stride, padding, output_padding, scale);
  }
  at::Tensor out = at::empty({batch, out_channels, out_height, out_width}, x.options());
  if (out.numel() == 0) return out;
  at::Tensor input = x.contiguous();
  at::Tensor weights = phase_weight(weight, taps_h, taps_w, stride);
  // fp32 runs on fp16 copies of x and the weight, fresh (so aligned) allocations.
  const bool on_fp16_operands = dtype == at::kFloat;
  const bool aligned = (on_fp16_operands || (aligned_16(input) && aligned_16(weights))) &&
                       aligned_16(out) && in_channels % 16 == 0 && in_height % 16 == 0 &&
                       in_width % 16 == 0 && out_channels % 16 == 0;
  // stride_w == 2: a program computes both column phases from one input tile and stores
  // contiguous row segments; any other stride, one phase a program.
  const int64_t w_phases = stride[1] == 2 ? 2 : 1;
  const Variant* variant = choose_variant(dtype, w_phases, aligned, out_channels, device);
  if (variant == nullptr) {
    return unfused_cuda(x, weight, conv_bias, bias, stride, padding, output_padding, scale);
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device).stream();
  at::Tensor row_max;  // the weight's largest finite magnitude, then each sample's
  if (on_fp16_operands) {
    row_max = at::zeros({batch + 1}, x.options());
    float* maxima = row_max.mutable_data_ptr<float>();
    weights = fp16_operands(weights, 1, weights.numel(), maxima, device, stream);
    input = fp16_operands(input, batch, in_channels * in_height * in_width, maxima + 1, device, stream);
  }

  const at::Tensor conv_bias_flat =
      conv_bias ? conv_bias->reshape({-1}).contiguous() : at::zeros({out_channels}, x.options());
  const at::Tensor bias_flat = bias.reshape({-1}).contiguous();
  // One group per row phase (with both column phases) or per phase; each with the tiles of its
  // largest member.
  const int64_t groups = w_phases == 2 ? stride[0] : stride[0] * stride[1];
  int64_t most_positions = 0;
  for (int64_t group = 0; group < groups; ++group) {
    const int64_t r_h = w_phases == 2 ? group : group / stride[1];
    const int64_t r_w = w_phases == 2 ? 0 : group % stride[1];
    const int64_t rows = phase_count(padding[0], r_h, r_h, stride[0], out_height);
    const int64_t cols = phase_count(padding[1], r_w, r_w + w_phases - 1, stride[1], out_width);
    most_positions = std::max(most_positions, rows * (cols + cols % 2));  // each row padded to even (the kernel's pitch)
  }
  const int64_t tiles = ceil_div(most_positions, variant->constexpr_value("BLOCK_M"));
  LaunchArgs args(*variant);
  args.pointer(input.const_data_ptr())
      .pointer(weights.const_data_ptr())
      .pointer(conv_bias_flat.const_data_ptr())
      .pointer(bias_flat.const_data_ptr())
      .pointer(out.mutable_data_ptr())
      .pointer(row_max.defined() ? row_max.const_data_ptr() : nullptr)
      .integer(in_channels).integer(in_height).integer(in_width)
      .integer(out_channels).integer(out_height).integer(out_width)
      .integer(stride[0]).integer(stride[1]).integer(padding[0]).integer(padding[1])
      .integer(taps_h).integer(taps_w)
      .integer(groups).integer(tiles)
      .real(kernel_scale(x.scalar_type(), scale));
  launch(args, grid_size(batch * groups * tiles, kOp, x), device, stream);
  return out;
}

#endif  // FUSED_OPS_WITH_CUDA

// --- Autograd ----------------------------------------------------------------------------------

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptionalTensor = std::optional<at::Tensor>;

at::Tensor call_op(const at::Tensor& x, const at::Tensor& weight, const OptionalTensor& conv_bias,
                   const at::Tensor& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                   at::IntArrayRef output_padding, double scale) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow(kOp, "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const OptionalTensor&,
                            const at::Tensor&, at::IntArrayRef, at::IntArrayRef, at::IntArrayRef,
                            double)>();
  return op.call(x, weight, conv_bias, bias, stride, padding, output_padding, scale);
}

std::tuple<at::Tensor, at::Tensor> call_tail_backward(const at::Tensor& grad_out, const at::Tensor& y,
                                                      const at::Tensor& bias, double scale) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fused::softmax_bias_sigmoid_backward", "")
                             .typed<std::tuple<at::Tensor, at::Tensor>(
                                 const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                                 const OptionalTensor&)>();
  return op.call(grad_out, y, bias, scale, std::nullopt);
}

// Saves the inputs, never the convolution's output (as large as the op's own): the backward
// recomputes it with ATen's convolution in its fastest format, turns it into grad_y in place with
// the tail's fused backward, and runs ATen's convolution backward on that.
class ConvTranspose2dSoftmaxBiasSigmoidFunction
    : public torch::autograd::Function<ConvTranspose2dSoftmaxBiasSigmoidFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const OptionalTensor& conv_bias, const at::Tensor& bias,
                            at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef output_padding, double scale) {
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->save_for_backward({x, weight, conv_bias.value_or(at::Tensor()), bias});
    ctx->saved_data["stride"] = stride.vec();
    ctx->saved_data["padding"] = padding.vec();
    ctx->saved_data["output_padding"] = output_padding.vec();
    ctx->saved_data["scale"] = scale;
    return call_op(x, weight, conv_bias, bias, stride, padding, output_padding, scale);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &bias = saved[3];
    const OptionalTensor conv_bias = saved[2].defined() ? OptionalTensor(saved[2]) : std::nullopt;
    const std::vector<int64_t> stride = ctx->saved_data["stride"].toIntVector();
    const std::vector<int64_t> padding = ctx->saved_data["padding"].toIntVector();
    const std::vector<int64_t> output_padding = ctx->saved_data["output_padding"].toIntVector();
    const double scale = ctx->saved_data["scale"].toDouble();
    const at::Tensor conv_input = x.contiguous(convolution_format(x));
    at::Tensor y = at::conv_transpose2d(conv_input, weight, conv_bias, stride, padding, output_padding,
                                        /*groups=*/1, /*dilation=*/1);
    at::Tensor grad_y, grad_bias;
    if (at::GradMode::is_enabled() || at::areAnyTensorSubclassLike({y, grad_outputs[0]})) {
      // Through the dispatcher where the call must be recorded: for a double backward (which
      // the tail's backward op refuses by name) or when traced (fake or functional tensors).
      std::tie(grad_y, grad_bias) = call_tail_backward(grad_outputs[0], y, bias, scale);
    } else {
      // grad_y takes y's memory: the backward holds one tensor of the output's size, not two.
      grad_bias = softmax_bias_sigmoid_backward_into(grad_outputs[0], y, bias, scale, y);
      grad_y = std::move(y);
    }
    y.reset();
    const std::array<bool, 3> wanted{ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                     conv_bias.has_value() && ctx->needs_input_grad(2)};
    at::Tensor grad_x, grad_weight, grad_conv_bias;
    if (wanted[0] || wanted[1] || wanted[2]) {
      const std::vector<int64_t> bias_sizes{weight.size(1)};
      std::tie(grad_x, grad_weight, grad_conv_bias) = at::convolution_backward(
          grad_y, conv_input, weight,
          conv_bias ? at::OptionalIntArrayRef(bias_sizes) : at::OptionalIntArrayRef(),
          stride, padding, /*dilation=*/{1, 1}, /*transposed=*/true, output_padding,
          /*groups=*/1, wanted);
    }
    return {grad_x,       grad_weight,  grad_conv_bias, grad_bias,
            at::Tensor(), at::Tensor(), at::Tensor(),   at::Tensor()};
  }
};

at::Tensor conv_transpose2d_softmax_bias_sigmoid_autograd(
    const at::Tensor& x, const at::Tensor& weight, const OptionalTensor& conv_bias,
    const at::Tensor& bias, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef output_padding, double scale) {
  const bool wants_grad =
      x.requires_grad() || weight.requires_grad() || bias.requires_grad() ||
      (conv_bias.has_value() && conv_bias->requires_grad());
  if (at::GradMode::is_enabled() && wants_grad) {
    return ConvTranspose2dSoftmaxBiasSigmoidFunction::apply(x, weight, conv_bias, bias, stride,
                                                            padding, output_padding, scale);
  }
  const at::AutoDispatchBelowADInplaceOrView below_autograd;
  return call_op(x, weight, conv_bias, bias, stride, padding, output_padding, scale);
}

}  // namespace

TORCH_LIBRARY_IMPL(fused, Autograd, m) {
  m.impl("conv_transpose2d_softmax_bias_sigmoid", &conv_transpose2d_softmax_bias_sigmoid_autograd);
}

TORCH_LIBRARY_IMPL(fused, Meta, m) {
  m.impl("conv_transpose2d_softmax_bias_sigmoid", &conv_transpose2d_softmax_bias_sigmoid_meta);
}

TORCH_LIBRARY_IMPL(fused, CPU, m) {
  m.impl("conv_transpose2d_softmax_bias_sigmoid", &conv_transpose2d_softmax_bias_sigmoid_cpu);
}

TORCH_LIBRARY_IMPL(fused, SparseCPU, m) {
  m.impl("conv_transpose2d_softmax_bias_sigmoid",
         &conv_transpose2d_softmax_bias_sigmoid_unsupported_layout);
}

#ifdef FUSED_OPS_WITH_CUDA
TORCH_LIBRARY_IMPL(fused, CUDA, m) {
  m.impl("conv_transpose2d_softmax_bias_sigmoid", &conv_transpose2d_softmax_bias_sigmoid_cuda);
}

TORCH_LIBRARY_IMPL(fused, SparseCUDA, m) {
  m.impl("conv_transpose2d_softmax_bias_sigmoid",
         &conv_transpose2d_softmax_bias_sigmoid_unsupported_layout);
}
#endif

}  // namespace fused_ops
