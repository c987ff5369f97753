"""out = sigmoid((softmax(x, dim=1) + bias) * scale), for x of shape (N, C, *spatial).

The launcher views x as (N, C, S) where the S spatial positions of one sample are addressed
as (s // S_INNER) * stride_outer + (s % S_INNER) * stride_inner: every layout whose spatial
dimensions collapse into at most two strided groups (contiguous NCHW, channels_last, a
strided view such as x[..., ::2]) runs without a copy.

A program owns BLOCK_S spatial positions of one sample and every channel of them. When all
channels fit in one tile (SINGLE_PASS) the whole softmax stays in registers and each element
is read once; otherwise the channels are swept in BLOCK_C chunks twice, first for an online
max/sum, then for the output.

This module is read at build time only (by triton_src/aot.py); nothing imports it at run time.
"""
import triton
import triton.language as tl

KERNEL_NAME = "softmax_bias_sigmoid"

# Argument types in declaration order. The pointer dtype is filled in per variant; the C++
# launcher packs arguments in exactly this order and the build checks the compiled parameter
# list against it.
SIGNATURE = {
    "x_ptr": "*{dtype}",
    "bias_ptr": "*{dtype}",
    "out_ptr": "*{dtype}",
    "num_channels": "i32",
    "num_positions": "i64",
    "inner_size": "i64",
    "num_position_blocks": "i32",
    "x_stride_n": "i64",
    "x_stride_c": "i64",
    "x_stride_outer": "i64",
    "x_stride_inner": "i64",
    "out_stride_n": "i64",
    "out_stride_c": "i64",
    "out_stride_outer": "i64",
    "out_stride_inner": "i64",
    "scale": "fp32",
}

DTYPES = ("fp32", "fp16", "bf16")


def _single_pass(block_c, block_s, num_warps):
    return dict(BLOCK_C=block_c, BLOCK_S=block_s, SINGLE_PASS=1, num_warps=num_warps)


# One tile holds BLOCK_C x BLOCK_S fp32 values; 8192 over 128 threads is 64 registers of data
# per thread, which leaves room for the exponentials without spilling. The channel count picks
# the smallest single-pass tile that covers it; past 1024 channels the two-pass variant runs.
VARIANTS = [
    _single_pass(1, 1024, 4),
    _single_pass(2, 1024, 4),
    _single_pass(4, 1024, 4),
    _single_pass(8, 512, 4),
    _single_pass(16, 256, 4),
    _single_pass(32, 128, 4),
    _single_pass(64, 128, 4),
    _single_pass(128, 64, 4),
    _single_pass(256, 32, 4),
    _single_pass(512, 16, 8),
    _single_pass(1024, 8, 8),
    dict(BLOCK_C=64, BLOCK_S=64, SINGLE_PASS=0, num_warps=4),
]

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
def _positions(block_start, num_positions, inner_size,
               x_stride_outer, x_stride_inner, out_stride_outer, out_stride_inner,
               BLOCK_S: tl.constexpr):
    s = block_start + tl.arange(0, BLOCK_S).to(tl.int64)
    outer = s // inner_size
    inner = s - outer * inner_size
    x_offsets = outer * x_stride_outer + inner * x_stride_inner
    out_offsets = outer * out_stride_outer + inner * out_stride_inner
    return x_offsets, out_offsets, s < num_positions


@triton.jit
def _epilogue(e, inv_denominator, bias_ptr, channels, channel_mask, scale):
    bias = tl.load(bias_ptr + channels, mask=channel_mask, other=0.0).to(tl.float32)
    z = (e * inv_denominator[None, :] + bias[:, None]) * scale
    return 1.0 / (1.0 + tl.exp2(-z * LOG2E))


@triton.jit
def softmax_bias_sigmoid(
    x_ptr, bias_ptr, out_ptr,
    num_channels, num_positions, inner_size, num_position_blocks,
    x_stride_n, x_stride_c, x_stride_outer, x_stride_inner,
    out_stride_n, out_stride_c, out_stride_outer, out_stride_inner,
    scale,
    BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, SINGLE_PASS: tl.constexpr,
):
    pid = tl.program_id(0)
    n = (pid // num_position_blocks).to(tl.int64)
    block_start = (pid % num_position_blocks).to(tl.int64) * BLOCK_S
    x_cols, out_cols, position_mask = _positions(
        block_start, num_positions, inner_size,
        x_stride_outer, x_stride_inner, out_stride_outer, out_stride_inner, BLOCK_S)
    x_base = x_ptr + n * x_stride_n
    out_base = out_ptr + n * out_stride_n
    channel_offsets = tl.arange(0, BLOCK_C)

    if SINGLE_PASS:
        channel_mask = channel_offsets < num_channels
        mask = channel_mask[:, None] & position_mask[None, :]
        channels = channel_offsets.to(tl.int64)
        x = tl.load(x_base + channels[:, None] * x_stride_c + x_cols[None, :],
                    mask=mask, other=-float("inf")).to(tl.float32)
        row_max = _channel_max(x)
        e = tl.exp2((x - row_max[None, :]) * LOG2E)
        inv_denominator = 1.0 / tl.sum(e, axis=0)
        y = _epilogue(e, inv_denominator, bias_ptr, channel_offsets, channel_mask, scale)
        tl.store(out_base + channels[:, None] * out_stride_c + out_cols[None, :],
                 y.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        running_max = tl.full([BLOCK_S], -float("inf"), tl.float32)
        running_sum = tl.zeros([BLOCK_S], tl.float32)
        for c0 in range(0, num_channels, BLOCK_C):
            channel_mask = (c0 + channel_offsets) < num_channels
            channels = (c0 + channel_offsets).to(tl.int64)
            x = tl.load(x_base + channels[:, None] * x_stride_c + x_cols[None, :],
                        mask=channel_mask[:, None] & position_mask[None, :],
                        other=-float("inf")).to(tl.float32)
            new_max = _max_propagating_nan(running_max, _channel_max(x))
            # A column that has seen only -inf so far keeps a finite reference point, so that
            # exp2(-inf - -inf) never turns its running sum into NaN.
            reference = tl.where(new_max == -float("inf"), 0.0, new_max)
            running_sum = (running_sum * tl.exp2((running_max - reference) * LOG2E)
                           + tl.sum(tl.exp2((x - reference[None, :]) * LOG2E), axis=0))
            running_max = new_max
        reference = tl.where(running_max == -float("inf"), 0.0, running_max)
        inv_denominator = 1.0 / running_sum
        for c0 in range(0, num_channels, BLOCK_C):
            channel_mask = (c0 + channel_offsets) < num_channels
            channels = (c0 + channel_offsets).to(tl.int64)
            mask = channel_mask[:, None] & position_mask[None, :]
            x = tl.load(x_base + channels[:, None] * x_stride_c + x_cols[None, :],
                        mask=mask, other=-float("inf")).to(tl.float32)
            e = tl.exp2((x - reference[None, :]) * LOG2E)
            y = _epilogue(e, inv_denominator, bias_ptr, c0 + channel_offsets, channel_mask, scale)
            tl.store(out_base + channels[:, None] * out_stride_c + out_cols[None, :],
                     y.to(out_ptr.dtype.element_ty), mask=mask)
