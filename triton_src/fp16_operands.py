"""fp32 tensors as fp16 operands for the fused layer's tensor cores: each row (a sample of x, or
the whole rearranged weight) times the power of two that puts its largest finite magnitude in
[2^14, 2^15). Two launches a row set, one per variant: the rows' largest finite magnitudes
(atomic maxima into a zeroed fp32 buffer), then the conversion.

An fp16 operand keeps 11 significant bits, as TF32 does, rounded to nearest; the scale gives
each row 29 binades of full precision below its largest value (an element smaller than that
keeps an absolute error within 2^-40 of it), and fp32 accumulation of products up to 2^30 cannot
overflow. Non-finite elements do not set the scale and stay inf or NaN, so they spoil only the
outputs they reach, as in an fp32 convolution. The fused kernel undoes both rows' scales with
`power_of_two(-exponent)` of the same maxima, exactly.

This module is read at build time only (by triton_src/aot.py); nothing imports it at run time.
"""
import triton
import triton.language as tl

KERNEL_NAME = "fp16_operands"

SIGNATURE = {
    "src_ptr": "*fp32",
    "row_max_ptr": "*fp32",
    "dst_ptr": "*fp16",
    "row_length": "i32",
}

DTYPES = ("fp32",)

# A program reads BLOCK elements of one row (a 1-D grid, rows after rows: CUDA bounds a grid's
# other axes at 65535). ALIGNED rows (16-byte aligned tensors, row lengths
# a multiple of 16) load and store 16 bytes a thread at a time.
VARIANTS = [dict(CONVERT=convert, ALIGNED=aligned, BLOCK=4096, num_warps=8)
            for convert in (0, 1) for aligned in (1, 0)]


def multiples(variant: dict, dtype: str) -> dict:
    if not variant["ALIGNED"]:
        return {}
    return {"src_ptr": 16, "row_length": 16, **({"dst_ptr": 16} if variant["CONVERT"] else {})}


def unread_arguments(variant: dict):
    return () if variant["CONVERT"] else ("dst_ptr",)


@triton.jit
def power_of_two(exponent):
    """2^exponent exactly, for an integer exponent in [-126, 127] (fp32's normal range)."""
    return ((exponent + 127) << 23).to(tl.float32, bitcast=True)


@triton.jit
def scale_exponent(row_max):
    """The k with row_max * 2^k in [2^14, 2^15): a binade below fp16's largest, so that rounding
    never reaches infinity. Zero and subnormal maxima (no scale needed) are clamped to 2^126."""
    exponent = ((row_max.to(tl.int32, bitcast=True) >> 23) & 0xFF) - 127
    return 14 - tl.minimum(tl.maximum(exponent, -112), 127)


@triton.jit
def fp16_operands(src_ptr, row_max_ptr, dst_ptr, row_length,
                  CONVERT: tl.constexpr, ALIGNED: tl.constexpr, BLOCK: tl.constexpr):
    chunks = tl.cdiv(row_length, BLOCK)
    row = tl.program_id(0) // chunks
    offsets = (tl.program_id(0) - row * chunks) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < row_length
    start = row.to(tl.int64) * row_length
    values = tl.load(src_ptr + start + offsets, mask=mask, other=0.0)
    if CONVERT:
        scale = power_of_two(scale_exponent(tl.load(row_max_ptr + row)))
        tl.store(dst_ptr + start + offsets, (values * scale).to(tl.float16), mask=mask)
    else:
        magnitude = tl.abs(values)
        # NaN fails the comparison too: neither NaN nor infinity sets the scale.
        tl.atomic_max(row_max_ptr + row, tl.max(tl.where(magnitude < float("inf"), magnitude, 0.0), axis=0),
                      sem="relaxed")
