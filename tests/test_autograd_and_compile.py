"""Training with fused::softmax_bias_sigmoid, and the PyTorch 2 stack: the fused backward
(fused::softmax_bias_sigmoid_backward, reached through the op's C++ Autograd kernel) against
float64 autograd of the reference formula, gradcheck, opcheck; and ModelNew (the fused layer,
whose backward runs the tail's) through torch.compile, torch.export and AOTInductor, on the CPU
and on CUDA. The C++ TorchScript path is in test_cpp_loader.py."""
import copy

import pytest
import torch
import torch._dynamo.testing
from torch._dynamo.utils import counters

import fused_ops
from conftest import make_inputs, poison_cuda_allocator, reference_formula, reference_gradients
from samples import layouts, softmax_bias_sigmoid_samples, to_device

op = torch.ops.fused.softmax_bias_sigmoid.default
forward_op = torch.ops.fused.softmax_bias_sigmoid_forward.default
backward_op = torch.ops.fused.softmax_bias_sigmoid_backward.default

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]

# Gradients against float64 autograd, as (atol, rtol): the op computes in float32 (float64 for
# float64) and rounds each gradient once to the dtype; grad_bias sums over N and the positions.
GRAD_TOLERANCE = {torch.float64: (1e-12, 1e-10), torch.float32: (1e-6, 1e-5),
                  torch.float16: (1e-4, 2e-3), torch.bfloat16: (1e-3, 1.6e-2)}

SHAPES = [
    (3, 16, 5, 7),
    (2, 1, 4, 4),      # C = 1: p = 1, grad_x = 0
    (4, 5, 33),        # rank 3
    (5, 300),          # rank 2; C between the single-pass tiles of 128 and 1024 on CUDA
    (1, 1500, 2, 3),   # more channels than one tile: the multi-pass kernel on CUDA
]


def assert_gradients_match(got, expected, dtype, what, terms=1, allowance=0.0):
    """terms: how many per-element values each gradient sums, each of them off by up to atol;
    allowance: a further bound per element."""
    atol, rtol = GRAD_TOLERANCE[dtype]
    atol *= terms
    got = got.detach().to("cpu", torch.float64)
    assert got.shape == expected.shape, f"{what}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    assert not got.isnan().any(), f"{what} has NaN where the reference has none"
    excess = ((got - expected).abs() - rtol * expected.abs() - allowance).max().item()
    assert excess <= atol, f"{what}: off by {excess:.3g} beyond rtol {rtol} (atol {atol})"


def channel_sum_allowance(x, bias, scale, grad_out):
    """Per element of grad_x = p * (dp - sum_c p * dp): p times the rounding the sum over the C
    channels may carry in the compute type, (C - 1) * u * sum_c |p * dp| (the first-order bound
    of a sum taken in order). Without it, with C in the hundreds, about 1 seed in 300 of the
    CPU's float32 cases crossed atol (1.54e-6 at (1, 1500, 2, 3))."""
    x64 = x.detach().to("cpu", torch.float64)
    p = torch.softmax(x64, dim=1)
    out = reference_formula(x64, bias.detach().to("cpu", torch.float64), scale)
    grad_p = scale * grad_out.detach().to("cpu", torch.float64) * out * (1 - out)
    unit = torch.finfo(torch.float64 if x.dtype == torch.float64 else torch.float32).eps / 2
    return p * (x.shape[1] - 1) * unit * (p * grad_p).abs().sum(dim=1, keepdim=True)


