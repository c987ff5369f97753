"""out = sigmoid((softmax(x, dim=1) + bias) * scale), for x of shape (N, C, *spatial).

The launcher views x as (N, C, S) where the S spatial positions of one sample are addressed
as (s // inner_size) * stride_outer + (s % inner_size) * stride_inner: every layout whose
spatial dimensions collapse into at most two strided groups (contiguous NCHW, channels_last,
a strided view such as x[..., ::2]) runs without a copy. Three layout flavours share that view:

- CONTIGUOUS: positions at stride 1 and out laid out like x (contiguous NCHW). The tile is
  [BLOCK_C, BLOCK_S]; one 32-bit offset per element serves the load and the store.
- CHANNELS_LAST: channels at stride 1, every position of every sample one row at a uniform
  stride, out laid out like x (dense channels_last). The tile is [BLOCK_S, BLOCK_C] with C the
  contiguous axis, and the launcher passes all N * S positions as a single sample.
- neither: the general strided view, with 32-bit offsets inside a sample where they fit and
  64-bit ones where they do not. OUT_CONTIGUOUS variants of the 32-bit ones write an out whose
  positions are at stride 1 (what the op allocates for a non-dense x such as x[..., ::2]): its
  stores are then coalesced runs, where a store at the view's strides is one scalar per
  element (H100, x[..., ::2] of 16x128x128x128: 4.12x -> 1.50x of a copy in fp32, 6.08x ->
  2.24x in bf16).

INNER_STRIDE_2 twins of the single-pass ones serve x whose inner spatial stride is 2
(x[..., ::2]) when no tile crosses an inner group: they load the contiguous span under the
tile's positions and keep every other element, so that a warp's loads are whole lines, not
halves (H100, in the library: 0.96x of a copy of the view in fp32, 0.86x in bf16, against 1.49x
and 2.24x for the strided loads). For C >= 1024 the spans also have ALIGNED tiles of their own
(tuned as the flavour strided_span_aligned): rows on 16 bytes, and the span's last element read
too where the launcher finds it inside x's storage, so every access is a whole 16-byte vector;
their two-pass tile prefetches SWEEP_STAGES chunks into shared memory and serves C from the
first bucket where it beats the single-pass tile: in bf16 from C = 4096, whose single-pass tile
holds 8 positions, half a sector of out's rows (H100, 16x4096x32x32 x[..., ::2] in bf16, / a
copy of the view: two-pass 1.35x, single-pass 1.73x, torch.compile 1.41x).

C larger than every single-pass tile of contiguous NCHW goes to softmax_bias_sigmoid_split.py,
which spreads the channels of a position over several programs.

ALIGNED variants of the first two are compiled with the promise that rows start on 16-byte
boundaries, and for channels_last that bias does too (`multiples`: pointers in bytes, integers
in elements); triton_src/aot.py passes that promise to the compiler and into the kernel table,
whose launcher refuses a call that breaks it. It lets every access be 16 bytes wide. The
workload's 129 x 129 rows are odd, so their channel rows start at every 4-byte offset and no
position tile is 16-byte aligned in all rows: they run unaligned (docs/performance.md has the
measurements of the alternatives).
Unaligned NCHW tiles of fp16 and bf16 are also compiled a second time (CHANNELS_BY_16) with the
promise that C is a multiple of 16: the channel mask is then uniform in runs of 16 and Triton
drops most per-element predicates (triton 3.8, sm_90: 100 registers instead of 121 for the
workload's tile). Triton's JIT specializes on that by itself; the library's fp16 run of the
workload shape went from 2.68x to 1.49x of a copy with it. In fp32 the same promise made the
workload slower (0.790 -> 0.824 ms), and it did nothing for strided views, so neither has the
twin (docs/performance.md).

CHANNELS_EXACT variants of unaligned NCHW are compiled for C equal to their BLOCK_C (the
launcher takes one only then): the tile has no channel mask at all. Their tiles are tuned apart
from the masked ones, and the tuner keeps one only where it beats the masked tile of its bucket
(H100: fp16 128x128x129x129 went from 1.50x to 1.36x of a copy, with [128, 64] x 4 warps; fp32
64x64x127x127 ran at 1.05x with [64, 128] x 8 and no mask, over 1.3x with the mask).

SECTOR_STORES variants of unaligned NCHW store whole 32-byte sectors of out. A warp store of
32 rows' worth of 4-byte values that starts off a sector writes two sectors in part, and those
partial writes, not the loads, are what odd rows cost (H100: a plain tile copy of the workload's
odd rows ran at 1.18 to 1.48x of a copy, odd to sector-aligned rows at 1.03 to 1.04x). So each
warp's 32 lanes hold 32 consecutive positions of which the first SECTOR_STORES (a sector's worth
of elements) are a halo shared with the warp before: the warp loads and reduces all 32, and in
each channel row stores the 32 - SECTOR_STORES positions that start on a sector of out, which
lie in its own lanes whatever the row's offset. A program thus covers BLOCK_S / 32 *
(32 - SECTOR_STORES) new positions; the launcher sizes the grid by that. H100, the workload,
[128, 32] x 4 warps: 1.034x of a copy, against 1.089x for the best tile without (a quarter more
loads, all but the halo's hitting in cache). Every position is stored by exactly one warp
whatever the offsets, so out's alignment decides the speed only, never the result.

A program owns BLOCK_S positions and every channel of them. When all channels fit in one tile
(SINGLE_PASS) the whole softmax stays in registers and each element is read once; otherwise the
channels are swept in BLOCK_C chunks twice, first for an online max/sum, then for the output.

SMALL_TENSOR tiles of contiguous NCHW serve tensors of at most 1 MB, which move in less time than
a launch takes. Tuned on 512 KB per call replayed from a CUDA graph, unaligned and ALIGNED, they
hold 2 to 16 values a thread, come in buckets down to one channel, and run on a 2-D grid of
(position blocks, samples). The tiles tuned on 128 MB leave most SMs idle there, each thread
computing many positions (16x128x8x8: 16 programs of [128, 64]) or masked channels (C = 1 in a
[16, 256] tile). H100, the library's kernel, durations after an L2 clear (CUPTI), us: 16x1x64x64
3.33 before, 2.05 with the unaligned tiles, 2.02 with both (torch.compile's kernel 1.86 to 1.92);
16x3x64x64 3.04, 2.40, 2.08 (1.86 to 2.43); 16x128x8x8 3.65, 2.62, 2.75 (2.91). Per call in a
CUDA graph (the sweep), 16x1x64x64: 1.51 us on a 1-D grid with tiles chosen by do_bench, 1.42 on
the 2-D grid with tiles chosen in a graph (torch.compile 1.33 and 1.38 in the same runs); then,
compiled without the arguments they never read (unread_arguments), with the one-channel
shortcut below and re-tuned so, 1.27 and 1.52 in two passes of one run (torch.compile 1.36 and
1.59, a copy 1.22 and 1.45).

SOFTMAX_STATS twins of the single-pass CONTIGUOUS tiles also write each position's channel max
and 1 / sum (a tensor 2/C the size of x): the forward autograd runs, so that the backward reads
them instead of reducing x over the channels twice more. The op's other calls never write them.

The tile of each (flavour, dtype, BLOCK_C) comes from softmax_bias_sigmoid_tuning.json, written by
benchmarks/tune_softmax_bias_sigmoid.py from measurements on a GPU; see that script for how
the RTX 4090 (sm_89), which cannot be measured here, is served by the same table.

This module is read at build time only (by triton_src/aot.py); nothing imports it at run time.
"""
import json
from pathlib import Path

