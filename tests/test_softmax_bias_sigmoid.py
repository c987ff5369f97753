"""fused::softmax_bias_sigmoid against a float64 CPU reference, on the CPU and on CUDA."""
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys

import pytest
import torch

import fused_ops
from conftest import (MAX_SAMPLES_ON_AXIS_1, SMALL_TENSOR_BYTES, assert_matches_reference, make_inputs,
                      past_small_tensors, poison_cuda_allocator)
from samples import (DENSE_LAYOUTS, ending_its_storage, last_element_offset, layouts, softmax_bias_sigmoid_samples,
                     to_device)

op = torch.ops.fused.softmax_bias_sigmoid.default

SHAPES = [
    (2, 1, 5, 5),        # C = 1: softmax is 1 everywhere
    (3, 7, 9, 11),       # odd sizes
    (2, 64, 16, 16),
    (2, 128, 17, 19),    # the workload's channel count, odd spatial size
    (4, 5, 33),          # rank 3
    (2, 3, 4, 5, 6),     # rank 5
    (5, 1000),           # rank 2: no spatial positions
    (2, 1500, 3, 3),     # more channels than one tile: the two-pass kernel on CUDA
]
SCALES = [2.0, 1.0, -0.75]


def test_schema():
    assert str(op._schema) == "fused::softmax_bias_sigmoid(Tensor x, Tensor bias, float scale) -> Tensor"


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_matches_reference(shape, scale, dtype):
    x, bias = make_inputs(shape, dtype, "cpu")
    assert_matches_reference(fused_ops.softmax_bias_sigmoid(x, bias, scale), x, bias, scale)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpu_half_precision(dtype):
    x, bias = make_inputs((2, 24, 7, 9), dtype, "cpu")
    assert_matches_reference(op(x, bias, 2.0), x, bias, 2.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_samples_match_reference(device, dtype):
    """Every sample (tests/samples.py: each shape in each layout) against float64, and dense
    layouts keep their strides."""
    for name, x, bias in softmax_bias_sigmoid_samples(dtype):
        view = to_device(x, device)
        out = op(view, bias.to(device), -1.5)
        try:
            assert_matches_reference(out, view, bias.to(device), -1.5)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None
        if name.rsplit(" ", 1)[1] in DENSE_LAYOUTS:
            assert out.stride() == view.stride(), f"{name}: output does not keep the input's layout"


def test_five_dim_layout_needing_a_copy():
    x, bias = make_inputs((2, 6, 4, 5, 7), torch.float32, "cpu")
    view = x.permute(0, 1, 3, 4, 2)[:, :, ::2, :, ::3]
    assert_matches_reference(op(view, bias, 2.0), view, bias, 2.0)


def test_bias_shapes():
    x, _ = make_inputs((2, 6, 4, 4), torch.float32, "cpu")
    values = torch.randn(6)
    for bias in (values, values.reshape(6, 1, 1), values.reshape(1, 6, 1, 1), values.reshape(2, 3)):
        assert_matches_reference(op(x, bias, 2.0), x, values, 2.0)


def test_empty_tensors():
    for shape in [(0, 4, 3, 3), (2, 4, 0, 3), (2, 0, 3)]:
        x = torch.randn(shape)
        out = op(x, torch.randn(shape[1]), 2.0)
        assert out.shape == x.shape


@pytest.mark.parametrize("make, message", [
    (lambda: (torch.randn(5), torch.randn(5)), "at least 2 dimensions"),
    (lambda: (torch.randn(2, 4, 3), torch.randn(5)), r"one value per channel: x has shape \[2, 4, 3\] .* bias has shape \[5\]"),
    (lambda: (torch.ones(2, 4, dtype=torch.int64), torch.ones(4, dtype=torch.int64)), "got Long"),
    (lambda: (torch.ones(2, 4, dtype=torch.bool), torch.ones(4, dtype=torch.bool)), "got Bool"),
    (lambda: (torch.randn(2, 4), torch.randn(4, dtype=torch.float16)), "bias must have the dtype of x"),
    (lambda: (torch.randn(2, 4, dtype=torch.complex64), torch.randn(4, dtype=torch.complex64)), "got ComplexFloat"),
    (lambda: (torch.randn(2, 4).to_sparse(), torch.randn(4)), "dense"),
])
def test_invalid_inputs_name_the_problem(make, message):
    x, bias = make()
    with pytest.raises(RuntimeError, match=message):
        op(x, bias, 2.0)


@pytest.mark.cuda
def test_mixed_devices_name_the_problem():
    with pytest.raises(RuntimeError, match="x is on cuda:0 but bias is on cpu"):
        op(torch.randn(2, 4, device="cuda"), torch.randn(4), 2.0)


def test_meta_matches_cpu_layout():
    x = torch.randn(2, 8, 5, 5).to(memory_format=torch.channels_last)
    out = op(x.to("meta"), torch.randn(8, device="meta"), 2.0)
    assert out.device.type == "meta" and out.shape == x.shape and out.stride() == op(x, torch.randn(8), 2.0).stride()


def test_library_holds_sm89_and_sm90_cubins_and_sm89_ptx():
    images = fused_ops.kernel_images()
    variants = {line.rsplit(": ", 1)[0] for line in images}
    assert variants, "the library holds no kernel images"
    for variant in variants:
        for image in ("sm_89 cubin", "sm_90 cubin", "sm_89 PTX"):
            assert f"{variant}: {image}" in images, f"{variant} has no {image}"
    # The images are real: the library file itself carries the sm_89 PTX text.
    with open(fused_ops.library_path(), "rb") as library:
        assert b".target sm_89" in library.read()


# --- CUDA ------------------------------------------------------------------------------

CUDA_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def run_on_poisoned_memory(x, bias, scale):
    """The op on CUDA with its output allocated where NaN was just written, so that an element it
    leaves unwritten fails the float64 reference check; returns the output."""
    poison_cuda_allocator(x.numel() * x.element_size())
    out = op(x, bias, scale)
    torch.cuda.synchronize()
    assert_matches_reference(out, x, bias, scale)
    return out


@pytest.mark.cuda
@pytest.mark.parametrize("shape", SHAPES + [(1, 4096, 5), (2, 32768, 2)], ids=str)
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
def test_cuda_matches_reference(shape, dtype):
    scale = SCALES[hash(shape) % len(SCALES)]
    x, bias = make_inputs(shape, dtype, "cuda")
    run_on_poisoned_memory(x, bias, scale)


def misaligned(x: torch.Tensor) -> torch.Tensor:
    """The same values, stored one element past a 16-byte boundary."""
    storage = torch.empty(x.numel() + 1, dtype=x.dtype, device=x.device)
    view = storage[1:].view(x.shape)
    view.copy_(x)
    return view


# One case per kernel flavour the launcher picks between (triton_src/softmax_bias_sigmoid_flavours.py):
# rows that start on 16 bytes take the aligned variants, the rest the unaligned ones; unaligned
# fp16/bf16 NCHW tiles also have a twin for C a multiple of 16 (32, 2000; not 40).
FLAVOUR_CASES = {
    "nchw aligned": lambda x: x,
    "nchw rows of 56 positions": lambda x: x[..., :7, :8].contiguous(),  # 16-byte rows, not 16 elements
    "nchw odd rows": lambda x: x[..., :-1].contiguous(),
    "nchw misaligned pointer": misaligned,
    "channels_last aligned": lambda x: x.to(memory_format=torch.channels_last),
    "channels_last odd C": lambda x: x[:, :-3].contiguous(memory_format=torch.channels_last),
    "channels_last C = 8 (mod 16)": lambda x: x[:, :-8].contiguous(memory_format=torch.channels_last),
    "channels_last misaligned pointer": lambda x: misaligned(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2),
    "1x1 spatial": lambda x: x[..., :1, :1].contiguous(),
    "strided": lambda x: x[..., ::2],  # out, allocated contiguous, is written at stride 1
    "transposed spatial dims": lambda x: x.transpose(2, 3),  # dense: out keeps x's strides
}


def flavour_case_shape(channels):
    """A 4-D shape with C channels for the layout cases: fewer positions where C is large."""
    return (2, channels, 4, 8) if channels > 1000 else (3, channels, 8, 16)


@pytest.mark.cuda
@pytest.mark.parametrize("channels", [32, 40, 2000, 20000])
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
@pytest.mark.parametrize("flavour", FLAVOUR_CASES)
def test_cuda_layout_flavours(flavour, dtype, channels):
    """x past the small-tensor tiles, in each layout; test_cuda_small_tensors has those tiles."""
    base, _ = make_inputs(past_small_tensors(flavour_case_shape(channels), dtype), dtype, "cuda")
    x = FLAVOUR_CASES[flavour](base)
    bias = torch.randn(x.shape[1], dtype=torch.float64).to("cuda", dtype)
    out = run_on_poisoned_memory(x, bias, -1.5)
    if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
        assert out.stride() == x.stride(), f"{flavour}: output does not keep the input's layout"


def explained_flavour(x, bias):
    """The flavour fused_ops.explain names, and its whole text."""
    text = fused_ops.explain(x, bias)
    assert "; flavour " in text, text
    return text.split("; flavour ")[1].split(";")[0], text


# The flavour each layout takes (triton_src/softmax_bias_sigmoid_flavours.py), where the tile
# table may decide between some (odd NCHW rows: whole-sector stores or not, exact C or not).
EXPLAINED_FLAVOURS = {
    "nchw aligned": {"nchw_aligned"},
    "nchw misaligned pointer": {"nchw", "nchw_exact", "nchw_sector", "nchw_sector_exact"},
    "channels_last aligned": {"channels_last_aligned"},
    "channels_last odd C": {"channels_last"},
    "strided": {"strided_span"},
    "transposed spatial dims": {"strided"},
}
# Meta tensors stand for CUDA tensors of their layout: the choice is checked without a GPU too.
NEEDS_CUDA_KERNELS = pytest.mark.skipif(not any(" sm_" in line for line in fused_ops.kernel_images()),
                                        reason="this build of fused_ops has no CUDA kernels")
EXPLAIN_DEVICES = [pytest.param("meta", marks=NEEDS_CUDA_KERNELS), pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.mark.parametrize("device", EXPLAIN_DEVICES)
@pytest.mark.parametrize("flavour", EXPLAINED_FLAVOURS)
def test_explain_names_the_layout_flavour(flavour, device):
    # Rows of 1024 positions: x[..., ::2]'s inner groups of 512 hold whole span tiles.
    x = FLAVOUR_CASES[flavour](torch.zeros(past_small_tensors((2, 32, 2, 1024), torch.float32), device=device))
    name, text = explained_flavour(x, torch.zeros(x.shape[1], device=device))
    assert text.startswith("softmax_bias_sigmoid fp32 ") and ("(sm_" in text) == (device == "cuda"), text
    assert name in EXPLAINED_FLAVOURS[flavour], text


@NEEDS_CUDA_KERNELS
def test_explain_gives_the_reasons_and_the_copy():
    x = misaligned(torch.empty(past_small_tensors((2, 32, 2, 1024), torch.float32), device="meta"))
    _, text = explained_flavour(x, torch.empty(32, device="meta"))
    assert "nchw_aligned (needs nchw_rows_aligned)" in text, text
    five_d = torch.empty(2, 8, 4, 4, 4, device="meta")[:, :, ::2, ::2, ::2]
    assert fused_ops.explain(five_d, torch.empty(8, device="meta")).endswith(
        "on a contiguous copy of x (its spatial strides need more than two groups)")


@NEEDS_CUDA_KERNELS
def test_explain_64_bit_offsets_and_small_tensors():
    """A sample past 2**31 elements takes the 64-bit strided flavour; a tensor of at most 1 MB the
    tiles tuned for those, on meta tensors, which cost no memory."""
    huge = torch.empty(1, 64, 2**14, 2**14 + 1, device="meta")
    assert explained_flavour(huge, torch.empty(64, device="meta"))[0] == "strided_index64"
    small = torch.empty(2, 16, 8, 8, device="meta")
    assert explained_flavour(small, torch.empty(16, device="meta"))[0] in {"nchw_aligned_small_tensor", "nchw_small_tensor"}


@pytest.mark.parametrize("device", EXPLAIN_DEVICES)
def test_explain_the_workload_rows_and_the_split(device):
    """The workload's odd 129 x 129 rows take whole-sector stores; C = 32768 in NCHW, beyond
    every single-pass tile, the split kernel's two launches; float64 its own variant."""
    x = torch.zeros(2, 128, 129, 129, device=device)
    name, text = explained_flavour(x, torch.zeros(128, device=device))
    assert name.startswith("nchw_sector"), text
    wide = torch.zeros(2, 32768, 2, 3, device=device)
    assert fused_ops.explain(wide, torch.zeros(32768, device=device)).startswith("softmax_bias_sigmoid_split fp32")
    assert " fp64 " in fused_ops.explain(x.double(), torch.zeros(128, device=device, dtype=torch.float64))


@pytest.mark.cuda
def test_cuda_explain_matches_the_meta_answer():
    """The meta stand-in answers as a CUDA tensor of the same layout does, but for the image."""
    def without_image(text):
        return re.sub(r" \((sm_\d+ cubin|sm_\d+ PTX \(JIT\)|for CUDA)\)", "", text)

    for flavour, layout in FLAVOUR_CASES.items():
        shape = past_small_tensors(flavour_case_shape(40), torch.float32)
        on_gpu, on_meta = (layout(torch.zeros(shape, device=device)) for device in ("cuda", "meta"))
        texts = [without_image(fused_ops.explain(x, torch.zeros(x.shape[1], device=x.device))) for x in (on_gpu, on_meta)]
        assert texts[0] == texts[1], flavour


def test_explain_on_the_cpu_names_the_cpu_kernel_and_checks_inputs():
    text = fused_ops.explain(torch.randn(2, 4, 3), torch.randn(4))
    assert text.startswith("the CPU kernel") and ("AVX2+FMA copy" in text or "baseline-ISA copy" in text)
    with pytest.raises(RuntimeError, match="bias"):
        fused_ops.explain(torch.randn(2, 4, 3), torch.randn(5))


@pytest.mark.cuda
@pytest.mark.parametrize("channels", [32, 2000, 20000])
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
def test_cuda_channels_last_with_bias_off_16_bytes(dtype, channels):
    """channels_last x whose rows start on 16 bytes, with bias one element past a 16-byte
    boundary: the aligned channels_last tiles, which also promise bias on 16 bytes, must give way
    to the unaligned ones."""
    x, bias = make_inputs(flavour_case_shape(channels), dtype, "cuda")
    x = x.contiguous(memory_format=torch.channels_last)
    out = run_on_poisoned_memory(x, misaligned(bias), 2.0)
    assert out.stride() == x.stride()


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
@pytest.mark.parametrize("channels", [4, 15, 16, 64, 127, 128, 256, 1024])
def test_cuda_channels_filling_a_tile(channels, dtype):
    """Odd NCHW rows with C equal to a tile's BLOCK_C, which the channels_exact variants (no
    channel mask) serve where the build has one, and C one short of it, which the masked tile
    serves; x past the small-tensor tiles."""
    x, bias = make_inputs(past_small_tensors((2, channels, 7, 9), dtype), dtype, "cuda")
    run_on_poisoned_memory(x, bias, 2.0)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5, 8, 9])
