#pragma once
// Launches the ahead-of-time compiled kernels of kernel_table.h on the current CUDA stream.
//
// Images are loaded lazily, once per process, as context-independent CUDA libraries
// (cuLibraryLoadData), so every device and context shares them. The driver is reached
// through the CUDA runtime's entry-point query: the op library never links libcuda, and
// imports on a machine with no NVIDIA driver at all. Every CUDA error becomes a c10::Error.

#include <cuda_runtime_api.h>

#include <c10/util/SmallVector.h>

#include <cstdint>
#include <string>

#include "kernel_table.h"

namespace fused_ops {

// Arguments of one launch in parameter order, each packed at the exact width the compiled
// kernel declares (an fp32 scalar travels as 4 bytes, never as a double).
class LaunchArgs {
 public:
  LaunchArgs& pointer(const void* value);
  LaunchArgs& i32(int64_t value);  // checked to fit in 32 bits
  LaunchArgs& i64(int64_t value);
  LaunchArgs& f32(float value);

 private:
  friend void launch(const Variant&, uint32_t, const LaunchArgs&, int, cudaStream_t);
  struct Slot {
    ParamKind kind;
    alignas(8) unsigned char bytes[8];
  };
  LaunchArgs& push(ParamKind kind, const void* value, size_t size);
  c10::SmallVector<Slot, 24> slots_;
};

// Launches `variant` with a 1-D grid of `grid_x` programs on `device`, which must be the
// current device, and `stream`.
void launch(const Variant& variant, uint32_t grid_x, const LaunchArgs& args, int device,
            cudaStream_t stream);

// The image `variant` runs from on `device`, e.g. "sm_90 cubin" or "sm_89 PTX (JIT)".
std::string image_for_device(const Variant& variant, int device);

}  // namespace fused_ops
