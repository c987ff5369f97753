"""out = sigmoid((softmax(conv_transpose2d(x, weight, conv_bias), dim=1) + bias) * scale), in one
pass: the convolution's output never leaves registers.

The transposed convolution runs as an implicit GEMM over output phases. Output row oh receives
input row ih through kernel row kh exactly when oh = ih * stride - pad + kh, so all rows of one
phase r = (oh + pad) % stride use the kernel rows kh = r + stride * t (t < taps = ceil(K / stride))
with ih = (oh + pad) // stride - t; columns likewise. Each phase is a small dense convolution, so no
work is spent on the zeros a strided transposed convolution inserts. This holds for any stride,
padding and kernel size (dilation 1, groups 1); where K is not a multiple of the stride, the
launcher zero-pads the kernel to taps * stride. The launcher rearranges the weight once per call
into `weight_ptr`: [stride_h * stride_w phases (r_h, r_w)][C_out][taps_h * taps_w taps (t_h, t_w)]
[C_in], so that the GEMM's B operand, [C_in chunk, C_out], is contiguous along K.

A program owns BLOCK_M output positions of one sample and all C_out channels (BLOCK_N >= C_out):
GEMM M = positions, N = channels, K = taps x C_in in BLOCK_K chunks, fp32 operands on TF32
tensor cores as PyTorch's own convolution does by default. The epilogue adds conv_bias, takes the
softmax over the channels of each position, adds bias, scales and applies the sigmoid, then stores.

Two tilings (PAIRED):
- PAIRED=1, stride_w == 2: a program owns BLOCK_M column pairs (2j, 2j + 1) of one output row,
  accumulates both column phases (two GEMMs sharing the row's phase) and interleaves them, so
  each channel's 2 * BLOCK_M outputs are stored as one contiguous NCHW run. It covers whole
  pairs, output columns [col_start, col_end) with col_end - col_start even.
- PAIRED=0, any stride: a program owns BLOCK_M positions of one phase (oh0, ow0) of the output,
  flattened over that phase's rows and its columns in [col_start, col_end); stores are strided.
  It serves general strides, and the last column of an odd-width output after a PAIRED launch.

BREAKDOWN is 0 in every built variant; the benchmark compiles 1 (store the convolution, conv_bias
added, without the softmax tail: the main loop's cost) and 2 (skip the main loop: the epilogue's).

This module is read at build time only (by triton_src/aot.py); nothing imports it at run time.
"""
import triton
import triton.language as tl

KERNEL_NAME = "conv_transpose2d_softmax_bias_sigmoid"

# Offsets inside one sample of x, out and the rearranged weight are 32-bit (the launcher checks
# that they fit); the sample's base offset is 64-bit.
SIGNATURE = {
    "x_ptr": "*{dtype}",
    "weight_ptr": "*{dtype}",
    "conv_bias_ptr": "*{dtype}",
    "bias_ptr": "*{dtype}",
    "out_ptr": "*{dtype}",
    "in_channels": "i32",
    "in_height": "i32",
    "in_width": "i32",
    "out_channels": "i32",
    "out_height": "i32",
    "out_width": "i32",
    "stride_h": "i32",
    "stride_w": "i32",
    "pad_h": "i32",
    "pad_w": "i32",
    "taps_h": "i32",
    "taps_w": "i32",
    "col_start": "i32",
    "col_end": "i32",
    "tiles_per_group": "i32",
    "tiles_per_sample": "i32",
    "scale": "fp32",
}

DTYPES = ("fp32",)


def variant(paired, block_m, block_n, block_k, num_warps, num_stages, aligned=False, breakdown=0):
    return dict(PAIRED=int(paired), ALIGNED=int(aligned), BLOCK_M=block_m, BLOCK_N=block_n,
                BLOCK_K=block_k, BREAKDOWN=breakdown, num_warps=num_warps, num_stages=num_stages)


def multiples(variant: dict, dtype: str) -> dict:
    """What an ALIGNED variant is compiled to assume (the launcher checks it per call): 16-byte
    aligned tensors and channel counts and input sizes that are multiples of 16, as the workload's
    are. It lets operand loads be 16 bytes wide and feed the tensor cores asynchronously."""
    if not variant.get("ALIGNED"):
        return {}
    return {name: 16 for name in ("x_ptr", "weight_ptr", "out_ptr", "in_channels", "in_height", "in_width",
                                  "out_channels")}


