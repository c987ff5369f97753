"""fused::softmax_bias_sigmoid under hostile conditions: bad input, special values, huge
tensors, threads, streams, CUDA graphs and several GPUs. Every call either matches the float64
reference (NaN exactly where it has NaN) or raises a RuntimeError that names the problem."""
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import fused_ops
from conftest import TOLERANCE, assert_matches_reference, poison_cuda_allocator, reference
from conftest import make_inputs
from samples import layouts

op = torch.ops.fused.softmax_bias_sigmoid.default
HERE = os.path.dirname(os.path.abspath(__file__))

CUDA = pytest.param("cuda", marks=pytest.mark.cuda)
CUDA_DTYPES = [torch.float32, torch.float16, torch.bfloat16]
CPU_DTYPES = CUDA_DTYPES + [torch.float64]
DEVICE_DTYPES = ([pytest.param("cpu", dtype, id=f"cpu-{dtype}") for dtype in CPU_DTYPES]
                 + [pytest.param("cuda", dtype, id=f"cuda-{dtype}", marks=pytest.mark.cuda)
                    for dtype in CUDA_DTYPES])


def assert_matches_reference_with_nan(out, x, bias, scale, tolerance=None):
    """Like conftest's assert_matches_reference, for inputs where the reference has NaN: the
    NaN positions must be the same, every other value within the dtype's tolerance."""
    tolerance = tolerance or TOLERANCE[x.dtype]
    expected = reference(x, bias, scale)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    got = out.detach().to("cpu", torch.float64)
    nan_differs = got.isnan() != expected.isnan()
    assert not nan_differs.any(), (
        f"NaN differs from the reference at {nan_differs.nonzero()[:5].tolist()} "
        f"(got {got[nan_differs][:5].tolist()}, expected {expected[nan_differs][:5].tolist()})")
    number = ~expected.isnan()
    error = (got[number] - expected[number]).abs().max().item() if number.any() else 0.0
    assert error <= tolerance, f"max abs error {error:.3g} > {tolerance:.0e}"


# --- bad input --------------------------------------------------------------------------

def _floats(shape, dtype=torch.float32):
    return torch.randn(shape).to(dtype)


# name: (x and bias built on the CPU, then moved to the device under test; the message).
BAD_INPUTS = {
    "0-D x": (lambda: (torch.tensor(1.0), _floats(1)), r"at least 2 dimensions; got 0-D shape \[\]"),
    "1-D x": (lambda: (_floats(4), _floats(4)), r"at least 2 dimensions; got 1-D shape \[4\]"),
    "bias one short": (lambda: (_floats((2, 4, 3)), _floats(3)),
                       r"one value per channel: x has shape \[2, 4, 3\] .* bias has shape \[3\]"),
    "bias of C*C values": (lambda: (_floats((2, 4, 3)), _floats((4, 4))), r"bias has shape \[4, 4\]"),
    "bias for C=0 with a value": (lambda: (_floats((2, 0, 3)), _floats(1)), r"x has shape \[2, 0, 3\]"),
    "bias with N=0 and the wrong size": (lambda: (_floats((0, 4, 3)), _floats(3)), r"x has shape \[0, 4, 3\]"),
    "int32 x": (lambda: (torch.ones(2, 4, dtype=torch.int32), torch.ones(4, dtype=torch.int32)), "got Int"),
    "uint8 x": (lambda: (torch.ones(2, 4, dtype=torch.uint8), torch.ones(4, dtype=torch.uint8)), "got Byte"),
    "int64 x, float bias": (lambda: (torch.ones(2, 4, dtype=torch.int64), _floats(4)), "got Long"),
    "bool x": (lambda: (torch.ones(2, 4, dtype=torch.bool), torch.ones(4, dtype=torch.bool)), "got Bool"),
    "float8 x": (lambda: (_floats((2, 4), torch.float8_e4m3fn), _floats(4, torch.float8_e4m3fn)),
                 "got Float8_e4m3fn"),
    "complex64 x": (lambda: (_floats((2, 4), torch.complex64), _floats(4, torch.complex64)), "got ComplexFloat"),
    "complex128 x": (lambda: (_floats((2, 4), torch.complex128), _floats(4, torch.complex128)),
                     "got ComplexDouble"),
    "int bias": (lambda: (_floats((2, 4)), torch.ones(4, dtype=torch.int32)),
                 r"bias must have the dtype of x \(Float\); got Int"),
    "complex bias": (lambda: (_floats((2, 4)), _floats(4, torch.complex64)), "got ComplexFloat"),
    "bf16 bias, fp16 x": (lambda: (_floats((2, 4), torch.float16), _floats(4, torch.bfloat16)),
                          r"dtype of x \(Half\); got BFloat16"),
    "sparse COO x": (lambda: (_floats((2, 4)).to_sparse(), _floats(4)), "got layouts Sparse and Strided"),
    "sparse CSR x": (lambda: (_floats((2, 4)).to_sparse_csr(), _floats(4)), "got layouts SparseCsr and Strided"),
    "sparse CSC x": (lambda: (_floats((2, 4)).to_sparse_csc(), _floats(4)), "got layouts SparseCsc and Strided"),
    "sparse BSR x": (lambda: (_floats((2, 4)).to_sparse_bsr((1, 1)), _floats(4)), "got layouts SparseBsr"),
    "sparse COO bias": (lambda: (_floats((2, 4)), _floats(4).to_sparse()), "got layouts Strided and Sparse"),
}


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("device", ["cpu", "meta", CUDA])
@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_names_the_problem(device, case):
    make, message = BAD_INPUTS[case]
    x, bias = (t.to(device) for t in make())
    with pytest.raises(RuntimeError, match=message):
        op(x, bias, 2.0)


