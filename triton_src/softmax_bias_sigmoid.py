"""out = sigmoid((softmax(x, dim=1) + bias) * scale), for x of shape (N, C, *spatial).

The launcher views x as (N, C, S) where the S spatial positions of one sample are addressed
as (s // inner_size) * stride_outer + (s % inner_size) * stride_inner: every layout whose
spatial dimensions collapse into at most two strided groups runs without a copy. A program
owns BLOCK_S positions and every channel of them: with SINGLE_PASS the whole softmax stays in
registers and each element is read once; otherwise the channels are swept in BLOCK_C chunks
twice, first for an online max and sum, then for the output. C beyond every single-pass tile of
contiguous NCHW goes to softmax_bias_sigmoid_split.py, which spreads a position's channels over
several programs.

The constexprs below make the layout flavours of softmax_bias_sigmoid_flavours.py, which says
when a call may take each; docs/performance.md has what each was measured to buy.

- CONTIGUOUS: positions at stride 1 and out laid out like x; one 32-bit offset per element
  serves the load and the store. CHANNELS_LAST: channels at stride 1, every position a row, all
  N * S rows passed as one sample; the tile is [BLOCK_S, BLOCK_C]. Neither: the general strided
  view, at INDEX_BITS 32 or 64.
- OUT_CONTIGUOUS (strided view): out's positions at stride 1, as the op allocates it for a
  non-dense x, so its stores are coalesced runs.
- INNER_STRIDE_2 (x[..., ::2]): the contiguous span under a tile's positions is loaded and every
  other element kept, so that a warp's loads are whole lines; with ALIGNED the span's last
  element is read too (where the launcher finds it inside x's storage) and SWEEP_STAGES chunks
  are prefetched into shared memory by the two-pass tile.
- ALIGNED: rows start on 16 bytes (and for channels_last, bias too): `multiples` passes the
  promise to the compiler and the launcher checks it, so every access is 16 bytes wide.
- CHANNELS_BY_16 (unaligned fp16/bf16 NCHW): C a multiple of 16, so the channel mask is uniform
  in runs of 16 and Triton drops most per-element predicates.
- CHANNELS_EXACT: C equal to BLOCK_C, no channel mask at all.
- SECTOR_STORES (unaligned NCHW): each warp's first SECTOR_STORES lanes repeat the last
  positions of the warp before (a halo), and in each channel row a warp stores only the
  positions that fill whole 32-byte sectors of out: partial-sector stores, not misaligned
  loads, are what odd rows cost. A program covers BLOCK_S / 32 * (32 - SECTOR_STORES) new
  positions, and every position is stored by exactly one warp whatever the offsets.
- SMALL_TENSOR (contiguous NCHW, x of at most 1 MB): tiles tuned per call in a CUDA graph, down
  to one channel, on a 2-D grid of (position blocks, samples).
- SOFTMAX_STATS (single-pass CONTIGUOUS fp32): also writes each position's channel max and
  1 / sum, which the backward reads instead of reducing x again; only the forward that autograd
  runs takes them.

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
    boundary and its mask is constant over each 16-byte vector, so every access is 16 bytes wide
    (a promise of 16 elements would leave C = 100 fp32 on 4-byte accesses). Aligned channels_last
    tiles also promise bias on 16 bytes: their bias runs along the same contiguous axis as x's
    rows, and without the promise each thread loads it one element at a time.
    CHANNELS_BY_16: C a multiple of 16. docs/performance.md has the measurements."""
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
    constants, so they are not parameters of its kernel and the launcher leaves them out: a
    launch-bound kernel pays for every parameter (docs/performance.md). aot.py passes them as
    None, so a variant that does read one fails to build rather than reading a wrong value."""
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
    INNER_STRIDE_2=1 twin of each unmarked single-pass OUT_CONTIGUOUS one: faster than that tile
    on x[..., ::2] at every C measured (docs/performance.md)."""
    twins = [dict(v, INNER_STRIDE_2=1) for v in variants
             if "INNER_STRIDE_2" not in v and v.get("OUT_CONTIGUOUS") and v["SINGLE_PASS"]]
    return [{"INNER_STRIDE_2": 0, **v} for v in variants] + twins


# From 512 channels up a CHANNELS_BY_16 twin, forward or backward, compiled to the same machine
# code as its tile (sm_80, sm_89 and sm_90; triton 3.6 and 3.8): there it would cost build time
# and buy nothing.
CHANNELS_BY_16_BELOW = 512


def with_channels_by_16(variants: list, wanted=lambda variant: True) -> list:
    """The variants, each marked CHANNELS_BY_16=0, followed by a CHANNELS_BY_16=1 twin of each
    `wanted` 32-bit single-pass tile over channel rows of 16 <= C < CHANNELS_BY_16_BELOW: the same
    tile, compiled again with the promise that C is a multiple of 16."""
    twins = [dict(v, CHANNELS_BY_16=1) for v in variants
             if v["SINGLE_PASS"] and not v.get("CHANNELS_LAST") and 16 <= v["BLOCK_C"] < CHANNELS_BY_16_BELOW
             and v["INDEX_BITS"] == 32 and wanted(v)]
    return [dict(v, CHANNELS_BY_16=0) for v in variants] + twins


# The widest tile, forward or backward, with a softmax-statistics twin: the backward's widest
# single-pass tile. The launcher passes statistics only where both kernels have a twin for C
# (csrc: softmax_stats_pay_off), so a wider forward twin would never run.
SOFTMAX_STATS_MAX_CHANNELS = 1024


def with_softmax_stats(variants: list, wanted=lambda variant: True) -> list:
    """The variants, each marked SOFTMAX_STATS=0, followed by a SOFTMAX_STATS=1 twin of each
    `wanted` single-pass CONTIGUOUS fp32 one of at most SOFTMAX_STATS_MAX_CHANNELS: the forward
    that autograd runs, which also writes each position's softmax statistics for the backward
    (softmax_bias_sigmoid_backward.py reads them). The forward wants them all: the launcher tries
    each twin just before its tile, so autograd then runs the tile the op runs, and gets the same
    out to the bit. In fp16 and bf16 the backward was slower reading them than recomputing them,
    so only fp32 has twins.

    The twins declare the batch strides 32-bit (BATCH_BITS), which the launcher takes only where
    every offset of the tensor fits: with them ptxas orders the backward's loads of x and
    grad_out better. The other variants keep 64-bit batch strides, under which the recomputing
    bf16 backward was the faster. docs/performance.md has the measurements."""
    twins = [dict(v, SOFTMAX_STATS=1, BATCH_BITS=32, dtypes=("fp32",)) for v in variants
             if v["SINGLE_PASS"] and v["CONTIGUOUS"] and "fp32" in v.get("dtypes", ("fp32",))
             and v["BLOCK_C"] <= SOFTMAX_STATS_MAX_CHANNELS and wanted(v)]
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
    that splits a 1-D program id, something a launch-bound kernel waits on before its first load."""
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
    # the sample (the registry's max_samples_on_axis_1 bounds it).
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
                # an add waits for x, and the output is the general form's to the bit.
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
                # max is faster depends on the tile, by how ptxas schedules it: the whole-sector
                # tile keeps the first reduction's, the others reduce x again (docs/performance.md).
                # tl.max skips NaN, the first max keeps it; 1 / sum carries it either way.
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