def test_cuda_few_channels_on_aligned_rows(channels, dtype):
    """NCHW rows on 16 bytes with fewer channels than 16, past the small-tensor tiles: the
    aligned tiles of 1 to 8 channels, C equal to their BLOCK_C and between, and 9, which takes
    the 16-channel tile."""
    x, bias = make_inputs(past_small_tensors((2, channels, 16, 32), dtype), dtype, "cuda")
    run_on_poisoned_memory(x, bias, 2.0)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
@pytest.mark.parametrize("channels", [1, 2, 3, 5, 8, 17, 100, 128, 256, 257])
def test_cuda_small_tensors(channels, dtype):
    """Contiguous NCHW x of at most 1 MB, which the small-tensor tiles serve where the build has
    one for C (buckets of 1 to 256 channels; 257, and float64, take the others): rows on 16 bytes
    and not, 1x1, a pointer one element off 16 bytes; then the largest such x of one sample, and
    the same with one more position, which takes the other tiles; where C is small enough, as
    many 1x1 samples as the tiles' grid holds on its axis 1, and one more, which takes the others."""
    for shape in ((16, channels, 8, 8), (3, channels, 7, 9), (5, channels, 1, 1)):
        x, bias = make_inputs(shape, dtype, "cuda")
        run_on_poisoned_memory(x, bias, 2.0)
        run_on_poisoned_memory(misaligned(x), bias, 2.0)
    largest = SMALL_TENSOR_BYTES // (channels * x.element_size())
    for positions in (largest, largest + 1):
        x, bias = make_inputs((1, channels, positions), dtype, "cuda")
        run_on_poisoned_memory(x, bias, 2.0)
    if (MAX_SAMPLES_ON_AXIS_1 + 1) * channels * x.element_size() <= SMALL_TENSOR_BYTES:
        for samples in (MAX_SAMPLES_ON_AXIS_1, MAX_SAMPLES_ON_AXIS_1 + 1):
            x, bias = make_inputs((samples, channels, 1, 1), dtype, "cuda")
            run_on_poisoned_memory(x, bias, 2.0)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
