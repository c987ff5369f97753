// fused::kernel_images: which ahead-of-time compiled images this build holds, and which one
// each kernel variant runs from on a given GPU (FUSED_OPS_ARCH included).

#include <ATen/core/Tensor.h>
#include <c10/util/irange.h>
#include <torch/library.h>

#include <string>
#include <vector>

#ifdef FUSED_OPS_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>

#include "kernel_table.h"
#include "launcher.h"
#endif

namespace fused_ops {
namespace {

std::vector<std::string> built_images(const at::Tensor&) {
  std::vector<std::string> images;
#ifdef FUSED_OPS_WITH_CUDA
  const KernelTable& table = kernel_table();
  for (const auto i : c10::irange(table.size)) {
    const Variant& v = table.variants[i];
    for (const auto j : c10::irange(v.num_images)) {
      const Image& image = v.images[j];
      images.push_back(describe(v) + ": sm_" + std::to_string(image.arch) +
                       (image.format == ImageFormat::Cubin ? " cubin" : " PTX"));
    }
  }
#endif
  return images;
}

#ifdef FUSED_OPS_WITH_CUDA
std::vector<std::string> images_for_device(const at::Tensor& probe) {
  const c10::cuda::CUDAGuard guard(probe.device());
  const KernelTable& table = kernel_table();
  std::vector<std::string> images;
  for (const auto i : c10::irange(table.size)) {
    images.push_back(describe(table.variants[i]) + ": " +
                     image_for_device(table.variants[i], probe.get_device()));
  }
  return images;
}
#endif

}  // namespace

TORCH_LIBRARY_IMPL(fused, CPU, m) {
  m.impl("kernel_images", &built_images);
}

#ifdef FUSED_OPS_WITH_CUDA
TORCH_LIBRARY_IMPL(fused, CUDA, m) {
  m.impl("kernel_images", &images_for_device);
}
#endif

}  // namespace fused_ops
