#include "launcher.h"

#include <cuda.h>

#include <c10/cuda/CUDAException.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <utility>

namespace fused_ops {
namespace {

// The driver functions the launcher uses, resolved once through the runtime.
struct Driver {
  decltype(&::cuGetErrorName) getErrorName;
  decltype(&::cuGetErrorString) getErrorString;
  decltype(&::cuCtxGetCurrent) ctxGetCurrent;
  decltype(&::cuLibraryLoadData) libraryLoadData;
  decltype(&::cuLibraryGetKernel) libraryGetKernel;
  decltype(&::cuKernelSetAttribute) kernelSetAttribute;
  decltype(&::cuLaunchKernel) launchKernel;
};

template <typename Fn>
void resolve(Fn& fn, const char* name) {
  void* address = nullptr;
  cudaDriverEntryPointQueryResult status = cudaDriverEntryPointSymbolNotFound;
  // 12000: the ABI version of each function wanted (all exist since CUDA 12.0).
  const cudaError_t error =
      cudaGetDriverEntryPointByVersion(name, &address, 12000, cudaEnableDefault, &status);
  TORCH_CHECK(error == cudaSuccess && status == cudaDriverEntryPointSuccess && address,
              "fused_ops: cannot find the CUDA driver function ", name, " (",
              cudaGetErrorString(error),
              "); fused_ops needs an NVIDIA driver for CUDA 12.0 or newer");
  fn = reinterpret_cast<Fn>(address);
}

const Driver& driver() {
  static const Driver instance = [] {
    Driver d{};
    resolve(d.getErrorName, "cuGetErrorName");
    resolve(d.getErrorString, "cuGetErrorString");
    resolve(d.ctxGetCurrent, "cuCtxGetCurrent");
    resolve(d.libraryLoadData, "cuLibraryLoadData");
    resolve(d.libraryGetKernel, "cuLibraryGetKernel");
    resolve(d.kernelSetAttribute, "cuKernelSetAttribute");
    resolve(d.launchKernel, "cuLaunchKernel");
    return d;
  }();
  return instance;
}

void check(CUresult result, const char* what, const Variant& variant, const Image* image) {
  if (result == CUDA_SUCCESS) return;
  const char* name = "unknown";
  const char* text = "unknown error";
  driver().getErrorName(result, &name);
  driver().getErrorString(result, &text);
  std::ostringstream where;
  where << variant.kernel << " (" << variant.dtype;
  for (size_t i = 0; i < variant.num_constexprs; ++i) {
    where << ", " << variant.constexprs[i].name << "=" << variant.constexprs[i].value;
  }
  where << ")";
  if (image) {
    where << " from its sm_" << image->arch
          << (image->format == ImageFormat::Cubin ? " cubin" : " PTX");
  }
  TORCH_CHECK(false, "fused_ops: ", what, " failed for ", where.str(), ": ", name, " (", text,
              ")");
}

// FUSED_OPS_ARCH=sm_89 runs the sm_89 build whatever the GPU: its cubin on an sm_89 device,
// its PTX through the driver's JIT on a newer one. 0 when unset.
int forced_arch() {
  static const int arch = [] {
    const char* value = std::getenv("FUSED_OPS_ARCH");
    if (value == nullptr || *value == '\0') return 0;
    std::string text(value);
    if (text.rfind("sm_", 0) == 0) text = text.substr(3);
    char* end = nullptr;
    const long parsed = std::strtol(text.c_str(), &end, 10);
    TORCH_CHECK(!text.empty() && *end == '\0' && parsed >= 10 && parsed < 1000,
                "fused_ops: FUSED_OPS_ARCH='", value, "' is not an arch such as sm_89");
    return static_cast<int>(parsed);
  }();
  return arch;
}

// Machine code runs on its own major version from its minor version on; Triton compiles
// sm_90 and later for the arch-specific "a" targets, which run on exactly that arch.
bool cubin_runs_on(int image_arch, int device_arch) {
  if (image_arch >= 90) return image_arch == device_arch;
  return image_arch / 10 == device_arch / 10 && image_arch <= device_arch;
}

int device_arch(int device) {
  int major = 0;
  int minor = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major * 10 + minor;
}

const Image* select_image(const Variant& variant, int device) {
  const int arch = device_arch(device);
  const int wanted = forced_arch();
  const Image* best = nullptr;
  auto better = [](const Image* candidate, const Image* current) {
    if (current == nullptr) return true;
    if (candidate->format != current->format) return candidate->format == ImageFormat::Cubin;
    return candidate->arch > current->arch;
  };
  for (size_t i = 0; i < variant.num_images; ++i) {
    const Image* image = &variant.images[i];
    if (wanted != 0 && image->arch != wanted) continue;
    const bool runs = image->format == ImageFormat::Cubin ? cubin_runs_on(image->arch, arch)
                                                          : image->arch <= arch;
    if (runs && better(image, best)) best = image;
  }
  if (best == nullptr) {
    std::ostringstream built;
    for (size_t i = 0; i < variant.num_images; ++i) {
      const Image& image = variant.images[i];
      built << (i ? ", " : "") << "sm_" << image.arch
            << (image.format == ImageFormat::Cubin ? " cubin" : " PTX");
    }
    TORCH_CHECK(false, "fused_ops: no kernel image runs on cuda:", device, " (sm_", arch, ")",
                wanted ? " with FUSED_OPS_ARCH=sm_" + std::to_string(wanted) : std::string(),
                "; this build holds ", built.str(), " (built for sm_", kernel_table().archs,
                "). Rebuild with FUSED_OPS_ARCHS naming ", arch, ".");
  }
  return best;
}

// Loaded images are shared by every device and context: one CUkernel per image, plus the
// devices on which an image's large shared-memory opt-in has been made.
class LoadedKernels {
 public:
  CUkernel get(const Variant& variant, const Image& image, int device) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = kernels_.find(&image);
    if (found == kernels_.end()) {
      CUlibrary library = nullptr;
      check(driver().libraryLoadData(&library, image.data, nullptr, nullptr, 0, nullptr,
                                     nullptr, 0),
            "loading the kernel image", variant, &image);
      CUkernel kernel = nullptr;
      check(driver().libraryGetKernel(&kernel, library, image.entry), "finding the kernel",
            variant, &image);
      found = kernels_.emplace(&image, kernel).first;
    }
    constexpr int kDefaultSharedLimit = 48 * 1024;
    if (image.shared_bytes > kDefaultSharedLimit && opted_in_.emplace(&image, device).second) {
      check(driver().kernelSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                        image.shared_bytes, found->second, device),
            "raising the shared-memory limit", variant, &image);
    }
    return found->second;
  }

