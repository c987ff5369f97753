"""The gradients of out = sigmoid((softmax(x, dim=1) + bias) * scale), in one pass over x and
grad_out.

With p = softmax(x) and out recomputed from x and, where the forward saved them (SOFTMAX_STATS
variants), each position's channel max and 1 / sum (no full-size tensor but x is saved):
    dp = scale * grad_out * out * (1 - out)
    grad_x = p * (dp - sum_c p * dp)
    grad_bias = sum of dp over the batch and the positions
The kernel writes grad_x, and per program the sums of dp over its positions, one row of C
values of a (programs, C) buffer in the compute type, whose columns the launcher adds up with
the column_sums kernel (column_sums.py). Rows, not columns: writing the buffer transposed made
this kernel slower by more than the sum gained (docs/performance.md).

Same view and tiling as the forward (softmax_bias_sigmoid.py): x, grad_out and grad_x as
(N, C, S) with two strided spatial groups (CONTIGUOUS: all three with stride 1 along the
positions and the same channel stride), a program owns BLOCK_S positions of one sample and all
their channels. SINGLE_PASS keeps the tile in registers and reads each element once; otherwise
the channels are swept three times (softmax statistics; sum of p * dp and the bias sums;
grad_x).

This module is read at build time only (by triton_src/aot.py); nothing imports it at run time.
"""
import triton
import triton.language as tl

from softmax_bias_sigmoid import (LOG2E, _epilogue, _exp_and_inverse_sum, _load_channels, _sample_positions,
                                  _softmax_statistics, _spatial_groups, with_channels_by_16, with_softmax_stats)

KERNEL_NAME = "softmax_bias_sigmoid_backward"

SIGNATURE = {
    "x_ptr": "*{dtype}",
    "bias_ptr": "*{dtype}",
    "grad_out_ptr": "*{dtype}",
    "grad_x_ptr": "*{dtype}",
    "grad_bias_partial_ptr": "*{acc_dtype}",
    "softmax_stats_ptr": "*{acc_dtype}",
    "num_channels": "i32",
    "num_positions": "i{INDEX_BITS}",
    "inner_size": "i{INDEX_BITS}",
    "num_position_blocks": "i32",
    "x_stride_n": "i{BATCH_BITS}",
    "x_stride_c": "i{INDEX_BITS}",
    "x_stride_outer": "i{INDEX_BITS}",
    "x_stride_inner": "i{INDEX_BITS}",
    "grad_out_stride_n": "i{BATCH_BITS}",
    "grad_out_stride_c": "i{INDEX_BITS}",
    "grad_out_stride_outer": "i{INDEX_BITS}",
    "grad_out_stride_inner": "i{INDEX_BITS}",
    "grad_x_stride_n": "i{BATCH_BITS}",
    "grad_x_stride_c": "i{INDEX_BITS}",
    "grad_x_stride_outer": "i{INDEX_BITS}",
    "grad_x_stride_inner": "i{INDEX_BITS}",
    "scale": "{acc_dtype}",
}

DTYPES = ("fp32", "fp16", "bf16")


def multiples(variant: dict, dtype: str) -> dict:
    """As the forward's: a CHANNELS_BY_16 variant is compiled for C a multiple of 16. Every
    single-pass tile below the forward's CHANNELS_BY_16_BELOW has that twin here: fewer registers
    (docs/performance.md)."""
    return {"num_channels": 16} if variant.get("CHANNELS_BY_16") else {}


def _variant(block_c, block_s, num_warps, single_pass=True, contiguous=True, index_bits=32, dtypes=DTYPES):
    return dict(BLOCK_C=block_c, BLOCK_S=block_s, SINGLE_PASS=int(single_pass),
                CONTIGUOUS=int(contiguous), INDEX_BITS=index_bits, num_warps=num_warps, dtypes=dtypes)


# Two tensors in flight instead of the forward's one: the single-pass tiles hold 32 values per
# thread of each (the forward's 64 at C = 128 would spill), 4 warps, the best of the BLOCK_S
# and warps measured on the workload (docs/performance.md). The launcher takes the smallest
# BLOCK_C that covers C.
_SINGLE_PASS_TILES = [(16, 256, 4), (64, 64, 4), (128, 32, 4), (1024, 8, 8)]
_MULTI_PASS_TILE = (64, 32, 4)