# The launcher takes, for each tiling, the first variant (in this order) that the call's
# alignment allows, whose BLOCK_N holds C_out and whose image fits the GPU's shared memory per
# block. PAIRED: 64 column pairs, 8 warps, four stages of 16-channel chunks: the fastest of 19
# tiles swept on the H100 (benchmarks/bench_conv_transpose2d_softmax_bias_sigmoid.py: 1.86 ms,
# against 2.09 to 4.1 ms for 32 or 128 pairs, 32- or 64-channel chunks, 2 to 4 stages). Its
# 96 KB of shared memory on sm_90 fits the RTX 4090's 99 KB per block too (aot.py checks).
# Two stages for a GPU with less shared memory. The per-phase tile (general strides, the odd
# last column): 128 positions, 32-channel chunks, three stages (2.08 ms alone on the workload).
VARIANTS = [
    variant(paired=True, block_m=64, block_n=128, block_k=16, num_warps=8, num_stages=4, aligned=True),
    variant(paired=True, block_m=64, block_n=128, block_k=16, num_warps=8, num_stages=4),
    variant(paired=True, block_m=64, block_n=128, block_k=16, num_warps=8, num_stages=2),
    variant(paired=False, block_m=128, block_n=128, block_k=32, num_warps=8, num_stages=3, aligned=True),
    variant(paired=False, block_m=128, block_n=128, block_k=32, num_warps=8, num_stages=3),
]

# exp(v) = exp2(v * log2(e)): exp2 is the hardware instruction.
LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _load_x(x_sample, ci, ci_mask, ih, iw, in_height, in_width, valid):
    """The A operand: x at input positions (ih, iw) [BLOCK_M] and channels ci [BLOCK_K]; zero where
    the position falls outside the input (those taps do not contribute)."""
    inside = valid & (ih >= 0) & (ih < in_height) & (iw >= 0) & (iw < in_width)
    offsets = ci[None, :] * (in_height * in_width) + (ih * in_width + iw)[:, None]
    return tl.load(x_sample + offsets, mask=inside[:, None] & ci_mask[None, :], other=0.0)


@triton.jit
def _load_weight(w_phase, ci, ci_mask, co, co_mask, tap, in_channels, row_length):
    """The B operand: [BLOCK_K input channels, BLOCK_N output channels] of one tap of one phase."""
    offsets = co[None, :] * row_length + (tap * in_channels + ci)[:, None]
    return tl.load(w_phase + offsets, mask=ci_mask[:, None] & co_mask[None, :], other=0.0)


@triton.jit
def _softmax_bias_sigmoid(acc, conv_bias_log2, bias_term, neg_scale_log2):
    """acc [BLOCK_M, BLOCK_N] conv output without conv_bias; conv_bias_log2 = conv_bias * log2(e)
    (-inf on padded channels, which the softmax then ignores); bias_term = bias * -scale * log2(e).
    sigmoid(v) = 1 / (1 + exp2(-v log2(e))), with one division per position for the softmax."""
    logits = acc * LOG2E + conv_bias_log2[None, :]
    e = tl.exp2(logits - tl.max(logits, axis=1)[:, None])
    weight = neg_scale_log2 / tl.sum(e, axis=1)
    return tl.math.fdiv(1.0, 1.0 + tl.exp2(e * weight[:, None] + bias_term[None, :]))