import triton
import triton.language as tl

KERNEL_NAME = "softmax_bias_sigmoid"

# Argument types in declaration order, formatted per variant with its dtype and constexprs;
# the C++ side packs arguments in this order at the widths the compiled kernel declares.
SIGNATURE = {
    "x_ptr": "*{dtype}",
    "bias_ptr": "*{dtype}",
    "out_ptr": "*{dtype}",
    "softmax_stats_ptr": "*{acc_dtype}",
    "num_channels": "i32",
    "num_positions": "i{INDEX_BITS}",
    "inner_size": "i{INDEX_BITS}",
    "num_position_blocks": "i32",
    "x_stride_n": "i{BATCH_BITS}",
    "x_stride_c": "i{INDEX_BITS}",
    "x_stride_outer": "i{INDEX_BITS}",
    "x_stride_inner": "i{INDEX_BITS}",
    "out_stride_n": "i{BATCH_BITS}",
    "out_stride_c": "i{INDEX_BITS}",
    "out_stride_outer": "i{INDEX_BITS}",
    "out_stride_inner": "i{INDEX_BITS}",
    "scale": "{acc_dtype}",
}

DTYPES = ("fp32", "fp16", "bf16")


ELEMENT_BYTES = {"fp64": 8, "fp32": 4, "fp16": 2, "bf16": 2}


