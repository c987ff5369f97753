"""out = sigmoid((softmax(conv_transpose2d(x, weight, conv_bias), dim=1) + bias) * scale), in one
pass: the convolution's output never leaves registers.

The transposed convolution runs as an implicit GEMM over output phases. Output row oh takes input
row ih through kernel row kh exactly when oh + pad = ih * stride + kh. Writing oh + pad =
stride * mh + r (r the row phase), the contributing kernel rows are kh = r + stride * t for
t < taps = ceil(K / stride), with ih = mh - t. Each phase is a small dense convolution, so no work
is spent on the zeros a strided transposed convolution inserts; columns likewise (m, r_w, t_w).
The launcher rearranges the weight once per call into `weight_ptr`: [phase (r_h, r_w)][C_out]
[tap (t_h, t_w)][C_in], zero-padded to taps * stride rows and columns, so that each GEMM's B
operand is contiguous along K.

A program owns BLOCK_M positions (mh, m) of one row phase of one sample, flattened over that
phase's rows (each padded to an even length), and all C_out channels (BLOCK_N >= C_out). GEMM M =
positions, N = channels, K = taps x C_in in BLOCK_K chunks, fp16 or bf16 operands on the tensor
cores, accumulated in fp32; the epilogue runs in fp32 and the output is stored in x's dtype. fp16
and bf16 inputs are the operands as they are. An fp32 layer (run here only where PyTorch would run
its convolution as TF32) gets x and the weight as fp16 scaled per sample and per tensor by powers
of two (fp16_operands.py, launched first): TF32's 11 significant bits, rounded to nearest, at twice
TF32's tensor-core rate and half its bytes; the epilogue undoes the scales from the same maxima.
The input element of tap (t_h, t_w) is x[mh - t_h, m - t_w] whatever the column phase, so with
W_PHASES = 2 (stride_w == 2) one A tile feeds both column phases' GEMMs and the program stores
both: 2 * BLOCK_M outputs a row segment, contiguous in NCHW. With W_PHASES = 1 (any stride) a
program owns one (row, column) phase.

The epilogue adds conv_bias, takes the softmax over the channels of each position, adds bias,
scales, applies the sigmoid and stores. BREAKDOWN is 0 in every built variant; the benchmark
compiles 1 (store the convolution plus conv_bias, no softmax tail: the main loop's cost) and
2 (skip the main loop: the epilogue's).

This module is read at build time only (by triton_src/aot.py); nothing imports it at run time.
"""
import triton
import triton.language as tl
from fp16_operands import power_of_two, scale_exponent

KERNEL_NAME = "conv_transpose2d_softmax_bias_sigmoid"

# Offsets inside one sample of x, out and the rearranged weight are 32-bit (the launcher checks
# that they fit); the sample's base offset is 64-bit.
# fp32 x and weight arrive as fp16 (OPERAND_DTYPES), with the largest finite magnitude of the
# weight at row_max_ptr[0] and of sample n of x at row_max_ptr[1 + n]; other dtypes ignore it.
SIGNATURE = {
    "x_ptr": "*{operand_dtype}",
    "weight_ptr": "*{operand_dtype}",
    "conv_bias_ptr": "*{dtype}",
    "bias_ptr": "*{dtype}",
    "out_ptr": "*{dtype}",
    "row_max_ptr": "*fp32",
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
    "groups": "i32",
    "tiles_per_group": "i32",
    "scale": "fp32",
}

DTYPES = ("fp32", "fp16", "bf16")
OPERAND_DTYPES = {"fp32": "fp16"}


def variant(w_phases, block_m, block_k, num_warps, num_stages, aligned=False, block_n=128, breakdown=0,
            dtypes=DTYPES):
    return dict(W_PHASES=w_phases, ALIGNED=int(aligned),
                BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, BREAKDOWN=breakdown,
                num_warps=num_warps, num_stages=num_stages, dtypes=dtypes)


def multiples(variant: dict, dtype: str) -> dict:
    """What an ALIGNED variant is compiled to assume (the launcher checks it per call): 16-byte
    aligned tensors and channel counts and input sizes that are multiples of 16, as the workload's
    are. It lets operand loads be 16 bytes wide and feed the tensor cores asynchronously."""
    if not variant.get("ALIGNED"):
        return {}
    return {name: 16 for name in ("x_ptr", "weight_ptr", "out_ptr", "in_channels", "in_height", "in_width",
                                  "out_channels")}