def check_gradients(x, bias, scale, grad_out):
    """Backward through the op against the reference; x and bias are leaves."""
    x.requires_grad_(True)
    bias.requires_grad_(True)
    op(x, bias, scale).backward(grad_out)
    expected_x, expected_bias = reference_gradients(x, bias, scale, grad_out)
    assert_gradients_match(x.grad, expected_x, x.dtype, "grad_x",
                           allowance=channel_sum_allowance(x, bias, scale, grad_out))
    assert_gradients_match(bias.grad, expected_bias, x.dtype, "grad_bias", terms=x.numel() // x.shape[1])


# --- gradients ---------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gradients_match_reference(shape, dtype, device):
    x, bias = make_inputs(shape, dtype, device)
    grad_out = torch.randn(shape, dtype=torch.float64).to(device, dtype)
    if device == "cuda":
        poison_cuda_allocator(3 * x.numel() * x.element_size())
    check_gradients(x, bias, -1.5 if len(shape) == 3 else 2.0, grad_out)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_bias_gradient_of_many_programs(dtype):
    """33280 programs (532480 in float64, whose tile is narrower): the launcher adds grad_bias's
    partial sums with the column_sums kernel, in two levels (three)."""
    x, bias = make_inputs((32, 2, 512, 520), dtype, "cuda")
    grad_out = torch.randn(x.shape, dtype=torch.float64).to("cuda", dtype)
    x.requires_grad_(True)
    bias.requires_grad_(True)
    op(x, bias, 2.0).backward(grad_out)
    expected_x, expected_bias = reference_gradients(x, bias, 2.0, grad_out)
    assert_gradients_match(x.grad, expected_x, dtype, "grad_x")
    # grad_bias sums 8.5 million terms: relative to its largest value, as tight as fp32 sums allow.
    largest = expected_bias.abs().max().item()
    assert (bias.grad.to("cpu", torch.float64) - expected_bias).abs().max().item() <= 1e-5 * largest


@pytest.mark.parametrize("channels", [20, 32])  # 32: the CUDA kernels compiled for C a multiple of 16
@pytest.mark.parametrize("device", DEVICES)
def test_gradients_in_every_layout(device, channels):
    """x in every layout of the strided view, grad_out contiguous, like x, or a broadcast
    scalar (the gradient of out.sum(), all strides 0)."""
    x, bias = make_inputs((3, channels, 6, 10), torch.float32, device)
    for name, view in layouts(x):
        for grad_name, grad_out in [("contiguous", torch.randn(view.shape, device=device)),
                                    ("like x", torch.randn_like(view)),
                                    ("broadcast", torch.ones((), device=device).expand(view.shape))]:
            leaf = view.detach()
            try:
                check_gradients(leaf, bias.detach().clone(), 2.0, grad_out)
            except AssertionError as error:
                raise AssertionError(f"x {name}, grad_out {grad_name}: {error}") from None
        grad_x, _ = backward_op(torch.randn(view.shape, device=device), view, bias, 2.0)
        # empty_like(x): x's own strides wherever x is dense, as the Meta kernel says.
        assert grad_x.stride() == torch.empty_like(view).stride(), f"{name}: grad_x is not laid out like x"


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_float64(device):
    shapes = [(2, 5, 3, 4), (3, 7), (2, 4, 6), (1, 150, 2, 2)]  # the last: multi-pass on CUDA
    for shape in shapes:
        x, bias = make_inputs(shape, torch.float64, device)
        x.requires_grad_(True)
        bias.requires_grad_(True)
        assert torch.autograd.gradcheck(lambda x, b: op(x, b, -1.5), (x, bias.detach().flatten().requires_grad_()))
        assert torch.autograd.gradcheck(lambda x, b: op(x, b, 0.3), (x, bias))
    x, bias = make_inputs((2, 6, 3, 4), torch.float64, device)
    channels_last = x.to(memory_format=torch.channels_last).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, b: op(x, b, 2.0), (channels_last, bias.requires_grad_()))


def test_backward_schemas():
    assert str(forward_op._schema) == ("fused::softmax_bias_sigmoid_forward(Tensor x, Tensor bias, float scale) "
                                       "-> (Tensor out, Tensor softmax_stats)")
    assert str(backward_op._schema) == ("fused::softmax_bias_sigmoid_backward(Tensor grad_out, Tensor x, "
                                        "Tensor bias, float scale, Tensor? softmax_stats=None) "
                                        "-> (Tensor grad_x, Tensor grad_bias)")


# --- the softmax statistics the forward saves for the backward ----------------------------

def reference_softmax_stats(x):
    """(N, 2, *spatial) in float64: the channel max, then 1 / sum_c exp(x - max)."""
    x64 = x.detach().to("cpu", torch.float64)
    channel_max = x64.amax(dim=1, keepdim=True)
    return torch.cat([channel_max, 1 / (x64 - channel_max).exp().sum(dim=1, keepdim=True)], dim=1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES + [(2, 3, 0, 4), (2, 128, 8, 8), (40, 128, 7, 9)], ids=str)
def test_forward_returns_out_and_softmax_stats(shape, dtype, device):
    """out is the op's own (bit for bit); the statistics match float64 in every layout, whether
    the kernel writes them (contiguous single-pass tiles on CUDA) or ATen computes them. C = 128
    in a small-tensor tile, and with odd rows past those tiles (1.3 MB in fp32): where the tile
    stores whole sectors, every position's statistics come from the one warp that holds it
    outside a halo."""
    x, bias = make_inputs(shape, dtype, device)
    views = layouts(x) if x.dim() == 4 and x.numel() else [("contiguous", x)]
    for name, view in views:
        out, stats = forward_op(view, bias, 2.0)
        assert torch.equal(out, op(view, bias, 2.0)), f"{name}: out differs from the op's"
        compute = torch.float64 if dtype == torch.float64 else torch.float32
        assert stats.dtype == compute and stats.is_contiguous() and stats.device == x.device
        expected = reference_softmax_stats(view)
        assert stats.shape == expected.shape, f"{name}: statistics of shape {tuple(stats.shape)}"
        rtol = 1e-10 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(stats.cpu().double(), expected, rtol=rtol, atol=0, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [(3, 16, 5, 7), (2, 128, 9, 11), (1, 1500, 2, 3)], ids=str)