def test_cuda_channels_split_over_programs(dtype):
    """C beyond every single-pass tile of contiguous NCHW, which the split kernel serves: its tile
    for rows on 16 bytes where the build has one (fp32: 64 positions a program, fp16: 32) on 16
    positions and, in fp32, on 100, the second block partial; its unaligned tile on 15 positions
    and on x one element off 16 bytes."""
    for shape in ((2, 5000, 15), (1, 4500, 100), (2, 5000, 16)):
        x, bias = make_inputs(shape, dtype, "cuda")
        run_on_poisoned_memory(x, bias, 2.0)
    run_on_poisoned_memory(misaligned(x), bias, -0.75)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
@pytest.mark.parametrize("channels", [16, 100, 128])
def test_cuda_odd_rows_around_warp_steps(channels, dtype):
    """Odd NCHW rows, which the sector_stores tiles serve where the build has one for C: each warp
    holds 32 positions and stores 32 - sector of them (24 in fp32, 16 in fp16/bf16), the first
    warp of a sample from up to sector - 1 positions before its first. Counts under one warp's
    step, just under and over multiples of both steps and of a program's positions; as many
    samples as take x past the small-tensor tiles, so that rows start at different offsets from a
    sector."""
    for positions in (1, 7, 15, 17, 23, 25, 47, 49, 95, 97, 191, 193, 769):
        x, bias = make_inputs(past_small_tensors((3, channels, positions), dtype), dtype, "cuda")
        run_on_poisoned_memory(x, bias, 2.0)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(2, 3, 2, 2048), (3, 100, 4, 256), (2, 128, 3, 255), (2, 1000, 2, 64),
                                   (1, 4000, 2, 32), (2, 4096, 2, 128), (1, 5000, 2, 64), (2, 100, 4, 130)],
                         ids=str)
