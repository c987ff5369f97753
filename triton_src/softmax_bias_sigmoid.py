"""out = sigmoid((softmax(x, dim=1) + bias) * scale), for x of shape (N, C, *spatial).

The launcher views x as (N, C, S) where the S spatial positions of one sample are addressed
as (s // inner_size) * stride_outer + (s % inner_size) * stride_inner: every layout whose
spatial dimensions collapse into at most two strided groups (contiguous NCHW, channels_last,
a strided view such as x[..., ::2]) runs without a copy. The CONTIGUOUS variants serve the
common case, positions at stride 1 and out laid out like x, with no index arithmetic beyond
one 32-bit offset per element.

A program owns BLOCK_S spatial positions of one sample and every channel of them. When all
channels fit in one tile (SINGLE_PASS) the whole softmax stays in registers and each element
is read once; otherwise the channels are swept in BLOCK_C chunks twice, first for an online
max/sum, then for the output.

This module is read at build time only (by triton_src/aot.py); nothing imports it at run time.
"""
import triton
import triton.language as tl

KERNEL_NAME = "softmax_bias_sigmoid"

# Argument types in declaration order, formatted per variant with its dtype and constexprs;
# the C++ side packs arguments in this order at the widths the compiled kernel declares.
SIGNATURE = {
    "x_ptr": "*{dtype}",
    "bias_ptr": "*{dtype}",
    "out_ptr": "*{dtype}",
    "num_channels": "i32",
    "num_positions": "i{INDEX_BITS}",
    "inner_size": "i{INDEX_BITS}",
    "num_position_blocks": "i32",
    "x_stride_n": "i64",
    "x_stride_c": "i{INDEX_BITS}",
    "x_stride_outer": "i{INDEX_BITS}",
    "x_stride_inner": "i{INDEX_BITS}",
    "out_stride_n": "i64",
    "out_stride_c": "i{INDEX_BITS}",
    "out_stride_outer": "i{INDEX_BITS}",
    "out_stride_inner": "i{INDEX_BITS}",
    "scale": "{acc_dtype}",
}

DTYPES = ("fp32", "fp16", "bf16")


def _variant(block_c, block_s, num_warps, single_pass=True, contiguous=True, index_bits=32):
    return dict(BLOCK_C=block_c, BLOCK_S=block_s, SINGLE_PASS=int(single_pass),
                CONTIGUOUS=int(contiguous), INDEX_BITS=index_bits, num_warps=num_warps)


# (BLOCK_C, BLOCK_S, warps) of the single-pass tiles: the launcher takes the one with the
# smallest BLOCK_C that covers C. Up to 128 channels a tile holds 64 fp32 values per thread:
# on the H100 at C = 128 that was the fastest of 16..128 positions x 2..16 warps (1.14x a
# copy against 1.48x for 32 positions and 1.32x for 128 positions, 8 warps). Wider channel
# tiles hold 32 per thread, since their reductions need more registers of their own.
_SINGLE_PASS_TILES = [(4, 2048, 4), (16, 512, 4), (32, 256, 4), (64, 128, 4), (128, 64, 4),
                      (256, 16, 4), (512, 16, 8), (1024, 8, 8)]
_TWO_PASS_TILE = (64, 64, 4)

# CONTIGUOUS: x and out share their strides and a sample's positions are contiguous
# (contiguous NCHW, the common case): one 32-bit offset per element serves the load and the
# store. Otherwise the strided view, with 32-bit offsets inside a sample where they fit and
# 64-bit ones (a few tiles only: the case is rare and memory-bound anyway) where they do not.
VARIANTS = (
    [_variant(*tile) for tile in _SINGLE_PASS_TILES] + [_variant(*_TWO_PASS_TILE, single_pass=False)]
    + [_variant(*tile, contiguous=False) for tile in _SINGLE_PASS_TILES]
    + [_variant(*_TWO_PASS_TILE, single_pass=False, contiguous=False)]
    + [_variant(*tile, contiguous=False, index_bits=64) for tile in [(16, 64, 4), (128, 16, 4)]]
    + [_variant(32, 32, 4, single_pass=False, contiguous=False, index_bits=64)]
)
# float64 (gradcheck, reference work) on CUDA: correct everywhere rather than fast, so one
# tile per layout flavour and the multi-pass tile where C is larger.
VARIANTS += [dict(variant, dtypes=("fp64",)) for variant in (
    _variant(128, 32, 4), _variant(32, 32, 4, single_pass=False),
    _variant(32, 32, 4, single_pass=False, contiguous=False),
    _variant(32, 32, 4, single_pass=False, contiguous=False, index_bits=64))]

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
def _to_compute(x):
    """The type the math runs in: fp64 for fp64, else fp32 (as at::opmath_type)."""
    if x.dtype != tl.float64:
        x = x.to(tl.float32)
    return x