def test_backward_from_softmax_stats_matches_recomputing(shape, dtype, device):
    """The backward reading the forward's statistics and the one recomputing them agree: the
    kernels compute p from the same max and 1 / sum."""
    x, bias = make_inputs(shape, dtype, device)
    grad_out = torch.randn(shape, dtype=torch.float64).to(device, dtype)
    stats = forward_op(x, bias, 2.0)[1]
    if device == "cuda":
        poison_cuda_allocator(3 * x.numel() * x.element_size())
    grad_x, grad_bias = backward_op(grad_out, x, bias, 2.0, stats)
    expected_x, expected_bias = reference_gradients(x, bias, 2.0, grad_out)
    assert_gradients_match(grad_x, expected_x, dtype, "grad_x", allowance=channel_sum_allowance(x, bias, 2.0, grad_out))
    assert_gradients_match(grad_bias, expected_bias, dtype, "grad_bias", terms=x.numel() // x.shape[1])
    atol, rtol = GRAD_TOLERANCE[dtype]
    torch.testing.assert_close(grad_x, backward_op(grad_out, x, bias, 2.0)[0], atol=atol, rtol=rtol)


@pytest.mark.parametrize("make_stats, message", [
    (lambda x: torch.zeros(2, 3, 5, 5), r"softmax_stats must be what fused::softmax_bias_sigmoid_forward "
                                         r"returned for x: Float of shape \[2, 2, 5, 5\]; got Float of shape \[2, 3, 5, 5\]"),
    (lambda x: torch.zeros(2, 2, 5, 5, dtype=torch.float64), "softmax_stats must be .* got Double"),
    (lambda x: torch.zeros(2, 2, 5, 5).to_sparse(), r"softmax_stats must be a dense \(strided\) tensor; got layout Sparse"),
])
def test_invalid_softmax_stats_name_the_problem(make_stats, message):
    x, bias = make_inputs((2, 4, 5, 5), torch.float32, "cpu")
    with pytest.raises(RuntimeError, match="fused::softmax_bias_sigmoid_backward: " + message):
        backward_op(torch.randn_like(x), x, bias, 2.0, make_stats(x))


@pytest.mark.cuda
def test_softmax_stats_on_another_device_name_the_problem():
    x, bias = make_inputs((2, 4, 5, 5), torch.float32, "cuda")
    with pytest.raises(RuntimeError, match="x is on cuda:0 but softmax_stats is on cpu"):
        backward_op(torch.randn_like(x), x, bias, 2.0, torch.zeros(2, 2, 5, 5))


def test_forward_with_stats_is_not_differentiable_by_itself():
    x, bias = make_inputs((2, 4, 5), torch.float32, "cpu")
    with pytest.raises(RuntimeError, match="softmax_bias_sigmoid_forward: not differentiable; call "
                                           "fused::softmax_bias_sigmoid"):
        forward_op(x.requires_grad_(), bias, 2.0)
    with torch.no_grad():
        assert forward_op(x, bias, 2.0)[0].shape == x.shape


def test_backward_of_empty_tensors():
    for shape in [(0, 4, 3, 3), (2, 4, 0, 3)]:
        x = torch.randn(shape)
        grad_x, grad_bias = backward_op(torch.randn(shape), x, torch.randn(4, 1, 1), 2.0)
        assert grad_x.shape == x.shape
        assert grad_bias.shape == (4, 1, 1) and (grad_bias == 0).all()


@pytest.mark.parametrize("make, message", [
    (lambda: (torch.randn(2, 4, 3), torch.randn(2, 4, 5), torch.randn(4)), r"grad_out must have the shape of x \(\[2, 4, 5\]\); got \[2, 4, 3\]"),
    (lambda: (torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 4), torch.randn(4)), "grad_out must have the dtype of x"),
    (lambda: (torch.randn(2, 4).to_sparse(), torch.randn(2, 4), torch.randn(4)), "grad_out must be a dense"),
    (lambda: (torch.randn(2, 4), torch.randn(2, 4), torch.randn(5)), "bias must hold one value per channel"),
    (lambda: (torch.ones(2, 4, dtype=torch.int64),) * 2 + (torch.ones(4, dtype=torch.int64),), "x must be .* got Long"),
])
def test_backward_invalid_inputs_name_the_problem(make, message):
    grad_out, x, bias = make()
    with pytest.raises(RuntimeError, match="fused::softmax_bias_sigmoid_backward: " + message):
        backward_op(grad_out, x, bias, 2.0)


