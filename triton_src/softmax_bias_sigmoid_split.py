"""softmax_bias_sigmoid for contiguous NCHW x whose channels fit no single-pass tile (C above the
largest BLOCK_C of softmax_bias_sigmoid.py), with the channels of a position split across
programs.

The forward's multi-pass kernel gives one program all channels of its positions, so its grid is
N * S / BLOCK_S programs whatever C is: at (4, 32768, 16, 16) and BLOCK_S = 8 that is 128
programs, each sweeping 32768 channel rows twice, too few to keep many loads in flight. Here the
grid is that times the number of CHANNELS_PER_SPLIT chunks of C, in two launches on one stream:

- STATISTICS: each program sweeps its chunk with an online max and sum (the forward's
  _softmax_statistics) and writes the chunk's reference point and 1 / sum for its positions to
  a float32 buffer laid out (N, splits, 2, S);
- OUTPUT: each program merges the statistics of every chunk of its positions and writes out for
  its own chunk.

x is read twice, so a copy's time times 1.5 is the floor. Where a single-pass tile holds C, it
stays faster, which is why this kernel only takes what none holds; docs/performance.md has the
measurements of the chunk size, the tiles and the alternatives.

This module is read at build time only (by triton_src/aot.py); nothing imports it at run time.
"""
import triton
import triton.language as tl

from softmax_bias_sigmoid import LOG2E, _epilogue, _load_channels, _max_propagating_nan, _softmax_statistics
from softmax_bias_sigmoid import multiples as tail_multiples

KERNEL_NAME = "softmax_bias_sigmoid_split"

SIGNATURE = {
    "x_ptr": "*{dtype}",
    "bias_ptr": "*{dtype}",
    "out_ptr": "*{dtype}",
    "statistics_ptr": "*fp32",
    "num_channels": "i32",
    "num_positions": "i32",
    "num_position_blocks": "i32",
    "num_splits": "i32",
    "x_stride_n": "i64",
    "x_stride_c": "i32",
    "out_stride_n": "i64",
    "scale": "fp32",
}

DTYPES = ("fp32", "fp16", "bf16")

# The values of PHASE.
STATISTICS = tl.constexpr(0)
OUTPUT = tl.constexpr(1)

# Tiles by dtype, (ALIGNED, BLOCK_C, BLOCK_S, SWEEP_STAGES), the launcher taking the first whose
# promise the call keeps: each the fastest of its dtype in one run (docs/performance.md).
TILES = {
    "fp32": [(1, 32, 64, 3), (0, 32, 32, 1)],
    "fp16": [(1, 64, 32, 1), (0, 32, 32, 1)],
    "bf16": [(0, 64, 32, 1)],
}

# num_stages 3, as the JIT experiment that chose the tile compiled it (Triton's default there).
VARIANTS = [dict(PHASE=phase, CHANNELS_PER_SPLIT=1024, ALIGNED=aligned, BLOCK_C=block_c, BLOCK_S=block_s,
                 SWEEP_STAGES=stages, num_warps=4, num_stages=3, dtypes=(dtype,))
            for dtype, tiles in TILES.items() for aligned, block_c, block_s, stages in tiles
            for phase in (STATISTICS.value, OUTPUT.value)]


def multiples(variant: dict, dtype: str) -> dict:
    """ALIGNED: the promise of the tail kernel's ALIGNED contiguous tiles (x and out on 16 bytes,
    and each channel row of positions too), which the launcher checks for both in one place."""
    return tail_multiples({"ALIGNED": variant["ALIGNED"], "CONTIGUOUS": 1}, dtype)