# SOFTMAX_STATS twins (fp32) of the single-pass CONTIGUOUS tiles read the forward's per-position
# max and 1 / sum instead of recomputing them: one reduction over the channels instead of three.
# Their CHANNELS_BY_16 form was slower (docs/performance.md), so they have none.
VARIANTS = with_softmax_stats(with_channels_by_16(
    [_variant(*tile) for tile in _SINGLE_PASS_TILES] + [_variant(*_MULTI_PASS_TILE, single_pass=False)]
    + [_variant(*tile, contiguous=False) for tile in _SINGLE_PASS_TILES]
    + [_variant(*_MULTI_PASS_TILE, single_pass=False, contiguous=False)]
    + [_variant(128, 16, 4, contiguous=False, index_bits=64),
       _variant(32, 32, 4, single_pass=False, contiguous=False, index_bits=64)]
) + [dict(v, CHANNELS_BY_16=0) for v in (
    # float64 (gradcheck): correct everywhere rather than fast.
    _variant(128, 16, 4, dtypes=("fp64",)), _variant(32, 16, 4, single_pass=False, dtypes=("fp64",)),
    _variant(32, 16, 4, single_pass=False, contiguous=False, dtypes=("fp64",)),
    _variant(32, 16, 4, single_pass=False, contiguous=False, index_bits=64, dtypes=("fp64",)))],
    wanted=lambda variant: not variant["CHANNELS_BY_16"])


@triton.jit
def _grad_p(e, inv_denominator, bias_ptr, channel_offsets, channel_mask, grad_out, mask, scale):
    """p and dp = scale * grad_out * out * (1 - out) of a tile, from its exp(x - reference),
    1 / sum(exp) and the loaded grad_out; dp is 0 outside the mask (the padding of a tile is NaN
    there)."""
    p = e * inv_denominator[None, :]
    out = _epilogue(e, inv_denominator, bias_ptr, channel_offsets, channel_mask, scale)
    grad_p = tl.where(mask, scale * grad_out.to(out.dtype) * out * (1.0 - out), 0.0)
    return p, grad_p


@triton.jit
def _chunk_grad_p(x_base, channel_offsets, num_channels, x_stride_c, x_cols, position_mask,
                  index: tl.constexpr, reference, inv_denominator, bias_ptr, grad_out_base,
                  grad_out_stride_c, grad_out_cols, scale):
    """p and dp of the channels `channel_offsets`, given the softmax statistics of the tile's
    positions; also the channels and masks of the chunk."""
    x, channels, channel_mask, mask = _load_channels(
        x_base, channel_offsets, num_channels, x_stride_c, x_cols, position_mask, index)
    grad_out = tl.load(grad_out_base + channels[:, None] * grad_out_stride_c + grad_out_cols[None, :],
                       mask=mask, other=0.0)
    e = tl.exp2((x - reference[None, :]) * LOG2E)
    p, grad_p = _grad_p(e, inv_denominator, bias_ptr, channel_offsets, channel_mask, grad_out, mask, scale)
    return p, grad_p, channels, channel_mask, mask