# The launcher takes the first variant (in this order) of x's dtype with the call's W_PHASES that
# its alignment allows, whose BLOCK_N holds C_out and whose image fits the GPU's shared memory per
# block. The ALIGNED one is the fastest tile of the sweep
# (`bench_conv_transpose2d_softmax_bias_sigmoid.py --sweep [--sweep-dtype fp16]`; docs/performance.md):
# 64 positions of two column phases, 4 warps (one warpgroup), two stages of 64-channel chunks (a
# half-precision tensor-core step is 16 deep, so 16-channel chunks left the loop's overhead in
# charge). Its two 64 x 128 fp32 accumulators fill most of a thread's registers, so two programs
# share an SM and one's epilogue overlaps the other's main loop. Its shared memory fits the RTX
# 4090's 99 KB per block (aot.py checks) and its registers allow two 128-thread programs an SM
# there too, so sm_89 builds the same tiles.
# The unaligned and W_PHASES = 1 (strides other than 2 across) variants take 16-channel chunks in
# three stages; they have not been timed on their own.
VARIANTS = [
    variant(w_phases=2, block_m=64, block_k=64, num_warps=4, num_stages=2, aligned=True),
    variant(w_phases=2, block_m=64, block_k=16, num_warps=4, num_stages=3),
    variant(w_phases=1, block_m=64, block_k=16, num_warps=4, num_stages=3),
]

# exp(v) = exp2(v * log2(e)): exp2 is the hardware instruction.
LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _reciprocal(x):
    """1 / x for x >= 1 as rsqrt(x) squared: one special-function op and a multiply, within a few
    ulps, without the division's range handling and Newton step (docs/performance.md). Not
    rcp.approx in inline PTX: Triton's interpreter, which runs this kernel in the tests, cannot."""
    root = tl.math.rsqrt(x)
    return root * root


@triton.jit
def _softmax_bias_sigmoid(acc, acc_log2, conv_bias_log2, bias_term, neg_scale_log2):
    """acc [BLOCK_M, BLOCK_N] the conv output without conv_bias, and acc_log2 what turns it into
    that output times log2(e) (its operands' scales undone); conv_bias_log2 = conv_bias * log2(e)
    (-inf on padded channels, which the softmax then ignores); bias_term = bias * -scale * log2(e).
    sigmoid(v) = 1 / (1 + exp2(-v log2(e))), with one division per position for the softmax."""
    logits = acc * acc_log2 + conv_bias_log2[None, :]
    e = tl.exp2(logits - tl.max(logits, axis=1)[:, None])
    weight = neg_scale_log2 / tl.sum(e, axis=1)
    return _reciprocal(1.0 + tl.exp2(e * weight[:, None] + bias_term[None, :]))


@triton.jit
def _phase_range(pad, phase_first, phase_last, stride, out_size):
    """The first phase index q (out = stride * q + r - pad) at which one of the phases r in
    [phase_first, phase_last] lands inside [0, out_size), and how many such q follow in a row.
    Numerators stay non-negative, so integer division is floor division."""
    lo = (pad - phase_last + 2 * stride - 1) // stride - 1
    hi = (out_size - 1 + pad - phase_first + stride) // stride
    return lo, tl.maximum(hi - lo, 0)