@triton.jit
def _merged_statistics(statistics_ptr, n, num_splits, num_positions, s, position_mask,
                       BLOCK_S: tl.constexpr):
    """The softmax statistics of all channels at positions s, from every chunk's (reference,
    1 / sum): the largest reference M and 1 / sum_k exp(reference_k - M) / inverse_k."""
    SPLITS_AT_ONCE: tl.constexpr = 16
    merged_max = tl.full([BLOCK_S], -float("inf"), tl.float32)
    merged_sum = tl.zeros([BLOCK_S], tl.float32)
    for k0 in range(0, num_splits, SPLITS_AT_ONCE):
        k = k0 + tl.arange(0, SPLITS_AT_ONCE)
        mask = (k < num_splits)[:, None] & position_mask[None, :]
        rows = statistics_ptr + ((n * num_splits + k) * 2 * num_positions)[:, None] + s[None, :]
        inverse = tl.load(rows + num_positions, mask=mask, other=float("inf"))
        # A chunk of only -inf has no exp to add (1 / sum = inf); its stored reference point, 0,
        # must not become the maximum, or a position whose values all lie far below 0 would
        # lose its whole sum to underflow.
        reference = tl.where(inverse == float("inf"), -float("inf"), tl.load(rows, mask=mask, other=0.0))
        new_max = _max_propagating_nan(merged_max, tl.reduce(reference, 0, _max_propagating_nan))
        # As in _softmax_statistics: a position that has seen only empty chunks keeps a finite
        # reference point, so that exp2(-inf - -inf) never turns its sum into NaN.
        new_reference = tl.where(new_max == -float("inf"), 0.0, new_max)
        merged_sum = (merged_sum * tl.exp2((merged_max - new_reference) * LOG2E)
                      + tl.sum(tl.exp2((reference - new_reference[None, :]) * LOG2E) / inverse, axis=0))
        merged_max = new_max
    return tl.where(merged_max == -float("inf"), 0.0, merged_max), 1.0 / merged_sum


@triton.jit
def softmax_bias_sigmoid_split(
    x_ptr, bias_ptr, out_ptr, statistics_ptr,
    num_channels, num_positions, num_position_blocks, num_splits,
    x_stride_n, x_stride_c, out_stride_n,
    scale,
    PHASE: tl.constexpr, CHANNELS_PER_SPLIT: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
    ALIGNED: tl.constexpr = 0, SWEEP_STAGES: tl.constexpr = 1,
):
    # ALIGNED changes nothing here: it names the divisibility promises the variant is compiled with.
    # Programs run position block fastest, then chunk, then sample.
    pid = tl.program_id(0)
    block = pid % num_position_blocks
    split = (pid // num_position_blocks) % num_splits
    n = (pid // num_position_blocks // num_splits).to(tl.int64)
    s = block * BLOCK_S + tl.arange(0, BLOCK_S)
    position_mask = s < num_positions
    first_channel = split * CHANNELS_PER_SPLIT
    chunk_channels = tl.minimum(CHANNELS_PER_SPLIT, num_channels - first_channel)
    # The chunk as a tensor of its own: channel 0 of it is first_channel of x.
    x_chunk = x_ptr + n * x_stride_n + first_channel * x_stride_c
    channel_offsets = tl.arange(0, BLOCK_C)
    if PHASE == STATISTICS:
        reference, inverse = _softmax_statistics(x_chunk, channel_offsets, chunk_channels, x_stride_c, s,
                                                 position_mask, tl.int32, 0, BLOCK_C, BLOCK_S, SWEEP_STAGES)
        row = statistics_ptr + (n * num_splits + split) * 2 * num_positions
        tl.store(row + s, reference, mask=position_mask)
        tl.store(row + num_positions + s, inverse, mask=position_mask)
    else:
        reference, inverse = _merged_statistics(statistics_ptr, n, num_splits, num_positions, s,
                                                position_mask, BLOCK_S)
        out_chunk = out_ptr + n * out_stride_n + first_channel * x_stride_c
        for c0 in range(0, CHANNELS_PER_SPLIT, BLOCK_C):
            x, channels, channel_mask, mask = _load_channels(
                x_chunk, c0 + channel_offsets, chunk_channels, x_stride_c, s, position_mask, tl.int32)
            e = tl.exp2((x - reference[None, :]) * LOG2E)
            y = _epilogue(e, inverse, bias_ptr + first_channel, channels, channel_mask, scale)
            tl.store(out_chunk + channels[:, None] * x_stride_c + s[None, :], y.to(out_ptr.dtype.element_ty),
                     mask=mask)