def multiples(variant: dict, dtype: str) -> dict:
    """The arguments a variant is compiled to assume are multiples of a number, by name. ALIGNED:
    16-byte aligned pointers, and integers that are multiples of 16 bytes' worth of elements (4 in
    fp32, 8 in fp16 and bf16): every row of the tile's contiguous axis starts on a 16-byte
    boundary and its mask is constant over each 16-byte vector, so every access is 16 bytes wide.
    (Promising multiples of 16 elements instead left C = 100 fp32 or 1000 fp16 in channels_last
    on 4- and 2-byte accesses: H100, 1.36x of a copy for 16x100x64x64 fp32, 0.98x with this.)
    Aligned channels_last tiles also promise bias on 16 bytes: their bias runs along the same
    contiguous axis as x's rows, so without the promise each thread loads it one element at a
    time, as many loads as x takes in 16-byte vectors (H100, 4x32768x16x16 bf16, [32768, 1] x 32
    compiled as here, / a copy: 1.63x without, 1.39x with; Triton's JIT, which specializes on
    the pointer's alignment by itself, 1.39x). CHANNELS_BY_16: C a multiple of 16."""
    promised = {}
    if variant.get("ALIGNED"):
        elements = 16 // ELEMENT_BYTES[dtype]
        if variant.get("CHANNELS_LAST"):
            promised["bias_ptr"] = 16
            integers = ("num_channels", "x_stride_inner")
        elif variant.get("CONTIGUOUS"):
            integers = ("num_positions", "x_stride_n", "x_stride_c", "out_stride_n")
        else:  # the spans of INNER_STRIDE_2 tiles, and out's rows of positions at stride 1
            integers = ("num_positions", "inner_size", "x_stride_n", "x_stride_c", "x_stride_outer",
                        "out_stride_n", "out_stride_c")
        promised.update({"x_ptr": 16, "out_ptr": 16, **{name: elements for name in integers}})
    if variant.get("CHANNELS_BY_16"):
        promised["num_channels"] = max(promised.get("num_channels", 1), 16)
    return promised


def unread_arguments(variant: dict) -> set:
    """The arguments of SIGNATURE the variant never reads. triton_src/aot.py compiles them as
    constants, so they are not parameters of its kernel and the launcher leaves them out. A
    launch-bound kernel pays for every parameter: H100, 16x1x64x64 fp32 per call in a CUDA graph,
    the [1, 512] x 8 small-tensor tile took 1.487 us with all 17 and 1.422 us with the 9 it reads;
    16x3x64x64 [4, 64] x 1, 1.862 and 1.805 us. aot.py passes them as None, so a variant that does
    read one fails to build rather than reading a wrong value."""
    unread = set() if variant.get("SOFTMAX_STATS") else {"softmax_stats_ptr"}
    if variant.get("CHANNELS_EXACT"):
        unread.add("num_channels")
    if variant["CHANNELS_LAST"]:
        read = {"x_ptr", "bias_ptr", "out_ptr", "num_channels", "num_positions", "x_stride_inner", "scale"}
        return unread | (set(SIGNATURE) - read)
    if variant.get("SMALL_TENSOR"):
        unread.add("num_position_blocks")
    if variant["CONTIGUOUS"]:
        unread |= {"inner_size", "x_stride_outer", "x_stride_inner", "out_stride_outer", "out_stride_inner"}
        if variant["SINGLE_PASS"]:
            unread.add("out_stride_c")
    else:
        if variant.get("INNER_STRIDE_2"):
            unread.add("x_stride_inner")
        if variant.get("OUT_CONTIGUOUS"):
            unread |= {"out_stride_outer", "out_stride_inner"}
    return unread


TUNING_FILE = Path(__file__).with_name("softmax_bias_sigmoid_tuning.json")


def _variants_from_tuning(path: Path = TUNING_FILE) -> list:
    table = json.loads(path.read_text())
    variants = []
    for entry in table["variants"]:
        variant = {key: entry[key] for key in ("BLOCK_C", "BLOCK_S", "SINGLE_PASS", "CONTIGUOUS",
                                               "CHANNELS_LAST", "ALIGNED", "INDEX_BITS", "num_warps")}
        variant["CHANNELS_EXACT"] = entry.get("CHANNELS_EXACT", 0)
        variant["SECTOR_STORES"] = entry.get("SECTOR_STORES", 0)
        variant["SWEEP_STAGES"] = entry.get("SWEEP_STAGES", 1)
        variant["SMALL_TENSOR"] = entry.get("SMALL_TENSOR", 0)
        # Set by the tuner where a flavour has its own tiles rather than twins of another's.
        variant.update({key: entry[key] for key in ("OUT_CONTIGUOUS", "INNER_STRIDE_2") if key in entry})
        variant["dtypes"] = tuple(entry["dtypes"])
        variants.append(variant)
    return variants