@triton.jit
def _even_pitch(cols):
    """cols rounded up to an even length, at least 2 (the launcher sizes the grid alike)."""
    return tl.maximum((cols + 1) // 2 * 2, 2)


@triton.jit
def conv_transpose2d_softmax_bias_sigmoid(
    x_ptr, weight_ptr, conv_bias_ptr, bias_ptr, out_ptr, row_max_ptr,
    in_channels, in_height, in_width, out_channels, out_height, out_width,
    stride_h, stride_w, pad_h, pad_w, taps_h, taps_w,
    groups, tiles_per_group,
    scale,
    W_PHASES: tl.constexpr, ALIGNED: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BREAKDOWN: tl.constexpr,
):
    pid = tl.program_id(0)
    tile = pid % tiles_per_group
    group = (pid // tiles_per_group) % groups
    n = pid // (tiles_per_group * groups)
    if W_PHASES == 2:
        r_h = group
        r_w = 0
    else:
        r_h = group // stride_w
        r_w = group % stride_w
    row_lo, rows = _phase_range(pad_h, r_h, r_h, stride_h, out_height)
    col_lo, cols = _phase_range(pad_w, r_w, r_w + W_PHASES - 1, stride_w, out_width)

    in_plane = in_height * in_width
    x_sample = x_ptr + n.to(tl.int64) * in_channels * in_plane
    out_plane = out_height * out_width
    out_sample = out_ptr + n.to(tl.int64) * out_channels * out_plane
    row_length = taps_h * taps_w * in_channels
    phase_size = out_channels * row_length
    w_phase0 = weight_ptr + (r_h * stride_w + r_w) * phase_size
    w_phase1 = w_phase0 + phase_size

    # Positions are flattened over rows padded to an even length, so Triton can prove each aligned
    # pair adjacent in x and coalesces the gather along positions. Left unprovable, the choice
    # falls to its default order, which triton 3.8 took along channels (then it spills).
    pitch = _even_pitch(cols)
    # Every group has the tiles of the largest; a smaller one's last few have no positions. Not
    # with W_PHASES = 1, whose registers the early return inflates (docs/performance.md).
    if W_PHASES == 2:
        if tile * BLOCK_M >= rows * pitch:
            return
    f = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    valid = f < rows * pitch
    i = f // pitch
    mh = row_lo + i
    m = col_lo + f - i * pitch

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
            ih = mh - t_h
            iw = m - t_w
            inside = valid & (ih >= 0) & (ih < in_height) & (iw >= 0) & (iw < in_width)
            x_offsets = ci[None, :] * in_plane + (ih * in_width + iw)[:, None]
            a = tl.load(x_sample + x_offsets, mask=inside[:, None] & ci_mask[None, :], other=0.0)
            w_offsets = co[None, :] * row_length + (tap * in_channels + ci)[:, None]
            w_mask = ci_mask[:, None] & co_mask[None, :]
            acc0 = tl.dot(a, tl.load(w_phase0 + w_offsets, mask=w_mask, other=0.0), acc0)
            if W_PHASES == 2:
                acc1 = tl.dot(a, tl.load(w_phase1 + w_offsets, mask=w_mask, other=0.0), acc1)

    if x_ptr.dtype.element_ty != out_ptr.dtype.element_ty:
        # fp32 on fp16 operands: the exact inverse of the weight's scale and this sample's.
        acc_scale = (power_of_two(-scale_exponent(tl.load(row_max_ptr)))
                     * power_of_two(-scale_exponent(tl.load(row_max_ptr + 1 + n))))
    else:
        acc_scale = 1.0
    conv_bias = tl.load(conv_bias_ptr + co, mask=co_mask, other=-float("inf")).to(tl.float32)
    if BREAKDOWN == 1:
        y0 = acc0 * acc_scale + conv_bias[None, :]
        y1 = acc1 * acc_scale + conv_bias[None, :]
    else:
        neg_scale_log2 = -scale * LOG2E
        bias_term = tl.load(bias_ptr + co, mask=co_mask, other=0.0).to(tl.float32) * neg_scale_log2
        y0 = _softmax_bias_sigmoid(acc0, acc_scale * LOG2E, conv_bias * LOG2E, bias_term, neg_scale_log2)
        if W_PHASES == 2:
            y1 = _softmax_bias_sigmoid(acc1, acc_scale * LOG2E, conv_bias * LOG2E, bias_term, neg_scale_log2)

    if W_PHASES == 2:
        # [BLOCK_N, 2 * BLOCK_M]: column q holds position q // 2 in column phase q % 2, so each
        # channel's outputs of one input row are one contiguous NCHW run.
        y = tl.interleave(tl.trans(y0), tl.trans(y1))
        q = tl.arange(0, 2 * BLOCK_M)
        fq = tile * BLOCK_M + q // 2
        iq = fq // pitch
        oh = stride_h * (row_lo + iq) + r_h - pad_h
        ow = 2 * (col_lo + fq - iq * pitch) + q % 2 - pad_w
        offsets = co[:, None] * out_plane + (oh * out_width + ow)[None, :]
        mask = co_mask[:, None] & ((fq < rows * pitch) & (ow >= 0) & (ow < out_width))[None, :]
    else:
        y = y0
        oh = stride_h * mh + r_h - pad_h
        ow = stride_w * m + r_w - pad_w
        offsets = co[None, :] * out_plane + (oh * out_width + ow)[:, None]
        mask = (valid & (ow < out_width))[:, None] & co_mask[None, :]  # a row's padding lies past its end
    tl.store(out_sample + offsets, y.to(out_ptr.dtype.element_ty), mask=mask)
