#pragma once
// The table of ahead-of-time compiled kernels. triton_src/aot.py generates its only
// definition (aot_kernels.cpp in the build folder) from the compiled Triton kernels, so
// no kernel name, warp count or parameter list is ever written by hand on the C++ side.

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace fused_ops {

// Parameter kinds as the compiled kernel declares them (read from its PTX entry).
enum class ParamKind : uint8_t { Pointer, Int32, Int64, Float32, Float64 };

enum class ImageFormat : uint8_t { Cubin, Ptx };

struct Image {
  int arch;  // compute capability as major * 10 + minor: 89 for sm_89
  ImageFormat format;
  const unsigned char* data;
  size_t size;
  const char* entry;
  int shared_bytes;
};

// One argument of the kernel's Triton signature, in order: the kind it is declared as, and the
// compiled parameter it is passed as, or -1 where the variant never reads it and was compiled
// without it (triton_src/aot.py, unread_arguments), so that the launcher skips it.
struct Argument {
  ParamKind kind;
  int param;
};

// A layout flavour of a kernel (triton_src/softmax_bias_sigmoid_flavours.py): what its variants
// are compiled to assume, and what a call must have to run one. The table lists a kernel's
// flavours in the order the launcher tries them (csrc/ops/flavour_choice.h).
struct Flavour {
  const char* kernel;
  const char* name;
  const char* const* required_facts;  // by name (csrc/ops/flavour_choice.h: Fact)
  size_t num_required_facts;
  bool exact_channels;      // its tiles serve C equal to their BLOCK_C only
  int same_tiles_as;        // a flavour whose tile of the same BLOCK_C it must match, or -1
  bool within_inner_group;  // a tile's BLOCK_S must divide the strided view's inner group
};

struct Constexpr {
  const char* name;
  int64_t value;
};

struct Variant {
  const char* kernel;
  const char* dtype;  // Triton's name: "fp32", "fp16", "bf16", "fp64"
  const Constexpr* constexprs;
  size_t num_constexprs;
  int num_warps;
  // Every parameter of the compiled entry: the kernel's own, then the trailing scratch
  // pointers that Triton adds (their number depends on the Triton version).
  const ParamKind* params;
  // Per parameter: 0, or the number it was compiled on the promise of being a multiple of (a
  // pointer's address in bytes, an integer's value). The launcher refuses arguments that break it.
  const int* multiple_of;
  size_t num_params;
  size_t num_user_params;
  const Argument* arguments;
  size_t num_arguments;
  const Image* images;
  size_t num_images;
  int flavour;  // its index in KernelTable::flavours; -1 for kernels without flavours

  // The value of a tl.constexpr argument of this variant; -1 if it has none of that name.
  int64_t constexpr_value(const char* name) const {
    for (size_t i = 0; i < num_constexprs; ++i) {
      if (std::strcmp(constexprs[i].name, name) == 0) return constexprs[i].value;
    }
    return -1;
  }
};

// Variants appear kernel by kernel in the order of each module's VARIANTS, so a launcher may
// take the first one that fits a call.
struct KernelTable {
  const Variant* variants;
  size_t size;
  const char* archs;  // the build's arch list, e.g. "80;89;90"
  const Flavour* flavours;
  size_t num_flavours;
  // Bounds of the facts a call's flavours require (FACT_LIMITS there), by name.
  const Constexpr* fact_limits;
  size_t num_fact_limits;

  int64_t fact_limit(const char* name) const {
    for (size_t i = 0; i < num_fact_limits; ++i) {
      if (std::strcmp(fact_limits[i].name, name) == 0) return fact_limits[i].value;
    }
    return -1;
  }
};

const KernelTable& kernel_table();

// The first variant of `kernel`, in table order, that `accepts`; nullptr if none does.
template <typename Accepts>
const Variant* find_variant(const char* kernel, Accepts accepts) {
  const KernelTable& table = kernel_table();
  for (size_t i = 0; i < table.size; ++i) {
    const Variant& candidate = table.variants[i];
    if (std::strcmp(candidate.kernel, kernel) == 0 && accepts(candidate)) return &candidate;
  }
  return nullptr;
}

}  // namespace fused_ops