@triton.jit
def softmax_bias_sigmoid_backward(
    x_ptr, bias_ptr, grad_out_ptr, grad_x_ptr, grad_bias_partial_ptr, softmax_stats_ptr,
    num_channels, num_positions, inner_size, num_position_blocks,
    x_stride_n, x_stride_c, x_stride_outer, x_stride_inner,
    grad_out_stride_n, grad_out_stride_c, grad_out_stride_outer, grad_out_stride_inner,
    grad_x_stride_n, grad_x_stride_c, grad_x_stride_outer, grad_x_stride_inner,
    scale,
    BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, SINGLE_PASS: tl.constexpr,
    CONTIGUOUS: tl.constexpr, INDEX_BITS: tl.constexpr, CHANNELS_BY_16: tl.constexpr = 0,
    SOFTMAX_STATS: tl.constexpr = 0, BATCH_BITS: tl.constexpr = 64,
):
    # CHANNELS_BY_16 and BATCH_BITS change nothing here: they name the promise and the batch
    # strides' width the variant is compiled with.
    index = tl.int64 if INDEX_BITS == 64 else tl.int32
    n, s, position_mask = _sample_positions(num_positions, num_position_blocks, BLOCK_S, index)
    x_base = x_ptr + n * x_stride_n
    grad_out_base = grad_out_ptr + n * grad_out_stride_n
    grad_x_base = grad_x_ptr + n * grad_x_stride_n
    partial_row = grad_bias_partial_ptr + tl.program_id(0).to(tl.int64) * num_channels
    if CONTIGUOUS:
        # One channel stride for all three; the load's offsets serve every access.
        x_cols = s
        grad_out_cols = s
        grad_x_cols = s
        grad_out_stride_c = x_stride_c
        grad_x_stride_c = x_stride_c
    else:
        outer, inner = _spatial_groups(s, inner_size)
        x_cols = outer * x_stride_outer + inner * x_stride_inner
        grad_out_cols = outer * grad_out_stride_outer + inner * grad_out_stride_inner
        grad_x_cols = outer * grad_x_stride_outer + inner * grad_x_stride_inner
    channel_offsets = tl.arange(0, BLOCK_C)

    if SINGLE_PASS:
        x, channels, channel_mask, mask = _load_channels(
            x_base, channel_offsets, num_channels, x_stride_c, x_cols, position_mask, index)
        # Issued before the channel reductions: their barriers would otherwise hold this load
        # back until x's reductions are done, exposing the memory latency twice.
        grad_out = tl.load(grad_out_base + channels[:, None] * grad_out_stride_c + grad_out_cols[None, :],
                           mask=mask, other=0.0)
        if SOFTMAX_STATS:
            # The forward's (N, 2, S): the same max and 1 / sum it computed, so p is as exact.
            stats_base = softmax_stats_ptr + n * 2 * num_positions
            channel_max = tl.load(stats_base + s, mask=position_mask, other=0.0)
            inv_denominator = tl.load(stats_base + num_positions + s, mask=position_mask, other=0.0)
            e = tl.exp2((x - channel_max[None, :]) * LOG2E)
        else:
            e, inv_denominator, _ = _exp_and_inverse_sum(x)
        p, grad_p = _grad_p(e, inv_denominator, bias_ptr, channel_offsets, channel_mask, grad_out, mask, scale)
        grad_x = p * (grad_p - tl.sum(p * grad_p, axis=0)[None, :])
        tl.store(grad_x_base + channels[:, None] * grad_x_stride_c + grad_x_cols[None, :],
                 grad_x.to(grad_x_ptr.dtype.element_ty), mask=mask)
        tl.store(partial_row + channel_offsets, tl.sum(grad_p, axis=1), mask=channel_mask)
    else:
        reference, inv_denominator = _softmax_statistics(
            x_base, channel_offsets, num_channels, x_stride_c, x_cols, position_mask, index, 0,
            BLOCK_C, BLOCK_S, 1)
        dot = tl.zeros([BLOCK_S], inv_denominator.dtype)
        for c0 in range(0, num_channels, BLOCK_C):
            p, grad_p, channels, channel_mask, mask = _chunk_grad_p(
                x_base, c0 + channel_offsets, num_channels, x_stride_c, x_cols, position_mask, index,
                reference, inv_denominator, bias_ptr, grad_out_base, grad_out_stride_c, grad_out_cols, scale)
            dot += tl.sum(p * grad_p, axis=0)
            tl.store(partial_row + c0 + channel_offsets, tl.sum(grad_p, axis=1), mask=channel_mask)
        for c0 in range(0, num_channels, BLOCK_C):
            p, grad_p, channels, channel_mask, mask = _chunk_grad_p(
                x_base, c0 + channel_offsets, num_channels, x_stride_c, x_cols, position_mask, index,
                reference, inv_denominator, bias_ptr, grad_out_base, grad_out_stride_c, grad_out_cols, scale)
            tl.store(grad_x_base + channels[:, None] * grad_x_stride_c + grad_x_cols[None, :],
                     (p * (grad_p - dot[None, :])).to(grad_x_ptr.dtype.element_ty), mask=mask)