@triton.jit
def _load_channels(x_base, channel_offsets, num_channels, x_stride_c, x_cols, position_mask,
                   index: tl.constexpr):
    """The tile of channels `channel_offsets` at the tile's positions, in the compute type;
    -inf where masked, which the max ignores and exp2 turns into 0."""
    channel_mask = channel_offsets < num_channels
    channels = channel_offsets.to(index)
    mask = channel_mask[:, None] & position_mask[None, :]
    x = tl.load(x_base + channels[:, None] * x_stride_c + x_cols[None, :],
                mask=mask, other=-float("inf"))
    x = _to_compute(x)
    return x, channels, channel_mask, mask


@triton.jit
def _epilogue(e, inv_denominator, bias_ptr, channels, channel_mask, scale):
    bias = _to_compute(tl.load(bias_ptr + channels, mask=channel_mask, other=0.0))
    z = (e * inv_denominator[None, :] + bias[:, None]) * scale
    return 1.0 / (1.0 + tl.exp2(-z * LOG2E))


@triton.jit
def _softmax_statistics(x_base, channel_offsets, num_channels, x_stride_c, x_cols, position_mask,
                        index: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """One sweep over the channels in BLOCK_C chunks with an online max and sum: per position,
    the reference point to subtract before exp2 and 1 / sum(exp)."""
    running_max = _to_compute(tl.full([BLOCK_S], -float("inf"), x_base.dtype.element_ty))
    running_sum = _to_compute(tl.zeros([BLOCK_S], x_base.dtype.element_ty))
    for c0 in range(0, num_channels, BLOCK_C):
        x, channels, channel_mask, mask = _load_channels(
            x_base, c0 + channel_offsets, num_channels, x_stride_c, x_cols, position_mask, index)
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
def softmax_bias_sigmoid(
    x_ptr, bias_ptr, out_ptr,
    num_channels, num_positions, inner_size, num_position_blocks,
    x_stride_n, x_stride_c, x_stride_outer, x_stride_inner,
    out_stride_n, out_stride_c, out_stride_outer, out_stride_inner,
    scale,
    BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, SINGLE_PASS: tl.constexpr,
    CONTIGUOUS: tl.constexpr, INDEX_BITS: tl.constexpr,
):
    index = tl.int64 if INDEX_BITS == 64 else tl.int32
    pid = tl.program_id(0)
    n = (pid // num_position_blocks).to(tl.int64)
    s = (pid % num_position_blocks).to(index) * BLOCK_S + tl.arange(0, BLOCK_S).to(index)
    position_mask = s < num_positions
    x_base = x_ptr + n * x_stride_n
    out_base = out_ptr + n * out_stride_n
    if CONTIGUOUS:
        x_cols = s
        out_cols = s
    else:
        outer = s // inner_size
        inner = s - outer * inner_size
        x_cols = outer * x_stride_outer + inner * x_stride_inner
        out_cols = outer * out_stride_outer + inner * out_stride_inner
    channel_offsets = tl.arange(0, BLOCK_C)

    if SINGLE_PASS:
        x, channels, channel_mask, mask = _load_channels(
            x_base, channel_offsets, num_channels, x_stride_c, x_cols, position_mask, index)
        row_max = _channel_max(x)
        e = tl.exp2((x - row_max[None, :]) * LOG2E)
        inv_denominator = 1.0 / tl.sum(e, axis=0)
        y = _epilogue(e, inv_denominator, bias_ptr, channel_offsets, channel_mask, scale)
        if CONTIGUOUS:
            # Same strides: the load's offsets serve the store.
            out_offsets = channels[:, None] * x_stride_c + x_cols[None, :]
        else:
            out_offsets = channels[:, None] * out_stride_c + out_cols[None, :]
        tl.store(out_base + out_offsets, y.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        reference, inv_denominator = _softmax_statistics(
            x_base, channel_offsets, num_channels, x_stride_c, x_cols, position_mask, index,
            BLOCK_C, BLOCK_S)
        for c0 in range(0, num_channels, BLOCK_C):
            x, channels, channel_mask, mask = _load_channels(
                x_base, c0 + channel_offsets, num_channels, x_stride_c, x_cols, position_mask, index)
            e = tl.exp2((x - reference[None, :]) * LOG2E)
            y = _epilogue(e, inv_denominator, bias_ptr, c0 + channel_offsets, channel_mask, scale)
            tl.store(out_base + channels[:, None] * out_stride_c + out_cols[None, :],
                     y.to(out_ptr.dtype.element_ty), mask=mask)