@pytest.mark.parametrize("x_device, bias_device", [
    ("meta", "cpu"), ("cpu", "meta"),
    pytest.param("cuda", "cpu", marks=pytest.mark.cuda),
    # x on the CPU with bias on CUDA reaches the CUDA kernel, whose device guard once failed first.
    pytest.param("cpu", "cuda", marks=pytest.mark.cuda),
    pytest.param("cuda", "meta", marks=pytest.mark.cuda),
])
def test_mixed_devices_name_both(x_device, bias_device):
    x, bias = torch.randn(2, 4, 3, device=x_device), torch.randn(4, device=bias_device)
    expected = f"x is on {x.device} but bias is on {bias.device}; both must be on the same device"
    with pytest.raises(RuntimeError, match=expected):
        op(x, bias, 2.0)


@pytest.mark.cuda
def test_cuda_float64_is_right():
    x, bias = make_inputs((2, 6, 5, 3), torch.float64, "cuda")
    assert_matches_reference(op(x, bias, 2.0), x, bias, 2.0)


# Scales that leave float32's range or are not numbers. A finite scale beyond it saturates:
# with p + bias == 0 the answer is sigmoid(0) = 0.5 like the reference's, not 0 * inf = NaN.
SPECIAL_SCALES = [math.inf, -math.inf, math.nan, 1e300, -1e300, 3.5e38, 1e30, 1e-300, 0.0, -0.0]


