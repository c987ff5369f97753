// fused::softmax_bias_sigmoid: validation and output allocation shared by every backend,
// then the CPU kernel (csrc/cpu/) or the ahead-of-time compiled Triton kernel (CUDA).

#include "ops/softmax_bias_sigmoid.h"

#include <ATen/ATen.h>
#include <c10/util/SmallVector.h>
#include <torch/library.h>

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

void check_inputs(const at::Tensor& x, const at::Tensor& bias) {
  TORCH_CHECK(x.layout() == at::kStrided && bias.layout() == at::kStrided, kOp,
              ": x and bias must be dense (strided) tensors; got layouts ", x.layout(), " and ",
              bias.layout());
  TORCH_CHECK(x.dim() >= 2, kOp, ": x must have shape (N, C, ...) with at least 2 dimensions; got ",
              x.dim(), "-D shape ", x.sizes());
  const at::ScalarType dtype = x.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16 ||
                  dtype == at::kDouble,
              kOp, ": x must be float32, float16 or bfloat16 (or float64 on the CPU); got ",
              dtype);
  TORCH_CHECK(bias.scalar_type() == dtype, kOp, ": bias must have the dtype of x (", dtype,
              "); got ", bias.scalar_type(), ". Convert it with bias.to(x.dtype)");
  TORCH_CHECK(bias.device() == x.device(), kOp, ": x is on ", x.device(), " but bias is on ",
              bias.device(), "; both must be on the same device");
  TORCH_CHECK(bias.numel() == x.size(1), kOp, ": bias must hold one value per channel (C = ",
              x.size(1), " for x of shape ", x.sizes(), "); got shape ", bias.sizes(), " with ",
              bias.numel(), " elements");
}

struct Prepared {
  at::Tensor x;
  at::Tensor out;
  ChannelView view;
};

// The output keeps the memory format of x (empty_like). A layout that needs more than two
// strided spatial groups is the one case that runs on a contiguous copy of x.
Prepared prepare(const at::Tensor& x, const at::Tensor& bias) {
  check_inputs(x, bias);
  Prepared p{x, at::empty_like(x), {}};
  if (!channel_view(p.x, p.out, p.view)) {
    p.x = x.contiguous();
    p.out = at::empty_like(p.x);
    TORCH_INTERNAL_ASSERT(channel_view(p.x, p.out, p.view));
  }
  return p;
}

at::Tensor softmax_bias_sigmoid_meta(const at::Tensor& x, const at::Tensor& bias, double scale) {
  return prepare(x, bias).out;
}

at::Tensor softmax_bias_sigmoid_cpu(const at::Tensor& x, const at::Tensor& bias, double scale) {
  Prepared p = prepare(x, bias);
  if (p.out.numel() > 0) {
    softmax_bias_sigmoid_cpu_kernel(p.x, bias.reshape({-1}).contiguous(), scale, p.view, p.out);
  }
  return p.out;
}

#ifdef FUSED_OPS_WITH_CUDA

const char* triton_dtype(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "fp32";
    case at::kHalf: return "fp16";
    case at::kBFloat16: return "bf16";
    default:
      TORCH_CHECK(false, kOp, ": ", dtype,
                  " is supported on the CPU only; on CUDA use float32, float16 or bfloat16");
  }
}

// The single-pass variant with the smallest channel tile that holds all C channels; past the
// largest such tile, the two-pass variant.
const Variant& choose_variant(at::ScalarType dtype, int64_t channels) {
  const char* dtype_name = triton_dtype(dtype);
  const KernelTable& table = kernel_table();
  const Variant* single = nullptr;
  const Variant* chunked = nullptr;
  for (size_t i = 0; i < table.size; ++i) {
    const Variant& v = table.variants[i];
    if (std::strcmp(v.kernel, "softmax_bias_sigmoid") != 0 || std::strcmp(v.dtype, dtype_name) != 0) {
      continue;
    }
    const int64_t block_c = v.constexpr_value("BLOCK_C");
    if (v.constexpr_value("SINGLE_PASS") == 0) {
      chunked = &v;
    } else if (block_c >= channels &&
               (single == nullptr || block_c < single->constexpr_value("BLOCK_C"))) {
      single = &v;
    }
  }
  const Variant* chosen = single ? single : chunked;
  TORCH_CHECK(chosen != nullptr, kOp, ": this build has no ", dtype_name, " kernel for C = ",
              channels);
  return *chosen;
}

at::Tensor softmax_bias_sigmoid_cuda(const at::Tensor& x, const at::Tensor& bias, double scale) {
  triton_dtype(x.scalar_type());
  const c10::cuda::CUDAGuard guard(x.device());
  Prepared p = prepare(x, bias);
  if (p.out.numel() == 0) return p.out;
  const at::Tensor bias_flat = bias.reshape({-1}).contiguous();
  const ChannelView& v = p.view;

  const Variant& variant = choose_variant(x.scalar_type(), v.channels);
  const int64_t block_s = variant.constexpr_value("BLOCK_S");
  const int64_t position_blocks = (v.positions + block_s - 1) / block_s;
  const int64_t programs = v.batch * position_blocks;
  TORCH_CHECK(programs <= std::numeric_limits<int32_t>::max(), kOp, ": x of shape ", x.sizes(),
              " needs ", programs, " programs, more than one launch can hold");

  LaunchArgs args;
  args.pointer(p.x.data_ptr())
      .pointer(bias_flat.data_ptr())
      .pointer(p.out.data_ptr())
      .i32(v.channels)
      .i64(v.positions)
      .i64(v.inner_size)
      .i32(position_blocks)
      .i64(v.x.n).i64(v.x.c).i64(v.x.outer).i64(v.x.inner)
      .i64(v.out.n).i64(v.out.c).i64(v.out.outer).i64(v.out.inner)
      .f32(static_cast<float>(scale));
  launch(variant, static_cast<uint32_t>(programs), args, x.get_device(),
         c10::cuda::getCurrentCUDAStream(x.get_device()).stream());
  return p.out;
}

#endif  // FUSED_OPS_WITH_CUDA

}  // namespace

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
}

TORCH_LIBRARY_IMPL(fused, CPU, m) {
  m.impl("softmax_bias_sigmoid", &softmax_bias_sigmoid_cpu);
}

#ifdef FUSED_OPS_WITH_CUDA
TORCH_LIBRARY_IMPL(fused, CUDA, m) {
  m.impl("softmax_bias_sigmoid", &softmax_bias_sigmoid_cuda);
}
#endif

}  // namespace fused_ops