def with_contiguous_out(variants: list) -> list:
    """The variants, each marked OUT_CONTIGUOUS=0 where the table did not mark it, followed by an
    OUT_CONTIGUOUS=1 twin of each unmarked 32-bit strided one."""
    twins = [dict(v, OUT_CONTIGUOUS=1) for v in variants if "OUT_CONTIGUOUS" not in v
             and not v["CONTIGUOUS"] and not v["CHANNELS_LAST"] and v["INDEX_BITS"] == 32]
    return [{"OUT_CONTIGUOUS": 0, **v} for v in variants] + twins


def with_inner_stride_2(variants: list) -> list:
    """The variants, each marked INNER_STRIDE_2=0 where the table did not mark it, followed by an
    INNER_STRIDE_2=1 twin of each unmarked single-pass OUT_CONTIGUOUS one. Measured against that
    tile on the H100, / a copy of the view: C = 128 fp32 1.49x -> 0.96x, bf16 2.24x -> 0.86x; bf16
    [512, 16] x 8 2.43x -> 0.93x; fp32 [1024, 16] x 8 1.46x -> 1.08x; fp32 [4096, 8] x 16 2.03x ->
    1.15x (48 bytes of spills)."""
    twins = [dict(v, INNER_STRIDE_2=1) for v in variants
             if "INNER_STRIDE_2" not in v and v.get("OUT_CONTIGUOUS") and v["SINGLE_PASS"]]
    return [{"INNER_STRIDE_2": 0, **v} for v in variants] + twins


def with_channels_by_16(variants: list, wanted=lambda variant: True) -> list:
    """The variants, each marked CHANNELS_BY_16=0, followed by a CHANNELS_BY_16=1 twin of each
    `wanted` 32-bit single-pass tile of C >= 16 over channel rows: the same tile, compiled again
    with the promise that C is a multiple of 16."""
    twins = [dict(v, CHANNELS_BY_16=1) for v in variants
             if v["SINGLE_PASS"] and not v.get("CHANNELS_LAST") and v["BLOCK_C"] >= 16 and v["INDEX_BITS"] == 32
             and wanted(v)]
    return [dict(v, CHANNELS_BY_16=0) for v in variants] + twins


def with_softmax_stats(variants: list, wanted=lambda variant: True) -> list:
    """The variants, each marked SOFTMAX_STATS=0, followed by a SOFTMAX_STATS=1 twin of each
    `wanted` single-pass CONTIGUOUS fp32 one: the forward that autograd runs, which also writes
    each position's softmax statistics for the backward (softmax_bias_sigmoid_backward.py reads
    them). The forward wants them all: the launcher tries each twin just before its tile, so
    autograd then runs the tile the op runs, and gets the same out to the bit. In fp16 and bf16
    the backward measured slower reading them (H100, 16x128x128x128 bf16: 0.133 ms against 0.113
    recomputing), so only fp32 has twins.

    The twins declare the batch strides 32-bit (BATCH_BITS): the launcher takes them only where
    every offset of the tensor fits. On the H100 the same statistics-reading backward ran at
    1.198x of its copy with 64-bit batch strides and 1.114x with 32-bit ones (the workload,
    [128, 32] x 4; the forward writing them 1.116x and 1.103x): the PTX differs in three
    multiplications, and ptxas then orders the loads of x and grad_out differently. The other
    variants keep 64-bit batch strides, under which the recomputing bf16 backward was the
    faster (0.113 against 0.125 ms)."""
    twins = [dict(v, SOFTMAX_STATS=1, BATCH_BITS=32, dtypes=("fp32",)) for v in variants
             if v["SINGLE_PASS"] and v["CONTIGUOUS"] and "fp32" in v.get("dtypes", ("fp32",)) and wanted(v)]
    return [dict(v, SOFTMAX_STATS=0, BATCH_BITS=64) for v in variants] + twins


def _odd_half_precision_rows(variant: dict) -> bool:
    return (variant["CONTIGUOUS"] and not variant["ALIGNED"] and not variant["CHANNELS_EXACT"]
            and not variant["SMALL_TENSOR"] and "fp32" not in variant["dtypes"])


