"""Sums of the columns of a (rows, columns) row-major buffer, in chunks of rows: one row of
sums per chunk. The backward's launcher (csrc/ops/softmax_bias_sigmoid_backward.cpp) reduces the
bias gradient's partial sums with it, one launch per level, until one row is left; the order of
the additions depends on the shape alone, so the result is deterministic.

ATen's sum over the rows of such a buffer is slow where it is tall and narrow, several times a
copy's time for the workload's 66688 x 128 fp32 partial sums (docs/performance.md).

This module is read at build time only (by triton_src/aot.py); nothing imports it at run time.
"""
import triton
import triton.language as tl

KERNEL_NAME = "column_sums"

SIGNATURE = {
    "rows_ptr": "*{dtype}",
    "sums_ptr": "*{dtype}",
    "num_rows": "i32",
    "num_columns": "i32",
    "rows_per_program": "i32",
}

DTYPES = ("fp32", "fp64")

# A program adds up rows_per_program rows of BLOCK_C columns, BLOCK_R rows at a time.
VARIANTS = [dict(BLOCK_R=32, BLOCK_C=128, num_warps=4)]


@triton.jit
def column_sums(rows_ptr, sums_ptr, num_rows, num_columns, rows_per_program,
                BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    column_blocks = tl.cdiv(num_columns, BLOCK_C)
    chunk = tl.program_id(0) // column_blocks
    columns = (tl.program_id(0) - chunk * column_blocks) * BLOCK_C + tl.arange(0, BLOCK_C)
    column_mask = columns < num_columns
    first_row = chunk * rows_per_program
    end_row = tl.minimum(first_row + rows_per_program, num_rows)
    total = tl.zeros([BLOCK_R, BLOCK_C], sums_ptr.dtype.element_ty)
    for row0 in range(first_row, end_row, BLOCK_R):
        rows = row0 + tl.arange(0, BLOCK_R)
        mask = (rows < end_row)[:, None] & column_mask[None, :]
        total += tl.load(rows_ptr + rows.to(tl.int64)[:, None] * num_columns + columns[None, :], mask=mask,
                         other=0.0)
    tl.store(sums_ptr + chunk.to(tl.int64) * num_columns + columns, tl.sum(total, axis=0), mask=column_mask)