def test_cuda_every_other_column(shape, dtype):
    """x[..., ::2]: read as contiguous spans where a tile's positions fit in one row (rows of 1024,
    128, 128, 32, 16, 64 and 32 positions, with tiles of 1024 and 4096 channels and the two-pass
    tiles of C = 4096 and 5000), at stride 2 where they do not (65 positions). Every width but 255
    keeps the rows on 16 bytes, which the aligned span tiles take; at 255 the span under a row's
    last position would end past x."""
    base, _ = make_inputs(shape, dtype, "cuda")
    x = base[..., ::2]
    bias = torch.randn(x.shape[1], dtype=torch.float64).to("cuda", dtype)
    out = run_on_poisoned_memory(x, bias, 2.0)
    assert out.is_contiguous()


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
@pytest.mark.parametrize("channels", [64, 4096])
def test_cuda_every_other_column_ending_its_storage(channels, dtype):
    """x[..., ::2] with rows on 16 bytes whose last position is its storage's last element: the
    aligned span tiles would read the element after it, so the launcher takes the tiles that mask
    it (a read past the storage shows under compute-sanitizer, tests/sanitizer_cases.py)."""
    wide, _ = make_inputs((2, channels, 2, 64), dtype, "cuda")
    view = wide[..., ::2]
    x = ending_its_storage(view)
    assert torch.equal(x, view)
    assert x.untyped_storage().nbytes() == (last_element_offset(view) + 1) * x.element_size()
    bias = torch.randn(channels, dtype=torch.float64).to("cuda", dtype)
    run_on_poisoned_memory(x, bias, 2.0)