 private:
  std::mutex mutex_;
  std::map<const Image*, CUkernel> kernels_;
  std::set<std::pair<const Image*, int>> opted_in_;
};

LoadedKernels& loaded_kernels() {
  static LoadedKernels instance;
  return instance;
}

// A thread that has not used the CUDA runtime yet has no current context; a runtime call
// binds the device's primary context, which the launch below runs in.
void ensure_current_context(const Variant& variant) {
  CUcontext context = nullptr;
  check(driver().ctxGetCurrent(&context), "querying the current context", variant, nullptr);
  if (context == nullptr) {
    C10_CUDA_CHECK(cudaFree(nullptr));
  }
}

}  // namespace

const Argument& LaunchArgs::next_argument(const char* what) const {
  TORCH_CHECK(num_arguments_ < variant_.num_arguments, "fused_ops: ", variant_.kernel, " takes ",
              variant_.num_arguments, " arguments; got one more (", what, ")");
  return variant_.arguments[num_arguments_];
}

void LaunchArgs::check_multiple(int64_t value, const char* unit) const {
  const int multiple = variant_.multiple_of[slots_.size()];
  TORCH_CHECK(multiple == 0 || value % multiple == 0, "fused_ops: ", variant_.kernel, " argument ",
              num_arguments_, " = ", value, " ", unit, " breaks the multiple-of-", multiple,
              " promise this variant was compiled with");
}

LaunchArgs& LaunchArgs::push(const void* value, size_t size) {
  Slot slot{};
  std::memcpy(slot.bytes, value, size);
  slots_.push_back(slot);
  ++num_arguments_;
  return *this;
}

LaunchArgs& LaunchArgs::skip() {
  ++num_arguments_;
  return *this;
}

