#pragma once
// Launches the ahead-of-time compiled kernels of kernel_table.h on the current CUDA stream.
//
// Images are loaded lazily, once per process, as context-independent CUDA libraries
// (cuLibraryLoadData), so every device and context shares them. The driver is reached
// through the CUDA runtime's entry-point query: the op library never links libcuda, and
// imports on a machine with no NVIDIA driver at all. Every CUDA error becomes a c10::Error.

#include <cuda_runtime_api.h>

#include <c10/core/ScalarType.h>
#include <c10/util/SmallVector.h>

#include <cstdint>
#include <string>

#include "kernel_table.h"

namespace fused_ops {

// The arguments of one launch of `variant`, every one of its kernel's signature in order, each
// packed at the width its compiled kernel declares: an integer goes in as 32 or 64 bits (checked
// to fit), a real scalar as the 4-byte float or the 8-byte double the kernel takes (an fp32 one
// never as a double); one the variant was compiled without (Variant::arguments) is left out. A
// wrong kind of argument, or one that breaks a promise the variant was compiled with
// (Variant::multiple_of), is an error here.
class LaunchArgs {
 public:
  explicit LaunchArgs(const Variant& variant) : variant_(variant) {}
  LaunchArgs& pointer(const void* value);
  LaunchArgs& integer(int64_t value);
  LaunchArgs& real(double value);

 private:
  friend void launch(const LaunchArgs&, uint32_t, int, cudaStream_t, uint32_t);
  struct Slot {
    alignas(8) unsigned char bytes[8];
  };
  const Argument& next_argument(const char* what) const;
  void check_multiple(int64_t value, const char* unit) const;
  LaunchArgs& push(const void* value, size_t size);
  LaunchArgs& skip();
  const Variant& variant_;
  size_t num_arguments_ = 0;
  c10::SmallVector<Slot, 24> slots_;
};

// Launches the variant of `args` with a grid of `grid_x` by `grid_y` programs (a 1-D grid
// unless told) on `device`, which must be the current device, and `stream`.
void launch(const LaunchArgs& args, uint32_t grid_x, int device, cudaStream_t stream,
            uint32_t grid_y = 1);

// The image `variant` runs from on `device` (FUSED_OPS_ARCH honoured); an error if none runs there.
const Image& image_for(const Variant& variant, int device);

// The image `variant` runs from on `device`, e.g. "sm_90 cubin" or "sm_89 PTX (JIT)".
std::string image_for_device(const Variant& variant, int device);

// The variant's kernel, dtype and constexprs: "softmax_bias_sigmoid fp32 ALIGNED=0,BLOCK_C=128,...".
std::string describe(const Variant& variant);

// Triton's name of a dtype with kernels (Variant::dtype): "fp32", "fp16", "bf16", "fp64".
const char* triton_dtype(at::ScalarType dtype);

}  // namespace fused_ops