@pytest.mark.cuda
def test_cuda_workload_shape():
    """The workload's conv output, (128, 128, 129, 129) fp32, against float64 on the GPU
    (the CPU would take minutes for 272 M elements)."""
    x = torch.randn(128, 128, 129, 129, device="cuda")
    bias = torch.randn(128, 1, 1, device="cuda")
    poison_cuda_allocator(x.numel() * 4)
    out = op(x, bias, 2.0)
    expected = torch.sigmoid((torch.softmax(x.double(), dim=1) + bias.double()) * 2.0)
    error = (out.double() - expected).abs().max().item()
    assert not out.isnan().any() and error < 2e-6, error


@pytest.mark.cuda
def test_cuda_runs_on_the_current_stream():
    x, bias = make_inputs((4, 64, 33, 33), torch.float32, "cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        torch.cuda._sleep(10_000_000)  # a busy stream: a launch elsewhere would race ahead
        out = op(x, bias, 2.0)
    stream.synchronize()
    assert_matches_reference(out, x, bias, 2.0)


@pytest.mark.cuda
def test_forced_sm89_build_runs_from_ptx():
    """FUSED_OPS_ARCH=sm_89 makes every kernel run from the sm_89 build: on a GPU other than
    sm_89 that is its PTX, compiled by the driver, and the answers stay right."""
    script = (
        "import torch, fused_ops\n"
        "from conftest import assert_matches_reference\n"
        "images = fused_ops.kernel_images('cuda')\n"
        "assert images and all('sm_89' in line for line in images), images\n"
        "print(images[0])\n"
        "for shape in [(2, 128, 17, 19), (2, 1500, 3, 3)]:\n"
        "    x = torch.randn(shape, device='cuda'); b = torch.randn(shape[1], device='cuda')\n"
        "    assert_matches_reference(torch.ops.fused.softmax_bias_sigmoid(x, b, 2.0), x, b, 2.0)\n"
    )
    env = dict(os.environ, FUSED_OPS_ARCH="sm_89")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                            cwd=os.path.dirname(__file__))
    assert result.returncode == 0, result.stderr
    arch = torch.cuda.get_device_capability()
    assert ("sm_89 cubin" if arch == (8, 9) else "sm_89 PTX (JIT)") in result.stdout