@pytest.mark.parametrize("device, dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("scale", SPECIAL_SCALES, ids=str)
def test_special_scales_match_reference(device, dtype, scale):
    x, bias = make_inputs((2, 9, 5, 3), dtype, device, torch.Generator().manual_seed(3))
    assert_matches_reference_with_nan(op(x, bias, scale), x, bias, scale)
    # One channel: softmax is exactly 1, so with bias -1 the sigmoid's argument is 0 * scale.
    x, bias = x[:, :1], torch.full((1,), -1.0, dtype=dtype, device=device)
    assert_matches_reference_with_nan(op(x, bias, scale), x, bias, scale)


def expected_strides(x):
    return torch.empty_like(x).stride()


ZERO_SIZE_SHAPES = [(0, 4, 3, 3), (2, 0, 3, 3), (2, 4, 0, 3), (2, 4, 3, 0), (0, 0), (3, 0), (0, 5),
                    (2, 4, 0)]


@pytest.mark.parametrize("device", ["cpu", "meta", CUDA])
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
@pytest.mark.parametrize("shape", ZERO_SIZE_SHAPES, ids=str)
def test_zero_size_dimensions(device, dtype, shape):
    x = torch.empty(shape, dtype=dtype, device=device)
    views = [x] + ([x.to(memory_format=torch.channels_last)] if x.dim() == 4 else [])
    for view in views:
        out = op(view, torch.empty(shape[1], dtype=dtype, device=device), 2.0)
        assert (out.shape, out.dtype, out.device) == (view.shape, view.dtype, view.device)
        assert out.stride() == expected_strides(view)


def unusual_layouts(x):
    """Layouts beyond samples.layouts: broadcast (stride 0) dimensions, a channels_last data
    pointer one element off its allocation's alignment, size-1 dimensions with odd strides."""
    yield "expanded_batch_and_rows", x[:1, :, :1].expand(x.shape[0], -1, x.shape[2], -1)
    yield "channels_last_misaligned", torch.empty(
        x.numel() + 1, dtype=x.dtype, device=x.device)[1:].as_strided(
        x.shape, x.to(memory_format=torch.channels_last).stride()).copy_(x)
    yield "size_one_dims_odd_strides", x[:, :, 1:2, :].as_strided(
        (x.shape[0], x.shape[1], 1, x.shape[3]), (x.stride(0), x.stride(1), 12345, x.stride(3)))


@pytest.mark.parametrize("device, dtype", DEVICE_DTYPES)
def test_every_layout_matches_reference_and_keeps_dense_strides(device, dtype):
    x, bias = make_inputs((3, 20, 6, 10), dtype, device)
    for name, view in [*layouts(x), *unusual_layouts(x)]:
        out = op(view, bias, -1.5)
        assert_matches_reference(out, view, bias, -1.5)
        assert out.stride() == expected_strides(view), name


def test_meta_result_has_the_shape_and_strides_of_the_real_one():
    x, bias = make_inputs((3, 20, 6, 10), torch.float32, "cpu")
    five_d = torch.randn(2, 3, 4, 5, 6)
    cases = [*layouts(x), *unusual_layouts(x), ("rank_2", x[:, :, 0, 0]),
             ("channels_last_3d", five_d.to(memory_format=torch.channels_last_3d)),
             ("five_d_sliced", five_d.permute(0, 1, 3, 4, 2)[:, :, ::2, :, ::3])]
    for name, view in cases:
        b = bias[: view.shape[1]].flatten()
        meta_view = torch.empty_strided(view.shape, view.stride(), dtype=view.dtype, device="meta")
        out, meta_out = op(view, b, 2.0), op(meta_view, b.to("meta"), 2.0)
        assert meta_out.device.type == "meta", name
        assert (meta_out.shape, meta_out.stride(), meta_out.dtype) == (out.shape, out.stride(), out.dtype), name


@pytest.mark.parametrize("device, dtype", DEVICE_DTYPES)
def test_channels_beyond_every_single_pass_tile(device, dtype):
    """C = 40000 runs the two-pass kernel on CUDA, contiguous and channels_last. A float32
    sum of 40000 terms loses more than conftest's fp32 tolerance allows (PyTorch's own fp32
    softmax is 2e-6 off here too), so fp32 gets 1e-5."""
    x, bias = make_inputs((2, 40000, 1, 3), dtype, device, torch.Generator().manual_seed(5))
    tolerance = max(TOLERANCE[dtype], 1e-5 if dtype == torch.float32 else 0.0)
    for view in (x, x.to(memory_format=torch.channels_last)):
        assert_matches_reference_with_nan(op(view, bias, 2.0), view, bias, 2.0, tolerance)


# --- special values ---------------------------------------------------------------------

def special_values(channels, dtype, device):
    """x of shape (2, C, 16) whose positions each hold one pattern of special values (NaN,
    +-inf, the dtype's largest finite values, tiny ones), in the first and the last channels
    alike (different chunks of the two-pass kernel), shifted by 5 positions in sample 1."""
    big = min(1e30, torch.finfo(dtype).max)
    largest = torch.finfo(dtype).max
    inf, nan = math.inf, math.nan
    generator = torch.Generator().manual_seed(channels)
    x = torch.randn(channels, 16, dtype=torch.float64, generator=generator)
    last = channels - 1
    x[0, 1] = nan
    x[last, 2] = nan
    x[:, 3] = -inf
    x[last // 2, 4] = inf
    x[[0, last], 5] = inf
    x[:, 6] = x[:, 6].where(torch.arange(channels) % 3 != 0, -inf)
    x[last, 6] = inf
    x[channels // 3, 6] = nan
    x[::2, 7] = -inf
    x[:, 8] = -inf
    x[last, 8] = 0.5
    x[:, 9] = -big
    x[last // 2, 9] = big
    x[:, 10] = big
    x[:, 11] = -big
    x[:, 12] = (torch.arange(channels) % 2 * -2 + 1).double() * largest
    x[:, 13] *= 1e-30
    x[:, 14] = x[:, 14].sign() * largest
    x[:, 15] = largest
    x[0, 15] = -largest
    return torch.stack([x, x.roll(5, dims=1)]).to(dtype).to(device)


@pytest.mark.parametrize("device, dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("channels", [1, 5, 128, 1500, 5000])  # 5000: split across programs on CUDA
def test_nan_inf_and_extreme_magnitudes_as_the_reference(device, dtype, channels):
    x = special_values(channels, dtype, device)
    bias = torch.randn(channels, dtype=torch.float64).to(dtype).to(device)
    channels_inner = x.transpose(1, 2).contiguous().transpose(1, 2)  # the strided kernel
    for view in (x, channels_inner):
        for scale in (2.0, -0.5):
            assert_matches_reference_with_nan(op(view, bias, scale), view, bias, scale)


@pytest.mark.parametrize("device, dtype", DEVICE_DTYPES)
def test_channel_chunks_of_only_minus_inf_beside_far_negative_values(device, dtype):
    """C = 5000 runs on CUDA as chunks of 1024 channels whose softmax statistics are merged. A
    chunk of only -inf contributes nothing; were its placeholder reference point (0) taken for
    the maximum, positions whose values all lie far below 0 would underflow to a zero sum."""
    channels = 5000
    x = torch.randn(channels, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    x[:, 0] += -1000.0
    x[:2048, 0] = -math.inf
    x[:, 1] = -math.inf
    x[channels - 1, 1] = -2000.0
    x[:, 2] -= 80.0
    x[1024:3072, 2] = -math.inf
    x = x[None].to(dtype).to(device)
    bias = torch.randn(channels, dtype=torch.float64).to(dtype).to(device)
    assert_matches_reference_with_nan(op(x, bias, 2.0), x, bias, 2.0)


@pytest.mark.parametrize("device, dtype", DEVICE_DTYPES)
def test_special_bias_values_as_the_reference(device, dtype):
    x, _ = make_inputs((2, 6, 4, 5), dtype, device)
    largest = torch.finfo(dtype).max
    values = [math.nan, math.inf, -math.inf, largest, -largest, 0.25]
    bias = torch.tensor(values, dtype=torch.float64).to(dtype).to(device)
    assert_matches_reference_with_nan(op(x, bias, 2.0), x, bias, 2.0)


# --- huge tensors (CUDA) ------------------------------------------------------------------

def free_cuda_memory_or_skip(nbytes):
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    if free < nbytes:
        pytest.skip(f"needs {nbytes / 2**30:.1f} GiB of free GPU memory; {free / 2**30:.1f} GiB free")


def sample_positions(x, count, generator):
    """Index tensors (n, *spatial) of `count` random positions plus the first and last ones,
    the last of which lies past element 2^31 in every huge case below."""
    sizes = [x.shape[0], *x.shape[2:]]
    random = [torch.randint(0, size, (count,), generator=generator) for size in sizes]
    return [torch.cat([torch.tensor([0, size - 1]), r]).to(x.device) for size, r in zip(sizes, random)]


def at_positions(t, index):
    """t[n, :, s...] for each sampled position: shape (positions, C)."""
    return t[(index[0], slice(None), *index[1:])]


def check_huge(x, bias, scale):
    """The op on a huge x: every element written and within tolerance of an fp32 reference
    computed on the GPU chunk by chunk, and sampled positions against the float64 reference."""
    poison_cuda_allocator(x.numel() * x.element_size())
    out = op(x, bias, scale)
    torch.cuda.synchronize()
    assert out.shape == x.shape and out.stride() == expected_strides(x)
    assert not out.isnan().any(), "some output elements were never written (NaN poison)"
    bias32 = bias.float().reshape(1, -1, *[1] * (x.dim() - 2))
    chunk = max(1, 2**26 // (x.numel() // x.shape[-1]))
    worst = 0.0
    for start in range(0, x.shape[-1], chunk):
        xs = x.narrow(-1, start, min(chunk, x.shape[-1] - start))
        expected = torch.sigmoid((torch.softmax(xs.float(), dim=1) + bias32) * scale)
        got = out.narrow(-1, start, xs.shape[-1]).float()
        worst = max(worst, (got - expected).abs().max().item())
    assert worst <= TOLERANCE[x.dtype], f"max abs error {worst:.3g} against the fp32 GPU reference"
    index = sample_positions(x, 4096, torch.Generator().manual_seed(0))
    x_samples, out_samples = at_positions(x, index).cpu(), at_positions(out, index).cpu()
    expected = reference(x_samples, bias.cpu(), scale)
    error = (out_samples.double() - expected).abs().max().item()
    assert error <= TOLERANCE[x.dtype], f"max abs error {error:.3g} on sampled positions"


def _huge_contiguous():   # > 2^31 elements, each sample's offsets fit in 32 bits
    return torch.randn(2, 8, 2**27 + 64, dtype=torch.float16, device="cuda")


def _huge_one_sample():   # one sample past 2^31 elements: the 64-bit offset variants
    return torch.randn(1, 16, 2**27 + 64, dtype=torch.float16, device="cuda")


def _huge_channels_last():  # C = 200: the 64-bit two-pass kernel, channels innermost
    x = torch.empty(1, 200, 3300, 3300, dtype=torch.float16, device="cuda",
                    memory_format=torch.channels_last)
    return x.normal_()


def _huge_strided():      # every other position of a 2^31-element sample: a strided view
    return torch.randn(1, 8, 2**28 + 128, dtype=torch.float16, device="cuda")[..., ::2]


@pytest.mark.cuda
@pytest.mark.parametrize("make", [_huge_contiguous, _huge_one_sample, _huge_channels_last, _huge_strided],
                         ids=lambda make: make.__name__.lstrip("_"))
def test_huge_tensor(make):
    free_cuda_memory_or_skip(14 * 2**30)
    x = make()
    assert x.untyped_storage().nbytes() // x.element_size() > 2**31
    bias = torch.randn(x.shape[1], dtype=x.dtype, device="cuda")
    check_huge(x, bias, -1.5)


@pytest.mark.cuda
def test_huge_batch_of_rank_2_is_named():
    """(2^31 + 1, 2): no position dimension, so each sample is one program of the strided
    flavour (fused_ops.explain on meta tensors says so), more than one launch's grid holds."""
    meta = torch.empty(2**31 + 1, 2, dtype=torch.float16, device="meta")
    assert "; flavour strided;" in fused_ops.explain(meta, torch.empty(2, dtype=meta.dtype, device="meta"))
    free_cuda_memory_or_skip(20 * 2**30)
    x = torch.randn(2**31 + 1, 2, dtype=torch.float16, device="cuda")
    bias = torch.randn(2, dtype=x.dtype, device="cuda")
    with pytest.raises(RuntimeError, match="programs, more than one launch can hold"):
        op(x, bias, 2.0)


# --- concurrency --------------------------------------------------------------------------

FIRST_CALLS_IN_THREADS = textwrap.dedent("""
    import sys, threading
    import torch, fused_ops
    from conftest import assert_matches_reference

    device, threads = sys.argv[1], 8
    # Different dtypes and channel counts, so that threads load different kernel images at
    # once and some the same one.
    cases = [(dtype, channels) for channels in (7, 128, 1500) for dtype in
             (torch.float32, torch.float16, torch.bfloat16)][:threads]
    inputs = [(torch.randn(2, c, 9, 11).to(device, dtype), torch.randn(c).to(device, dtype))
              for dtype, c in cases]
    barrier = threading.Barrier(threads)
    failures = []

    def first_call(i):
        x, bias = inputs[i]
        barrier.wait()
        try:
            out = torch.ops.fused.softmax_bias_sigmoid(x, bias, 2.0)
            assert_matches_reference(out, x, bias, 2.0)
        except BaseException as error:
            failures.append(f"thread {i} {cases[i]}: {error!r}")

    workers = [threading.Thread(target=first_call, args=(i,)) for i in range(threads)]
    for worker in workers: worker.start()
    for worker in workers: worker.join()
    assert not failures, failures
    print("ok", threads)
""")


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_first_calls_from_eight_threads_at_once(device):
    """In a fresh process no thread has called the op before: they race through the first
    image loads (CUDA) and, being new threads, start with no current CUDA context."""
    result = subprocess.run([sys.executable, "-c", FIRST_CALLS_IN_THREADS, device], cwd=HERE,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok 8" in result.stdout, result.stderr[-3000:]


@pytest.mark.cuda
def test_calls_on_several_streams_at_once():
    cases = [((4, 64, 33, 33), torch.float32, False), ((2, 1500, 7), torch.float16, False),
             ((8, 128, 16, 16), torch.bfloat16, True), ((3, 7, 50), torch.float32, False)]
    inputs = []
    for shape, dtype, channels_last in cases:
        x, bias = make_inputs(shape, dtype, "cuda")
        inputs.append((x.to(memory_format=torch.channels_last) if channels_last else x, bias))
    streams = [torch.cuda.Stream() for _ in inputs]
    outputs = [[] for _ in inputs]
    for _ in range(3):
        for stream, (x, bias), outs in zip(streams, inputs, outputs):
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                torch.cuda._sleep(200_000)  # keeps every stream busy, so their work overlaps
                outs.append(op(x, bias, 2.0))
    torch.cuda.synchronize()
    for (x, bias), outs in zip(inputs, outputs):
        for out in outs:
            assert_matches_reference(out, x, bias, 2.0)


@pytest.mark.cuda
def test_cuda_graph_capture_and_replay_with_new_inputs():
    shapes = [((4, 128, 17, 19), torch.float32, False), ((2, 1500, 5, 3), torch.float16, True)]
    static = []
    for shape, dtype, channels_last in shapes:
        x, bias = make_inputs(shape, dtype, "cuda")
        static.append((x.to(memory_format=torch.channels_last) if channels_last else x, bias))
    # Warm up on a side stream before capture, as torch.cuda.graphs asks.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for x, bias in static:
            op(x, bias, 2.0)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = [op(x, bias, 2.0) for x, bias in static]
    generator = torch.Generator().manual_seed(11)
    for _ in range(3):
        fresh = []
        for (x, bias), (shape, dtype, _) in zip(static, shapes):
            new_x, new_bias = make_inputs(shape, dtype, "cuda", generator)
            x.copy_(new_x)
            bias.copy_(new_bias)
            fresh.append((new_x, new_bias))
        graph.replay()
        torch.cuda.synchronize()
        for out, (new_x, new_bias) in zip(outputs, fresh):
            assert_matches_reference(out, new_x, new_bias, 2.0)


# --- several GPUs -------------------------------------------------------------------------

@pytest.mark.cuda
def test_runs_on_the_device_of_its_input():
    """Each GPU's input, called while another GPU is current. The launcher loads each image
    once as a context-independent CUDA library (cuLibraryLoadData in csrc/launcher.cpp) and
    launches its CUkernel in the current context, which the op's device guard makes the
    input's; so one load serves every device."""
    count = torch.cuda.device_count()
    if count < 2:
        pytest.skip("needs 2 GPUs")
    for channels in (128, 1500, 128):  # the last round finds every image loaded
        for device in range(count):
            x, bias = make_inputs((2, channels, 9, 7), torch.float32, f"cuda:{device}")
            other = (device + 1) % count
            with torch.cuda.device(other):
                out = op(x, bias, 2.0)
                assert torch.cuda.current_device() == other, "the op left another device current"
            assert out.device == x.device
            assert_matches_reference(out, x, bias, 2.0)