# float64 (gradcheck, reference work) on CUDA: correct everywhere rather than fast, so one
# tile per layout flavour and the multi-pass tile where C is larger; not tuned.
_FP64 = dict(CHANNELS_LAST=0, ALIGNED=0, CHANNELS_BY_16=0, OUT_CONTIGUOUS=0, INNER_STRIDE_2=0, CHANNELS_EXACT=0,
             SECTOR_STORES=0, SWEEP_STAGES=1, SMALL_TENSOR=0, dtypes=("fp64",))
VARIANTS = with_softmax_stats(with_inner_stride_2(with_contiguous_out(with_channels_by_16(
    _variants_from_tuning(), _odd_half_precision_rows))) + [
    dict(_FP64, BLOCK_C=128, BLOCK_S=32, SINGLE_PASS=1, CONTIGUOUS=1, INDEX_BITS=32, num_warps=4),
    dict(_FP64, BLOCK_C=32, BLOCK_S=32, SINGLE_PASS=0, CONTIGUOUS=1, INDEX_BITS=32, num_warps=4),
    dict(_FP64, BLOCK_C=32, BLOCK_S=32, SINGLE_PASS=0, CONTIGUOUS=0, INDEX_BITS=32, num_warps=4),
    dict(_FP64, BLOCK_C=32, BLOCK_S=32, SINGLE_PASS=0, CONTIGUOUS=0, INDEX_BITS=64, num_warps=4),
])