INTERPRETER_SCRIPT = """
import importlib.util, math, sys, torch
sys.path.insert(0, "tests")
from conftest import reference
spec = importlib.util.spec_from_file_location("tuner", "benchmarks/tune_softmax_bias_sigmoid.py")
tuner = importlib.util.module_from_spec(spec)
sys.modules["tuner"] = tuner
spec.loader.exec_module(tuner)
module = tuner.load_kernel_module()
generator = torch.Generator().manual_seed(0)
for flavour, (contiguous, channels_last, aligned, exact, sector) in tuner.FLAVOURS.items():
    two_pass = any(not single_pass for *_, single_pass, _ in tuner.jobs([flavour]))
    tiles = [(block_c, True) for block_c in (1, 4, 16)] + ([(16, False)] if two_pass else [])
    for block_c, single_pass in tiles:
        channels = 40 if not single_pass else block_c if exact else max(1, block_c - 3)
        positions = 64 if aligned or tuner.spans(flavour) else 65
        if tuner.strided(flavour):
            rows = (positions // tuner.SPAN_ROW, 2 * tuner.SPAN_ROW) if tuner.spans(flavour) else (2 * positions,)
            x = torch.randn(2, channels, *rows, generator=generator)[..., ::2]
        elif channels_last:
            x = torch.randn(2, positions, channels, generator=generator).transpose(1, 2)
        else:
            x = torch.randn(2, channels, positions, generator=generator)
        (x[0, 0] if x.dim() == 3 else x[0, 0, 0])[:3] = torch.tensor([math.nan, math.inf, -math.inf])
        bias = torch.randn(channels, generator=generator)
        # As the tuner allocates it: positions at stride 1 for a strided view, else laid out like x.
        out = torch.full(x.shape, math.nan) if tuner.strided(flavour) else torch.full_like(x, math.nan)
        tuner.launch(module, flavour, x, bias, out, block_c, 32, 1, single_pass)
        expected = reference(x, bias, 2.0)
        assert torch.equal(out.isnan(), expected.isnan()), (flavour, block_c, single_pass)
        error = (out.double() - expected).nan_to_num().abs().max().item()
        assert error < 1e-6, (flavour, block_c, single_pass, error)
print("ok")
"""


def test_triton_kernel_math_in_the_interpreter():
    """The Triton kernel itself, run by Triton's CPU interpreter through the tuner's JIT launcher
    (the kernel call csrc/ops/softmax_bias_sigmoid.cpp makes for each flavour, the arguments the
    variant never reads passed as None, as aot.py compiles them): every layout flavour, tiles of
    1 channel (the one-channel shortcut), 4 and 16, the two-pass tile where the flavour has one,
    and NaN, +inf and -inf in x."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    triton_version = tuple(int(part) for part in importlib.metadata.version("triton").split(".")[:2])
    if triton_version < (3, 8):
        # As for the convolution's kernel: triton 3.6's interpreter (the GPU machine's) cannot loop
        # to a bound computed from kernel arguments. CI runs this with 3.8; the GPU runs the kernel.
        pytest.skip(f"triton {triton_version} interpreter cannot run this kernel's loops")
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run([sys.executable, "-c", INTERPRETER_SCRIPT], cwd=os.path.dirname(os.path.dirname(__file__)),
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