@pytest.mark.cuda
def test_backward_mixed_devices_name_the_problem():
    with pytest.raises(RuntimeError, match="x is on cuda:0 but grad_out is on cpu"):
        backward_op(torch.randn(2, 4), torch.randn(2, 4, device="cuda"), torch.randn(4, device="cuda"), 2.0)


def test_double_backward_is_refused_by_name():
    x, bias = make_inputs((2, 4, 3), torch.float64, "cpu")
    x.requires_grad_(True)
    (grad_x,) = torch.autograd.grad(op(x, bias, 2.0).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="second derivative of fused::softmax_bias_sigmoid is not implemented"):
        grad_x.sum().backward()


# --- opcheck -----------------------------------------------------------------------------

# The samples opcheck runs on: a sample with several channels and one of rank 3, in the layouts
# that take different kernel flavours.
OPCHECK_SHAPES = [(3, 7, 9, 11), (1, 16, 2049)]
OPCHECK_LAYOUTS = ("contiguous", "channels_last", "every_other_column")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", OPCHECK_LAYOUTS)
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(device, layout, requires_grad):
    """Every default check of torch.library.opcheck (schema, autograd registration, fake tensors,
    and AOTAutograd with dynamic shapes, which runs the backward when grads are on) on the
    samples of tests/samples.py."""
    for name, sample, sample_bias in softmax_bias_sigmoid_samples(torch.float32, shapes=OPCHECK_SHAPES):
        if not name.endswith(" " + layout):
            continue
        x, bias = to_device(sample, device), sample_bias.to(device)
        torch.library.opcheck(op, (x.requires_grad_(requires_grad), bias.requires_grad_(requires_grad), 2.0))
        torch.library.opcheck(op, (x, bias.detach().flatten().requires_grad_(requires_grad), -1.0))
        # The forward that autograd runs and the backward op, without grads: neither is
        # differentiable itself, by design.
        stats = forward_op(x.detach(), bias.detach(), 2.0)[1]
        torch.library.opcheck(forward_op, (x.detach(), bias.detach(), 2.0))
        torch.library.opcheck(backward_op, (torch.randn_like(x), x.detach(), bias.detach(), 2.0))
        torch.library.opcheck(backward_op, (torch.randn_like(x), x.detach(), bias.detach(), 2.0, stats))


# --- ModelNew through torch.compile, torch.export, AOTInductor and TorchScript ----------

# in_channels, out_channels, kernel_size, stride, padding, output_padding, bias_shape, scaling_factor
MODEL_ARGS = (4, 8, 3, 2, 1, 1, (8, 1, 1), 2.0)
INPUT_SIZE = (4, 6, 6)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles from scratch and leaves no compiled state to the next."""
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def models(device):
    torch.manual_seed(0)
    eager = fused_ops.ModelNew(*MODEL_ARGS).to(device)
    return eager, copy.deepcopy(eager)


def training_step(model, x):
    """Output and gradients (input and parameters) of one forward and backward."""
    for parameter in model.parameters():
        parameter.grad = None
    x = x.detach().requires_grad_(True)
    out = model(x)
    (out * out).sum().backward()  # grad_out = 2 * out: varies across elements
    return [out.detach().clone(), x.grad] + [p.grad for p in model.parameters()]


def assert_same_training(model, eager, x):
    names = ["output", "input grad"] + [f"{name} grad" for name, _ in eager.named_parameters()]
    for name, got, expected in zip(names, training_step(model, x), training_step(eager, x)):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=lambda text: f"{name}: {text}")


@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_trains_like_eager(device):
    eager, twin = models(device)
    compiled = torch.compile(twin, fullgraph=True)
    for batch in (2, 2):
        assert_same_training(compiled, eager, torch.randn(batch, *INPUT_SIZE, device=device))
    assert not counters["graph_break"], dict(counters["graph_break"])


# AotEagerAndRecordGraphs, torch's own testing backend, trips this warning of torch's.
@pytest.mark.filterwarnings("ignore:Your compiler for AOTAutograd is returning a function")
@pytest.mark.parametrize("device", DEVICES)
def test_compile_uses_the_fused_backward(device):
    """AOTAutograd traces the C++ Autograd kernels: the forward graph is the fused layer alone
    (no convolution, no softmax); the backward graph recomputes the convolution and runs the
    tail's fused backward."""
    eager, twin = models(device)
    backend = torch._dynamo.testing.AotEagerAndRecordGraphs()
    assert_same_training(torch.compile(twin, backend=backend, fullgraph=True), eager,
                         torch.randn(2, *INPUT_SIZE, device=device))
    (forward,), (backward,) = backend.fw_graphs, backend.bw_graphs
    assert "fused.conv_transpose2d_softmax_bias_sigmoid.default(" in forward.code
    assert "convolution" not in forward.code and "softmax" not in forward.code.replace(
        "conv_transpose2d_softmax_bias_sigmoid", "")
    assert "fused.softmax_bias_sigmoid_backward.default" in backward.code
    assert "_softmax" not in backward.code


