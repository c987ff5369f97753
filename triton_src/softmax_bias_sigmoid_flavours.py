"""The layout flavours of the tail op's kernels, in the order the launcher tries them: the one
registry that the build (aot.py emits it into the kernel table), the launcher's chooser
(csrc/ops/flavour_choice.cpp walks it) and the tuner (benchmarks/tune_softmax_bias_sigmoid.py)
read.

A flavour is what a kernel variant is compiled to assume (its `promises`: constexprs, and the
divisibility promises that follow from them in each kernel module's `multiples`) and what a call
must have to run it (`requires`: facts that csrc/ops/flavour_choice.h names and the op computes
from its tensors, with the bounds in FACT_LIMITS). Every variant of a kernel belongs to exactly
one flavour, by its constexprs. For a call,
the chooser takes the first flavour of the kernel whose facts the call has and which has a tile
for the call's dtype and C: the single-pass tile with the smallest BLOCK_C that holds C (with
`exact_channels`, the one whose BLOCK_C is C), else its multi-pass tile. Two rules may still turn
a flavour down for a tile: `same_tiles_as` (its tiles serve C only where that flavour would run
a tile of the same BLOCK_C: the tuner measured them against it there and nowhere else) and
`within_inner_group` (a tile must not cross an inner group of the strided view: its BLOCK_S
divides the group). `fused_ops.explain(x, bias)` names the flavour a call runs and why each
one before it was passed over.

This module is read at build time (and by the tests); nothing imports it at run time.
"""
from dataclasses import dataclass, field

# The constexprs that tell flavours apart; a variant's others (BLOCK_C, BLOCK_S, SINGLE_PASS,
# SWEEP_STAGES, BATCH_BITS, num_warps) are its tile. SECTOR_STORES is matched as present or not:
# its value is the dtype's sector in elements.
FLAVOUR_KEYS = ("CONTIGUOUS", "CHANNELS_LAST", "ALIGNED", "INDEX_BITS", "SMALL_TENSOR", "SECTOR_STORES",
                "OUT_CONTIGUOUS", "INNER_STRIDE_2", "CHANNELS_EXACT", "CHANNELS_BY_16", "SOFTMAX_STATS")


@dataclass(frozen=True)
class Flavour:
    name: str
    kernel: str
    promises: dict = field(hash=False)
    requires: tuple = ()
    exact_channels: bool = False
    same_tiles_as: str = ""
    within_inner_group: bool = False

    def matches(self, variant: dict) -> bool:
        values = {key: variant.get(key, 32 if key == "INDEX_BITS" else 0) for key in FLAVOUR_KEYS}
        values["SECTOR_STORES"] = int(values["SECTOR_STORES"] > 0)
        return all(values[key] == self.promises.get(key, 32 if key == "INDEX_BITS" else 0) for key in FLAVOUR_KEYS)


@dataclass(frozen=True)
class Layout:
    """A way of walking the view, before the channel and statistics forms multiply it."""
    name: str
    promises: dict = field(hash=False)
    requires: tuple = ()
    same_tiles_as: str = ""


def _forms(kernel: str, layouts: list[Layout]) -> list[Flavour]:
    """Each layout in order, first in its forms that write or read the softmax statistics (the
    CONTIGUOUS ones; for calls that pass them), then without; each of those first for C equal to
    BLOCK_C (no channel mask), then for C a multiple of 16 (a channel mask uniform in runs of
    16), then for any C. A linked layout's plain forms are linked to the same form of its
    partner; its exact form, measured against every form after it, is not."""
    flavours = []
    for layout in layouts:
        for stats in ((1, 0) if layout.promises.get("CONTIGUOUS") else (0,)):
            for exact, by_16 in ((1, 0), (0, 1), (0, 0)):
                suffix = "_exact" * exact + "_by_16" * by_16 + "_stats" * stats
                flavours.append(Flavour(
                    name=layout.name + suffix, kernel=kernel,
                    promises={**layout.promises, "CHANNELS_EXACT": exact, "CHANNELS_BY_16": by_16,
                              "SOFTMAX_STATS": stats},
                    requires=layout.requires + ("channels_by_16",) * by_16 + ("softmax_stats",) * stats,
                    exact_channels=bool(exact),
                    same_tiles_as=layout.same_tiles_as + "_stats" * stats if layout.same_tiles_as and not exact else "",
                    within_inner_group=bool(layout.promises.get("INNER_STRIDE_2"))))
    return flavours