# exp(v) = exp2(v * log2(e)): exp2 is the hardware instruction.
LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _max_propagating_nan(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _channel_max(x):
    # tl.max would skip NaN; a NaN input must make its whole softmax NaN, as in PyTorch.
    return tl.reduce(x, 0, _max_propagating_nan)


@triton.jit
def _exp_and_inverse_sum(x):
    """For a [BLOCK_C, BLOCK_S] tile holding every channel: exp(x - max) per channel, 1 / sum(exp)
    per position, and the max."""
    channel_max = _channel_max(x)
    e = tl.exp2((x - channel_max[None, :]) * LOG2E)
    return e, 1.0 / tl.sum(e, axis=0), channel_max


@triton.jit
def _to_compute(x):
    """The type the math runs in: fp64 for fp64, else fp32 (as at::opmath_type)."""
    if x.dtype != tl.float64:
        x = x.to(tl.float32)
    return x


@triton.jit
def _load_tile(x_base, channel_offsets, num_channels, x_stride_c, columns, column_mask, index: tl.constexpr,
               EVERY_OTHER: tl.constexpr):
    """The channels `channel_offsets` of x at `columns` (where column_mask), in the compute type;
    -inf where masked, which the max ignores and exp2 turns into 0. Also the channels and their
    mask. EVERY_OTHER: the columns are the span under the tile's positions (_span_columns), twice
    as many, of which the even ones are the tile's."""
    channel_mask = channel_offsets < num_channels
    channels = channel_offsets.to(index)
    x = tl.load(x_base + channels[:, None] * x_stride_c + columns[None, :],
                mask=channel_mask[:, None] & column_mask[None, :], other=-float("inf"))
    if EVERY_OTHER:
        x, _ = tl.split(tl.reshape(x, [x.shape[0], x.shape[1] // 2, 2]))
    return _to_compute(x), channels, channel_mask


@triton.jit
def _load_channels(x_base, channel_offsets, num_channels, x_stride_c, x_cols, position_mask,
                   index: tl.constexpr):
    """_load_tile at the tile's own positions; also the mask of the tile's elements."""
    x, channels, channel_mask = _load_tile(x_base, channel_offsets, num_channels, x_stride_c, x_cols,
                                           position_mask, index, 0)
    return x, channels, channel_mask, channel_mask[:, None] & position_mask[None, :]


@triton.jit
def _span_columns(first_position, x_stride_outer, inner_size, BLOCK_S: tl.constexpr, WHOLE_SPAN: tl.constexpr):
    """For a tile at positions first_position + [0, BLOCK_S), all in one inner group of stride 2:
    the columns of the contiguous span under them and which of those to read. The span's last
    element lies past the tile's last position, and past x where that is x's last: it is read
    only where WHOLE_SPAN says the launcher found it inside x's storage, which keeps every
    16-byte vector of the span whole."""
    outer, inner = _spatial_groups(first_position, inner_size)
    span = tl.arange(0, 2 * BLOCK_S)
    return outer * x_stride_outer + 2 * inner + span, span < (2 * BLOCK_S if WHOLE_SPAN else 2 * BLOCK_S - 1)


@triton.jit
def _sigmoid(z):
    return 1.0 / (1.0 + tl.exp2(-z * LOG2E))


@triton.jit
def _epilogue(e, inv_denominator, bias_ptr, channels, channel_mask, scale):
    bias = _to_compute(tl.load(bias_ptr + channels, mask=channel_mask, other=0.0))
    return _sigmoid((e * inv_denominator[None, :] + bias[:, None]) * scale)


@triton.jit
def _softmax_statistics(x_base, channel_offsets, num_channels, x_stride_c, columns, column_mask,
                        index: tl.constexpr, EVERY_OTHER: tl.constexpr, BLOCK_C: tl.constexpr,
                        BLOCK_S: tl.constexpr, SWEEP_STAGES: tl.constexpr):
    """One sweep over the channels in BLOCK_C chunks with an online max and sum:
    per position, the reference point to subtract before exp2 and 1 / sum(exp). The chunks are
    read as _load_tile reads them; SWEEP_STAGES > 1 prefetches as many into shared memory."""
    running_max = _to_compute(tl.full([BLOCK_S], -float("inf"), x_base.dtype.element_ty))
    running_sum = _to_compute(tl.zeros([BLOCK_S], x_base.dtype.element_ty))
    for c0 in tl.range(0, num_channels, BLOCK_C, num_stages=SWEEP_STAGES):
        x, _, _ = _load_tile(x_base, c0 + channel_offsets, num_channels, x_stride_c, columns, column_mask,
                             index, EVERY_OTHER)
        new_max = _max_propagating_nan(running_max, _channel_max(x))
        # A column that has seen only -inf so far keeps a finite reference point, so that
        # exp2(-inf - -inf) never turns its running sum into NaN.
        reference = tl.where(new_max == -float("inf"), 0.0, new_max)
        running_sum = (running_sum * tl.exp2((running_max - reference) * LOG2E)
                       + tl.sum(tl.exp2((x - reference[None, :]) * LOG2E), axis=0))
        running_max = new_max
    reference = tl.where(running_max == -float("inf"), 0.0, running_max)
    return reference, 1.0 / running_sum


@triton.jit
def _first_position(num_position_blocks, BLOCK_S: tl.constexpr, index: tl.constexpr):
    """For a program over [channels, positions] tiles: the first of its BLOCK_S positions."""
    return (tl.program_id(0) % num_position_blocks).to(index) * BLOCK_S


@triton.jit
def _sample_positions(num_positions, num_position_blocks, BLOCK_S: tl.constexpr, index: tl.constexpr,
                      SAMPLES_ON_AXIS_1: tl.constexpr = 0):
    """For a program over [channels, positions] tiles: its sample n (64-bit, for the batch
    offset), its BLOCK_S positions s and the mask of those inside the sample. SAMPLES_ON_AXIS_1:
    the grid is 2-D, (position blocks, samples), which spares the division by a runtime value
    that splits a 1-D program id, something a launch-bound kernel waits on before its first load
    (H100, 16x1x64x64 fp32, per call in a CUDA graph, a minimal kernel of the op's math: 1.44 us
    on a flat index, 1.52 us with the division, 1.45 us on a 2-D grid)."""
    if SAMPLES_ON_AXIS_1:
        n = tl.program_id(1).to(tl.int64)
        first = tl.program_id(0).to(index) * BLOCK_S
    else:
        n = (tl.program_id(0) // num_position_blocks).to(tl.int64)
        first = _first_position(num_position_blocks, BLOCK_S, index)
    s = first + tl.arange(0, BLOCK_S).to(index)
    return n, s, s < num_positions


@triton.jit
def _sector_positions(num_positions, num_position_blocks, BLOCK_S: tl.constexpr, SECTOR: tl.constexpr,
                      index: tl.constexpr):
    """As _sample_positions, for a SECTOR_STORES tile: column j is lane j % 32 of warp j // 32, and
    each warp's first SECTOR positions repeat the last of the warp before. Also returns the lanes."""
    tl.static_assert(BLOCK_S % 32 == 0, "a SECTOR_STORES tile holds whole warps of positions")
    STEP: tl.constexpr = 32 - SECTOR
    n = (tl.program_id(0) // num_position_blocks).to(tl.int64)
    block = (tl.program_id(0) % num_position_blocks).to(index)
    columns = tl.arange(0, BLOCK_S).to(index)
    lanes = columns % 32
    s = block * (BLOCK_S // 32 * STEP) + columns // 32 * STEP + lanes - SECTOR
    return n, s, (s >= 0) & (s < num_positions), lanes


@triton.jit
def _whole_sectors(row_offsets, lanes, SECTOR: tl.constexpr):
    """[rows, BLOCK_S] mask of the positions a SECTOR_STORES tile stores: in each row, which starts
    row_offsets elements past a sector of out, the 32 - SECTOR lanes of each warp whose positions
    fill whole sectors."""
    first_lane = SECTOR - row_offsets % SECTOR
    return (lanes[None, :] - first_lane[:, None]).to(tl.uint32) < 32 - SECTOR


@triton.jit
def _spatial_groups(s, inner_size):
    """Positions s as (outer, inner) indices of the view's two strided spatial groups."""
    outer = s // inner_size
    return outer, s - outer * inner_size


@triton.jit
def _channels_last_rows(x_ptr, bias_ptr, out_ptr, num_channels, num_rows, row_stride, scale,
                        BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, index: tl.constexpr):
    """A [BLOCK_S rows, BLOCK_C channels] tile of a channels_last tensor: the channels of a row are
    contiguous, the rows row_stride apart, x and out alike; the softmax runs along axis 1."""
    rows = tl.program_id(0).to(index) * BLOCK_S + tl.arange(0, BLOCK_S).to(index)
    channel_offsets = tl.arange(0, BLOCK_C)
    channel_mask = channel_offsets < num_channels
    mask = (rows < num_rows)[:, None] & channel_mask[None, :]
    offsets = rows[:, None] * row_stride + channel_offsets[None, :]
    x = _to_compute(tl.load(x_ptr + offsets, mask=mask, other=-float("inf")))
    e = tl.exp2((x - tl.reduce(x, 1, _max_propagating_nan)[:, None]) * LOG2E)
    inv_denominator = 1.0 / tl.sum(e, axis=1)
    bias = _to_compute(tl.load(bias_ptr + channel_offsets, mask=channel_mask, other=0.0))
    y = _sigmoid((e * inv_denominator[:, None] + bias[None, :]) * scale)
    tl.store(out_ptr + offsets, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def softmax_bias_sigmoid(
    x_ptr, bias_ptr, out_ptr, softmax_stats_ptr,
    num_channels, num_positions, inner_size, num_position_blocks,
    x_stride_n, x_stride_c, x_stride_outer, x_stride_inner,
    out_stride_n, out_stride_c, out_stride_outer, out_stride_inner,
    scale,
    BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, SINGLE_PASS: tl.constexpr,
    CONTIGUOUS: tl.constexpr, CHANNELS_LAST: tl.constexpr, ALIGNED: tl.constexpr,
    INDEX_BITS: tl.constexpr, CHANNELS_BY_16: tl.constexpr = 0, OUT_CONTIGUOUS: tl.constexpr = 0,
    INNER_STRIDE_2: tl.constexpr = 0, SOFTMAX_STATS: tl.constexpr = 0, BATCH_BITS: tl.constexpr = 64,
    CHANNELS_EXACT: tl.constexpr = 0, SECTOR_STORES: tl.constexpr = 0, SWEEP_STAGES: tl.constexpr = 1,
    SMALL_TENSOR: tl.constexpr = 0,
):
    # CHANNELS_BY_16 and BATCH_BITS change nothing here, nor ALIGNED but for the span of an
    # INNER_STRIDE_2 tile: they name the divisibility promises (multiples) and the batch strides'
    # width the variant is compiled with. SMALL_TENSOR tiles run on a 2-D grid whose axis 1 is
    # the sample (the launcher's kMaxSamplesOnAxis1 bounds it).
    index = tl.int64 if INDEX_BITS == 64 else tl.int32
    if CHANNELS_EXACT:
        # C as a constant equal to the tile: every channel mask folds away.
        num_channels = BLOCK_C
    if CHANNELS_LAST:
        # The launcher passes all N * S rows as one sample, so small images still fill tiles.
        _channels_last_rows(x_ptr, bias_ptr, out_ptr, num_channels, num_positions, x_stride_inner,
                            scale, BLOCK_C, BLOCK_S, index)
    else:
        # [BLOCK_C channels, BLOCK_S positions] tiles of one sample (contiguous NCHW or the
        # strided view); the softmax runs along axis 0.
        if SECTOR_STORES:
            n, s, position_mask, lanes = _sector_positions(num_positions, num_position_blocks, BLOCK_S,
                                                           SECTOR_STORES, index)
        else:
            n, s, position_mask = _sample_positions(num_positions, num_position_blocks, BLOCK_S, index, SMALL_TENSOR)
        x_base = x_ptr + n * x_stride_n
        out_base = out_ptr + n * out_stride_n
        column_mask = position_mask
        if CONTIGUOUS:
            x_cols = s
            out_cols = s
        else:
            outer, inner = _spatial_groups(s, inner_size)
            if INNER_STRIDE_2:
                # The launcher takes these only where BLOCK_S divides inner_size: every position of
                # the tile exists and lies in one inner group.
                x_cols, column_mask = _span_columns(_first_position(num_position_blocks, BLOCK_S, index),
                                                    x_stride_outer, inner_size, BLOCK_S, ALIGNED)
            else:
                x_cols = outer * x_stride_outer + inner * x_stride_inner
            if OUT_CONTIGUOUS:
                out_cols = s
            else:
                out_cols = outer * out_stride_outer + inner * out_stride_inner
        channel_offsets = tl.arange(0, BLOCK_C)

        if SINGLE_PASS:
            x, channels, channel_mask = _load_tile(x_base, channel_offsets, num_channels, x_stride_c, x_cols,
                                                   column_mask, index, INNER_STRIDE_2)
            mask = channel_mask[:, None] & position_mask[None, :]
            e, inv_denominator, channel_max = _exp_and_inverse_sum(x)
            if BLOCK_C == 1:
                # One channel, whose softmax exp2(0) / exp2(0) is 1 wherever x is finite and NaN
                # elsewhere, as x - x + 1 is: the sigmoid is computed while x is loading and only
                # an add waits for x, and the output is the general form's to the bit (H100,
                # 16x1x64x64 fp32 per call in a CUDA graph: 1.390 against 1.422 us).
                bias = _to_compute(tl.load(bias_ptr + channel_offsets, mask=channel_mask, other=0.0))
                y = (x - x) + _sigmoid((1.0 + bias) * scale)[:, None]
            else:
                y = _epilogue(e, inv_denominator, bias_ptr, channel_offsets, channel_mask, scale)
            if CONTIGUOUS:
                # Same strides: the load's offsets serve the store.
                out_offsets = channels[:, None] * x_stride_c + x_cols[None, :]
            else:
                out_offsets = channels[:, None] * out_stride_c + out_cols[None, :]
            if SECTOR_STORES:
                # Offsets from out's pointer, which is taken to start a sector (torch allocates
                # on 512 bytes); were it not, the stores would be partial again, not wrong.
                row_offsets = (n * out_stride_n % SECTOR_STORES).to(index) + channels * x_stride_c
                mask = mask & _whole_sectors(row_offsets, lanes, SECTOR_STORES)
                # Each position's statistics once: from the warp that holds it outside its halo.
                position_mask = position_mask & (lanes >= SECTOR_STORES)
            tl.store(out_base + out_offsets, y.to(out_ptr.dtype.element_ty), mask=mask)
            if SOFTMAX_STATS:
                # (N, 2, S) in the compute type: the max, then 1 / sum, of every position. Which
                # max is faster depends on the tile, by how ptxas schedules it (H100, the workload,
                # / a copy): the masked [128, 64] x 4 ran at 1.15x reducing x again with tl.max
                # and 1.23x keeping the first reduction's max live (1.100x and 1.224x in a later
                # run), the whole-sector [128, 32] x 4 at 1.187x and 1.042x (the op without
                # statistics: 1.035x). tl.max skips NaN, the first max keeps it; 1 / sum carries it
                # either way.
                stats_base = softmax_stats_ptr + n * 2 * num_positions
                stats_max = channel_max if SECTOR_STORES else tl.max(x, axis=0)
                tl.store(stats_base + s, stats_max, mask=position_mask)
                tl.store(stats_base + num_positions + s, inv_denominator, mask=position_mask)
        else:
            reference, inv_denominator = _softmax_statistics(
                x_base, channel_offsets, num_channels, x_stride_c, x_cols, column_mask, index, INNER_STRIDE_2,
                BLOCK_C, BLOCK_S, SWEEP_STAGES)
            for c0 in tl.range(0, num_channels, BLOCK_C, num_stages=SWEEP_STAGES):
                x, channels, channel_mask = _load_tile(x_base, c0 + channel_offsets, num_channels, x_stride_c,
                                                       x_cols, column_mask, index, INNER_STRIDE_2)
                e = tl.exp2((x - reference[None, :]) * LOG2E)
                y = _epilogue(e, inv_denominator, bias_ptr, c0 + channel_offsets, channel_mask, scale)
                tl.store(out_base + channels[:, None] * out_stride_c + out_cols[None, :],
                         y.to(out_ptr.dtype.element_ty), mask=channel_mask[:, None] & position_mask[None, :])