@pytest.mark.parametrize("device", DEVICES)
def test_compile_dynamic_batch_does_not_recompile(device):
    eager, twin = models(device)
    compiled = torch.compile(twin, dynamic=True, fullgraph=True)
    assert_same_training(compiled, eager, torch.randn(2, *INPUT_SIZE, device=device))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for batch in (3, 5):
            assert_same_training(compiled, eager, torch.randn(batch, *INPUT_SIZE, device=device))
    assert counters["stats"]["unique_graphs"] == 1


@pytest.mark.cuda
def test_compile_reduce_overhead_trains_like_eager():
    eager, twin = models("cuda")
    compiled = torch.compile(twin, mode="reduce-overhead", fullgraph=True)
    # CUDA graphs are recorded after a warm-up run: check the replays, on fresh inputs.
    for _ in range(4):
        torch.compiler.cudagraph_mark_step_begin()
        assert_same_training(compiled, eager, torch.randn(2, *INPUT_SIZE, device="cuda"))


def export(model, device):
    batch = torch.export.Dim("batch", min=2)
    x = torch.randn(2, *INPUT_SIZE, device=device)
    program = torch.export.export(model.eval(), (x,), dynamic_shapes={"x": {0: batch}})
    fused_layer = torch.ops.fused.conv_transpose2d_softmax_bias_sigmoid.default
    assert any(node.target is fused_layer for node in program.graph.nodes), program.graph
    return program


@pytest.mark.parametrize("device", DEVICES)
def test_export_runs_and_matches(device):
    eager, twin = models(device)
    exported = export(twin, device).module()
    for batch in (2, 3):
        x = torch.randn(batch, *INPUT_SIZE, device=device)
        expected = eager(x).detach()
        with torch.no_grad():
            torch.testing.assert_close(exported(x), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_aoti_package_runs_and_matches(device, tmp_path):
    eager, twin = models(device)
    path = torch._inductor.aoti_compile_and_package(export(twin, device), package_path=str(tmp_path / "model.pt2"))
    loaded = torch._inductor.aoti_load_package(path)
    for batch in (2, 3):
        x = torch.randn(batch, *INPUT_SIZE, device=device)
        expected = eager(x).detach()
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), expected, rtol=0, atol=1e-6)


@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:FutureWarning")
@pytest.mark.parametrize("device", DEVICES)
def test_scripted_model_trains_like_eager(device):
    eager, twin = models(device)
    assert_same_training(torch.jit.script(twin), eager, torch.randn(2, *INPUT_SIZE, device=device))


@pytest.mark.cuda
def test_cuda_backward_workload_shape():
    """The workload's conv output, (128, 128, 129, 129) fp32, against float64 autograd on the
    GPU (the CPU would take minutes for 272 M elements)."""
    x = torch.randn(128, 128, 129, 129, device="cuda")
    bias = torch.randn(128, 1, 1, device="cuda")
    grad_out = torch.randn_like(x)
    poison_cuda_allocator(x.numel() * 4)
    grad_x, grad_bias = backward_op(grad_out, x, bias, 2.0)
    x64 = x.double().requires_grad_()
    bias64 = bias.double().requires_grad_()
    torch.sigmoid((torch.softmax(x64, dim=1) + bias64) * 2.0).backward(grad_out.double())
    assert not grad_x.isnan().any()
    assert (grad_x.double() - x64.grad).abs().max().item() < 1e-6
    # grad_bias sums 128 x 16641 fp32 terms per channel, with cancellation between them.
    torch.testing.assert_close(grad_bias.double(), bias64.grad, rtol=1e-4, atol=1e-3)
