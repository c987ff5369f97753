// The walk over a kernel's layout flavours (flavour_choice.h), on an index of the kernel table
// built once per process: a call's choice then costs a few lookups rather than a scan over every
// compiled variant (small tensors are launch-bound). CUDA builds only: the kernel table is theirs.

#ifdef FUSED_OPS_WITH_CUDA
#include "ops/flavour_choice.h"

#include "launcher.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <iterator>
#include <limits>
#include <map>
#include <utility>
#include <vector>

namespace fused_ops {
namespace {

constexpr const char* kFactNames[] = {
    "offsets_32_bits",  "positions_contiguous",     "nchw_rows_aligned", "small_tensor",
    "channels_last",    "channels_last_aligned",    "out_positions_contiguous",
    "x_inner_stride_2", "spans_aligned",            "channels_by_16",    "softmax_stats"};
static_assert(std::size(kFactNames) == static_cast<size_t>(Fact::kCount));

// One flavour's tiles in one dtype: single-pass ones by ascending BLOCK_C, the multi-pass one
// if any. For a same_tiles_as flavour, beside each single-pass tile the least C it serves: one
// more than the partner's next smaller BLOCK_C, or never where the partner has no tile of its
// BLOCK_C.
struct FlavourTiles {
  std::vector<const Variant*> single_pass;
  const Variant* multi_pass = nullptr;
  std::vector<int64_t> fewest_channels;
};

struct Index {
  std::vector<Facts> required;                         // by flavour
  std::map<std::string, std::vector<int>> in_order;     // kernel -> its flavours, in order
  std::map<std::pair<int, std::string>, FlavourTiles> tiles;  // (flavour, dtype) -> tiles
  // (kernel, dtype) -> its flavours with tiles in that dtype, in order: one lookup a call.
  std::map<std::pair<std::string, std::string>, std::vector<std::pair<int, const FlavourTiles*>>> walks;
};

int64_t block_c(const Variant* v) { return v->constexpr_value("BLOCK_C"); }

const Index& index() {
  static const Index built = [] {
    Index index;
    const KernelTable& table = kernel_table();
    for (size_t f = 0; f < table.num_flavours; ++f) {
      const Flavour& flavour = table.flavours[f];
      Facts required;
      for (size_t r = 0; r < flavour.num_required_facts; ++r) {
        const auto* name = std::find_if(std::begin(kFactNames), std::end(kFactNames), [&](const char* n) {
          return std::string(n) == flavour.required_facts[r];
        });
        TORCH_CHECK(name != std::end(kFactNames), "fused_ops: flavour ", flavour.name, " of ",
                    flavour.kernel, " requires \"", flavour.required_facts[r],
                    "\", a fact csrc/ops/flavour_choice.h does not define: the library was built "
                    "from a triton_src/softmax_bias_sigmoid_flavours.py it does not match");
        required.set(static_cast<size_t>(name - std::begin(kFactNames)));
      }
      index.required.push_back(required);
      index.in_order[flavour.kernel].push_back(static_cast<int>(f));
    }
    for (size_t i = 0; i < table.size; ++i) {
      const Variant& v = table.variants[i];
      if (v.flavour < 0) continue;
      FlavourTiles& tiles = index.tiles[{v.flavour, v.dtype}];
      if (v.constexpr_value("SINGLE_PASS") == 0) {
        tiles.multi_pass = &v;
      } else {
        tiles.single_pass.push_back(&v);
      }
    }
    for (auto& [key, tiles] : index.tiles) {
      std::sort(tiles.single_pass.begin(), tiles.single_pass.end(),
                [](const Variant* a, const Variant* b) { return block_c(a) < block_c(b); });
    }
    for (auto linked = index.tiles.begin(); linked != index.tiles.end();) {
      const int partner = table.flavours[linked->first.first].same_tiles_as;
      if (partner < 0) {
        ++linked;
        continue;
      }
      const auto plain = index.tiles.find({partner, linked->first.second});
      if (plain == index.tiles.end()) {  // nothing its tiles were measured against
        linked = index.tiles.erase(linked);
        continue;
      }
      for (const Variant* tile : linked->second.single_pass) {
        int64_t next_smaller = 0;
        bool same_in_plain = false;
        for (const Variant* plain_tile : plain->second.single_pass) {
          if (block_c(plain_tile) < block_c(tile)) next_smaller = block_c(plain_tile);
          same_in_plain = same_in_plain || block_c(plain_tile) == block_c(tile);
        }
        linked->second.fewest_channels.push_back(
            same_in_plain ? next_smaller + 1 : std::numeric_limits<int64_t>::max());
      }
      ++linked;
    }
    for (const auto& [kernel, flavours] : index.in_order) {
      for (const int f : flavours) {
        for (const auto& [key, tiles] : index.tiles) {
          if (key.first == f) index.walks[{kernel, key.second}].emplace_back(f, &tiles);
        }
      }
    }
    return index;
  }();
  return built;
}

std::string fact_names(const Facts& facts) {
  std::string text;
  for (size_t i = 0; i < facts.size(); ++i) {
    if (facts.test(i)) text += (text.empty() ? "" : " and ") + std::string(kFactNames[i]);
  }
  return text;
}

}  // namespace

FlavourChoice choose_flavour(const char* kernel, at::ScalarType dtype, int64_t channels,
                             int64_t inner_size, Facts facts, std::string* passed_over) {
  const char* dtype_name = triton_dtype(dtype);
  set(facts, Fact::kChannelsBy16, channels % 16 == 0);
  const Index& ix = index();
  const KernelTable& table = kernel_table();
  // Flavours passed over for the same reason in a row are named together: "a, b (why)".
  std::string last_reason;
  const auto pass_over = [&](const Flavour& flavour, const std::string& why) {
    if (passed_over == nullptr) return;
    if (!passed_over->empty() && why == last_reason) {
      passed_over->insert(passed_over->size() - why.size() - 3, std::string(", ") + flavour.name);
      return;
    }
    *passed_over += (passed_over->empty() ? "" : ", ") + std::string(flavour.name) + " (" + why + ")";
    last_reason = why;
  };
  const auto walk = ix.walks.find({kernel, dtype_name});
  if (walk != ix.walks.end()) {
    for (const auto& [f, flavour_tiles] : walk->second) {
      const Flavour& flavour = table.flavours[f];
      const Facts missing = ix.required[f] & ~facts;
      if (missing.any()) {
        if (!missing.test(static_cast<size_t>(Fact::kSoftmaxStats))) pass_over(flavour, "needs " + fact_names(missing));
        continue;
      }
      const FlavourTiles& tiles = *flavour_tiles;
      const auto tile = std::find_if(tiles.single_pass.begin(), tiles.single_pass.end(), [&](const Variant* t) {
        return flavour.exact_channels ? block_c(t) == channels : block_c(t) >= channels;
      });
      const Variant* chosen = nullptr;
      if (tile != tiles.single_pass.end()) {
        const size_t at = static_cast<size_t>(tile - tiles.single_pass.begin());
        if (!tiles.fewest_channels.empty() && channels < tiles.fewest_channels[at]) {
          const std::string partner = table.flavours[flavour.same_tiles_as].name;
          pass_over(flavour, tiles.fewest_channels[at] == std::numeric_limits<int64_t>::max()
                                 ? "its tile of BLOCK_C = " + std::to_string(block_c(*tile)) + " has no peer in " + partner
                                 : "its tile of BLOCK_C = " + std::to_string(block_c(*tile)) + " serves C from " +
                                       std::to_string(tiles.fewest_channels[at]) + ", as in " + partner);
          continue;
        }
        chosen = *tile;
      } else if (tiles.multi_pass != nullptr && !flavour.exact_channels) {
        chosen = tiles.multi_pass;
      } else {
        pass_over(flavour, flavour.exact_channels ? "no tile of BLOCK_C = C" : "no tile holds C");
        continue;
      }
      const int64_t block_s = chosen->constexpr_value("BLOCK_S");
      if (flavour.within_inner_group && inner_size % block_s != 0) {
        pass_over(flavour, "its BLOCK_S = " + std::to_string(block_s) +
                               " does not divide the inner group of " + std::to_string(inner_size) +
                               " positions");
        continue;
      }
      return {chosen, &flavour};
    }
  }
  TORCH_CHECK(false, kernel, ": this build has no ", dtype_name, " kernel for C = ", channels);
}

int64_t widest_tile_requiring(const char* kernel, at::ScalarType dtype, Fact fact) {
  const Index& ix = index();
  const auto walk = ix.walks.find({kernel, triton_dtype(dtype)});
  int64_t widest = 0;
  if (walk == ix.walks.end()) return widest;
  for (const auto& [f, tiles] : walk->second) {
    if (ix.required[f].test(static_cast<size_t>(fact)) && !tiles->single_pass.empty()) {
      widest = std::max(widest, block_c(tiles->single_pass.back()));
    }
  }
  return widest;
}

}  // namespace fused_ops
#endif  // FUSED_OPS_WITH_CUDA