@triton.jit
def conv_transpose2d_softmax_bias_sigmoid(
    x_ptr, weight_ptr, conv_bias_ptr, bias_ptr, out_ptr,
    in_channels, in_height, in_width, out_channels, out_height, out_width,
    stride_h, stride_w, pad_h, pad_w, taps_h, taps_w,
    col_start, col_end, tiles_per_group, tiles_per_sample,
    scale,
    PAIRED: tl.constexpr, ALIGNED: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr, BREAKDOWN: tl.constexpr,
):
    pid = tl.program_id(0)
    n = pid // tiles_per_sample
    group = (pid % tiles_per_sample) // tiles_per_group
    tile = pid % tiles_per_group
    x_sample = x_ptr + n.to(tl.int64) * in_channels * in_height * in_width
    out_plane = out_height * out_width
    out_sample = out_ptr + n.to(tl.int64) * out_channels * out_plane
    row_length = taps_h * taps_w * in_channels
    phase_size = out_channels * row_length

    rows = tl.arange(0, BLOCK_M)
    if PAIRED:
        # group = the output row; column pair j holds output columns col_start + 2j and + 2j + 1.
        oh = group
        ih_base = (oh + pad_h) // stride_h
        w_row = weight_ptr + ((oh + pad_h) % stride_h) * 2 * phase_size
        j = tile * BLOCK_M + rows
        ow0 = col_start + 2 * j
        valid = ow0 < col_end
        iw_base0 = (ow0 + pad_w) // 2
        iw_base1 = (ow0 + 1 + pad_w) // 2
        w_phase0 = w_row + ((col_start + pad_w) % 2) * phase_size
        w_phase1 = w_row + ((col_start + 1 + pad_w) % 2) * phase_size
        ih = ih_base
    else:
        # group = the phase (first output row oh0, first output column ow0 of the phase).
        oh0 = group // stride_w
        ow0_phase = group % stride_w
        phase_rows = tl.cdiv(out_height - oh0, stride_h)
        first_col = tl.cdiv(col_start - ow0_phase, stride_w)
        phase_cols = tl.maximum(tl.cdiv(col_end - ow0_phase, stride_w) - first_col, 0)
        m = tile * BLOCK_M + rows
        i = m // tl.maximum(phase_cols, 1)
        jj = first_col + m - i * phase_cols
        valid = m < phase_rows * phase_cols
        oh = oh0 + stride_h * i
        ow0 = ow0_phase + stride_w * jj
        ih = (oh + pad_h) // stride_h
        iw_base0 = (ow0 + pad_w) // stride_w
        w_phase0 = weight_ptr + (((oh0 + pad_h) % stride_h) * stride_w
                                 + (ow0_phase + pad_w) % stride_w) * phase_size
        ih_base = ih

    co = tl.arange(0, BLOCK_N)
    co_mask = co < out_channels
    acc0 = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    acc1 = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    if BREAKDOWN != 2:
        cin_blocks = tl.cdiv(in_channels, BLOCK_K)
        for step in range(0, taps_h * taps_w * cin_blocks):
            tap = step // cin_blocks
            ci = (step - tap * cin_blocks) * BLOCK_K + tl.arange(0, BLOCK_K)
            ci_mask = ci < in_channels
            t_h = tap // taps_w
            t_w = tap - t_h * taps_w
            ih = ih_base - t_h
            a0 = _load_x(x_sample, ci, ci_mask, ih, iw_base0 - t_w, in_height, in_width, valid)
            b0 = _load_weight(w_phase0, ci, ci_mask, co, co_mask, tap, in_channels, row_length)
            acc0 = tl.dot(a0, b0, acc0, input_precision="tf32")
            if PAIRED:
                a1 = _load_x(x_sample, ci, ci_mask, ih, iw_base1 - t_w, in_height, in_width,
                             valid)
                b1 = _load_weight(w_phase1, ci, ci_mask, co, co_mask, tap, in_channels,
                                  row_length)
                acc1 = tl.dot(a1, b1, acc1, input_precision="tf32")

    conv_bias = tl.load(conv_bias_ptr + co, mask=co_mask, other=-float("inf")).to(tl.float32)
    if BREAKDOWN == 1:
        y0 = acc0 + conv_bias[None, :]
        y1 = acc1 + conv_bias[None, :]
    else:
        neg_scale_log2 = -scale * LOG2E
        bias_term = tl.load(bias_ptr + co, mask=co_mask, other=0.0).to(tl.float32) * neg_scale_log2
        y0 = _softmax_bias_sigmoid(acc0, conv_bias * LOG2E, bias_term, neg_scale_log2)
        y1 = _softmax_bias_sigmoid(acc1, conv_bias * LOG2E, bias_term, neg_scale_log2)

    if PAIRED:
        # [BLOCK_N, 2 * BLOCK_M]: channel rows of contiguous output columns.
        y = tl.interleave(tl.trans(y0), tl.trans(y1))
        ow = col_start + 2 * tile * BLOCK_M + tl.arange(0, 2 * BLOCK_M)
        offsets = co[:, None] * out_plane + (oh * out_width + ow)[None, :]
        mask = co_mask[:, None] & (ow < col_end)[None, :]
    else:
        y = y0
        offsets = co[None, :] * out_plane + (oh * out_width + ow0)[:, None]
        mask = valid[:, None] & co_mask[None, :]
    tl.store(out_sample + offsets, y.to(out_ptr.dtype.element_ty), mask=mask)