LaunchArgs& LaunchArgs::pointer(const void* value) {
  const Argument& argument = next_argument("a pointer");
  TORCH_CHECK(argument.kind == ParamKind::Pointer, "fused_ops: ", variant_.kernel, " argument ",
              num_arguments_, " is not a pointer");
  if (argument.param < 0) return skip();
  check_multiple(static_cast<int64_t>(reinterpret_cast<uintptr_t>(value)), "(address)");
  return push(&value, sizeof(value));
}

LaunchArgs& LaunchArgs::integer(int64_t value) {
  const Argument& argument = next_argument("an integer");
  TORCH_CHECK(argument.kind == ParamKind::Int64 || argument.kind == ParamKind::Int32,
              "fused_ops: ", variant_.kernel, " argument ", num_arguments_, " is not an integer");
  if (argument.param < 0) return skip();
  check_multiple(value, "(value)");
  if (argument.kind == ParamKind::Int64) return push(&value, sizeof(value));
  TORCH_CHECK(value >= std::numeric_limits<int32_t>::min() &&
                  value <= std::numeric_limits<int32_t>::max(),
              "fused_ops: ", variant_.kernel, " argument ", num_arguments_, " = ", value,
              " does not fit in the 32 bits the kernel takes");
  const int32_t narrow = static_cast<int32_t>(value);
  return push(&narrow, sizeof(narrow));
}

LaunchArgs& LaunchArgs::real(double value) {
  const Argument& argument = next_argument("a real number");
  TORCH_CHECK(argument.kind == ParamKind::Float64 || argument.kind == ParamKind::Float32,
              "fused_ops: ", variant_.kernel, " argument ", num_arguments_, " is not a real scalar");
  if (argument.param < 0) return skip();
  if (argument.kind == ParamKind::Float64) return push(&value, sizeof(value));
  const float narrow = static_cast<float>(value);
  return push(&narrow, sizeof(narrow));
}

void launch(const LaunchArgs& args, uint32_t grid_x, int device, cudaStream_t stream,
            uint32_t grid_y) {
  const Variant& variant = args.variant_;
  TORCH_CHECK(args.num_arguments_ == variant.num_arguments, "fused_ops: ", variant.kernel,
              " takes ", variant.num_arguments, " arguments, the launcher packed ",
              args.num_arguments_);
  c10::SmallVector<void*, 32> params;
  for (const auto& slot : args.slots_) {
    params.push_back(const_cast<unsigned char*>(slot.bytes));
  }
  // Triton's trailing scratch pointers: the build guarantees the kernels need no scratch.
  void* no_scratch = nullptr;
  for (size_t i = variant.num_user_params; i < variant.num_params; ++i) {
    params.push_back(&no_scratch);
  }

  const Image* image = select_image(variant, device);
  ensure_current_context(variant);
  CUkernel kernel = loaded_kernels().get(variant, *image, device);
  check(driver().launchKernel(reinterpret_cast<CUfunction>(kernel), grid_x, grid_y, 1,
                              32 * variant.num_warps, 1, 1, image->shared_bytes,
                              reinterpret_cast<CUstream>(stream), params.data(), nullptr),
        "launching", variant, image);
}

const Image& image_for(const Variant& variant, int device) {
  return *select_image(variant, device);
}

std::string describe(const Variant& variant) {
  std::string text = std::string(variant.kernel) + " " + variant.dtype;
  for (size_t i = 0; i < variant.num_constexprs; ++i) {
    text += (i ? "," : " ") + std::string(variant.constexprs[i].name) + "=" +
            std::to_string(variant.constexprs[i].value);
  }
  return text;
}

const char* triton_dtype(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "fp32";
    case at::kHalf: return "fp16";
    case at::kBFloat16: return "bf16";
    case at::kDouble: return "fp64";
    default: TORCH_CHECK(false, "fused_ops: no Triton kernels for ", dtype);
  }
}

std::string image_for_device(const Variant& variant, int device) {
  const Image& image = image_for(variant, device);
  return "sm_" + std::to_string(image.arch) +
         (image.format == ImageFormat::Cubin ? " cubin" : " PTX (JIT)");
}

}  // namespace fused_ops