# The bounds of the "small_tensor" fact, which the launcher reads from the kernel table: x of at
# most this many bytes moves in less time than a launch takes, and the small-tensor tiles' grid
# holds the samples on its axis 1, which CUDA bounds.
FACT_LIMITS = {"small_tensor_bytes": 1 << 20, "max_samples_on_axis_1": 65535}

_STRIDED_32 = ("offsets_32_bits",)
_NCHW = _STRIDED_32 + ("positions_contiguous",)
_SPANS = _STRIDED_32 + ("out_positions_contiguous", "x_inner_stride_2")

FORWARD = _forms("softmax_bias_sigmoid", [
    # Tensors of at most 1 MB move in less time than a launch takes: tiles tuned per call in a
    # CUDA graph, on a 2-D grid (position blocks, samples).
    Layout("nchw_aligned_small_tensor", dict(CONTIGUOUS=1, ALIGNED=1, SMALL_TENSOR=1),
           _NCHW + ("small_tensor", "nchw_rows_aligned")),
    Layout("nchw_small_tensor", dict(CONTIGUOUS=1, SMALL_TENSOR=1), _NCHW + ("small_tensor",)),
    Layout("nchw_aligned", dict(CONTIGUOUS=1, ALIGNED=1), _NCHW + ("nchw_rows_aligned",)),
    # Whole 32-byte sectors of out stored from rows that start anywhere.
    Layout("nchw_sector", dict(CONTIGUOUS=1, SECTOR_STORES=1), _NCHW, same_tiles_as="nchw"),
    Layout("nchw", dict(CONTIGUOUS=1), _NCHW),
    Layout("channels_last_aligned", dict(CHANNELS_LAST=1, ALIGNED=1), ("channels_last", "channels_last_aligned")),
    Layout("channels_last", dict(CHANNELS_LAST=1), ("channels_last",)),
    # x[..., ::2]: the contiguous span under a tile's positions read whole, every other element kept.
    Layout("strided_span_aligned", dict(ALIGNED=1, OUT_CONTIGUOUS=1, INNER_STRIDE_2=1),
           _SPANS + ("spans_aligned",), same_tiles_as="strided_span"),
    Layout("strided_span", dict(OUT_CONTIGUOUS=1, INNER_STRIDE_2=1), _SPANS),
    Layout("strided_out_contiguous", dict(OUT_CONTIGUOUS=1), _STRIDED_32 + ("out_positions_contiguous",)),
    Layout("strided", {}, _STRIDED_32),
    Layout("strided_index64", dict(INDEX_BITS=64)),
])

BACKWARD = _forms("softmax_bias_sigmoid_backward", [
    Layout("nchw", dict(CONTIGUOUS=1), _NCHW),
    Layout("strided", {}, _STRIDED_32),
    Layout("strided_index64", dict(INDEX_BITS=64)),
])

FLAVOURS = FORWARD + BACKWARD


def flavour_of(kernel: str, variant: dict) -> Flavour | None:
    """The flavour a variant of `kernel` belongs to; None for kernels without flavours. A variant
    of a kernel that has flavours but matches none of them is a build error."""
    own = [f for f in FLAVOURS if f.kernel == kernel]
    if not own:
        return None
    found = [f for f in own if f.matches(variant)]
    if len(found) != 1:
        raise ValueError(f"{kernel}: variant {variant} matches {len(found)} flavours of "
                         "triton_src/softmax_bias_sigmoid_flavours.py; it must match one")
    return found[0]


def by_name(kernel: str, name: str) -> Flavour:
    return next(f for f in FLAVOURS if f.kernel == kernel and f.name == name)


def rivals(flavour: Flavour) -> list[Flavour]:
    """The flavours that would run a call of `flavour`'s if the build lacked it: those after it
    in the order that require no fact it does not."""
    own = [f for f in FLAVOURS if f.kernel == flavour.kernel]
    return [f for f in own[own.index(flavour) + 1:] if set(f.requires) <= set(flavour.requires)]
