"""fused::conv_transpose2d_softmax_bias_sigmoid against a float64 reference (ATen's transposed
convolution in float64, then the softmax tail), on the CPU, on CUDA, and through ModelNew: its
outputs, and its gradients in x, weight, conv_bias and bias."""
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import fused_ops
from conftest import poison_cuda_allocator
from samples import CONV_CONFIGS as CONFIGS
from samples import WORKLOAD_CONFIG, geometry
from samples import make_conv_inputs as make_inputs

op = torch.ops.fused.conv_transpose2d_softmax_bias_sigmoid.default
REPO = Path(__file__).resolve().parents[1]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]

def reference_formula(x, weight, conv_bias, bias, stride, padding, output_padding, scale):
    """The op's definition from plain ATen ops (differentiable)."""
    y = F.conv_transpose2d(x, weight, conv_bias, stride, padding, output_padding)
    return torch.sigmoid((torch.softmax(y, dim=1) + bias.reshape(1, -1, 1, 1)) * scale)


def reference(x, weight, conv_bias, bias, stride, padding, output_padding, scale, device="cpu"):
    """The op's definition in float64."""
    as64 = lambda t: None if t is None else t.detach().to(device, torch.float64)  # noqa: E731
    return reference_formula(as64(x), as64(weight), as64(conv_bias), as64(bias), stride, padding,
                             output_padding, scale)


def max_error(out, expected):
    assert not out.isnan().any(), "output has NaN where the reference has none"
    return (out.to(expected.device, torch.float64) - expected).abs().max().item()


def test_schema():
    assert str(op._schema) == (
        "fused::conv_transpose2d_softmax_bias_sigmoid(Tensor x, Tensor weight, Tensor? conv_bias, "
        "Tensor bias, int[2] stride, int[2] padding, int[2] output_padding, float scale) -> Tensor")


@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_cpu_matches_reference(config, dtype, tolerance):
    x, weight, cb, bias = make_inputs(config, dtype)
    out = fused_ops.conv_transpose2d_softmax_bias_sigmoid(x, weight, cb, bias, *geometry(config), -1.5)
    expected = reference(x, weight, cb, bias, *geometry(config), -1.5)
    assert out.shape == expected.shape and out.dtype == dtype and out.is_contiguous()
    assert max_error(out, expected) <= tolerance


def test_cpu_without_conv_bias_and_with_channels_last_input():
    config = CONFIGS[0]
    x, weight, _, bias = make_inputs(config)
    x = x.to(memory_format=torch.channels_last)
    out = op(x, weight, None, bias, *geometry(config), 2.0)
    assert out.is_contiguous()
    assert max_error(out, reference(x, weight, None, bias, *geometry(config), 2.0)) <= 1e-5


def test_meta_shapes_match_cpu():
    for config in CONFIGS:
        x, weight, cb, bias = make_inputs(config)
        expected = op(x, weight, cb, bias, *geometry(config), 2.0)
        meta = op(*(t.to("meta") for t in (x, weight, cb, bias)), *geometry(config), 2.0)
        assert meta.device.type == "meta" and meta.shape == expected.shape
        assert meta.stride() == expected.stride() and meta.dtype == expected.dtype


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(device, requires_grad):
    """Every default check of torch.library.opcheck: schema, autograd registration, fake
    tensors, and AOTAutograd with dynamic shapes (which runs the backward when grads are on)."""
    config = CONFIGS[0]
    x, weight, cb, bias = (t.requires_grad_(requires_grad) for t in make_inputs(config, device=device))
    torch.library.opcheck(op, (x, weight, cb, bias, *geometry(config), 2.0))
    torch.library.opcheck(op, (x, weight, None, bias.flatten(), [1, 1], [0, 0], [0, 0], -1.0))


def invalid_cases():
    x, w, cb, b = make_inputs(CONFIGS[0])
    good = dict(x=x, weight=w, conv_bias=cb, bias=b, stride=[2, 2], padding=[1, 1], output_padding=[1, 1])
    yield dict(good, x=x[0]), r"x must have shape \(N, C_in, H, W\); got 3-D"
    yield dict(good, weight=w[..., 0]), r"weight must have shape \(C_in, C_out, kH, kW\)"
    yield dict(good, weight=w[:4]), r"x needs 4 channels .* x has shape \[2, 8, 9, 9\]"
    yield dict(good, bias=b[:5]), r"bias must hold one value per output channel: .*\(C_out = 16\) but bias has shape \[5, 1, 1\]"
    yield dict(good, conv_bias=cb[:3]), r"conv_bias must hold one value per output channel"
    yield dict(good, x=x.double()), r"weight must have the dtype of x \(Double\); got Float"
    yield dict(good, bias=b.half()), r"bias must have the dtype of x \(Float\); got Half"
    yield dict(good, x=x.long(), weight=w.long(), conv_bias=cb.long(), bias=b.long()), "got Long"
    yield dict(good, stride=[0, 2]), "stride must be positive"
    yield dict(good, padding=[-1, 1]), "padding must not be negative"
    yield dict(good, output_padding=[2, 1]), "output_padding must be non-negative and smaller than stride"
    yield dict(good, padding=[20, 1]), r"the output would have size -19 in dimension 2"
    yield dict(good, x=x.to_sparse()), "dense"


@pytest.mark.parametrize("case", range(13))
def test_invalid_inputs_name_the_problem(case):
    kwargs, message = list(invalid_cases())[case]
    with pytest.raises(RuntimeError, match=message):
        op(*kwargs.values(), 2.0)
    if kwargs["x"].layout == torch.strided:
        with pytest.raises(RuntimeError, match=message):  # the Meta kernel checks alike
            op(*(v.to("meta") if isinstance(v, torch.Tensor) else v for v in kwargs.values()), 2.0)


def test_library_keeps_the_variant_order(monkeypatch):
    """The launcher takes the first variant that fits a call, so the library's table must list
    them in the order the kernel module declares (aligned before unaligned, the fast tile first)."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    monkeypatch.syspath_prepend(os.path.join(REPO, "triton_src"))  # its sibling fp16_operands
    spec = importlib.util.spec_from_file_location(
        "conv_kernel_module", os.path.join(REPO, "triton_src", "conv_transpose2d_softmax_bias_sigmoid.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    declared = [",".join(f"{key}={value}" for key, value in sorted(variant.items()) if key not in ("num_warps", "dtypes"))
                for variant in module.VARIANTS]
    listed = []
    for line in fused_ops.kernel_images():
        if line.startswith(module.KERNEL_NAME + " "):
            constexprs = line.rsplit(": ", 1)[0].split(" ")[-1]
            if constexprs not in listed:
                listed.append(constexprs)
    assert listed == declared


def test_triton_kernel_math_in_the_interpreter():
    """The Triton kernel itself, run by Triton's CPU interpreter through the benchmark's JIT
    launcher (the same grids as the C++ launcher), on tiny shapes of every tiling, in fp32 and
    fp16 (the interpreter's bf16 dot is not bf16's: the GPU tests check that dtype). fp32 runs on
    fp16 operands scaled per sample and per tensor: also with x and the weight 2^40 times larger
    and smaller than each other, far outside fp16's range unscaled."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    triton_version = tuple(int(part) for part in importlib.metadata.version("triton").split(".")[:2])
    if triton_version < (3, 8):
        # Seen with triton 3.6 (the GPU machine's): its interpreter cannot loop to a bound
        # computed from kernel arguments. CI runs this with 3.8; the GPU runs the kernel itself.
        pytest.skip(f"triton {triton_version} interpreter cannot run this kernel's loop")
    script = (
        "import sys, torch\n"
        "sys.path.insert(0, 'benchmarks'); sys.path.insert(0, 'tests')\n"
        "import bench_conv_transpose2d_softmax_bias_sigmoid as bench\n"
        "from test_conv_transpose2d_softmax_bias_sigmoid import CONFIGS, CUDA_TOLERANCE, make_inputs, geometry, reference, max_error\n"
        "tiny = dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16, num_warps=4, num_stages=1)\n"
        "g = torch.Generator().manual_seed(0)\n"
        "cases = [(torch.float32, 1.0, CUDA_TOLERANCE), (torch.float32, 2.0**40, CUDA_TOLERANCE),\n"
        "         (torch.float32, 2.0**-40, CUDA_TOLERANCE), (torch.float16, 1.0, 2e-3)]\n"
        "for config in CONFIGS:\n"
        "    for dtype, x_scale, tolerance in cases:\n"
        "        x, w, cb, b = make_inputs(config, dtype, generator=g)\n"
        "        x, w = x * x_scale, w / x_scale\n"
        "        for cbias in (cb, None):\n"
        "            out = bench.jit_forward(x, w, cbias, b, *geometry(config), -1.5, config=tiny)\n"
        "            error = max_error(out, reference(x, w, cbias, b, *geometry(config), -1.5))\n"
        "            assert out.dtype == dtype and error < tolerance, (config, dtype, x_scale, error)\n"
        "print('ok')\n"
    )
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


# --- CUDA ------------------------------------------------------------------------------
# The fused kernel's fp32 convolution has TF32's precision, like PyTorch's default; 1e-4 is
# KernelBench's tolerance.
CUDA_TOLERANCE = 1e-4


def check_cuda(config, conv_bias=True, scale=2.0, dtype=torch.float32, tolerance=CUDA_TOLERANCE):
    x, weight, cb, bias = make_inputs(config, dtype, "cuda", conv_bias)
    expected = reference(x, weight, cb, bias, *geometry(config), scale, device="cuda")
    poison_cuda_allocator(expected.numel() * 4)
    out = op(x, weight, cb, bias, *geometry(config), scale)
    torch.cuda.synchronize()
    assert out.shape == expected.shape and out.dtype == dtype and out.is_contiguous()
    error = max_error(out, expected)
    assert error <= tolerance, f"max abs error {error:.3g} > {tolerance:g}"


@pytest.mark.cuda
def test_cuda_workload_layer():
    check_cuda(WORKLOAD_CONFIG)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("requires_grad", [False, True])
def test_cuda_workload_layer_runs_the_fused_kernel(requires_grad, dtype):
    """The right answer could also come from the fallback (ATen's convolution and the tail):
    the profiler shows that the workload's configuration runs the fused kernel, the weight's
    rearrangement and (fp32) the fp16 operands' conversion, and no other convolution or tail, in
    every dtype, with or without parameters that require grad."""
    x, weight, cb, bias = make_inputs(WORKLOAD_CONFIG, dtype, "cuda")
    weight.requires_grad_(requires_grad)
    op(x, weight, cb, bias, *geometry(WORKLOAD_CONFIG), 2.0)  # loads the images outside the profile
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
        op(x, weight, cb, bias, *geometry(WORKLOAD_CONFIG), 2.0)
        torch.cuda.synchronize()
    kernels = {event.name for event in profile.events() if event.device_type == torch.autograd.DeviceType.CUDA}
    assert any(name.startswith("conv_transpose2d_softmax_bias_sigmoid") for name in kernels), kernels
    # Besides it, the weight's rearrangement (an ATen copy) and fp16_operands: no convolution, no tail.
    others = [name.lower() for name in kernels if not name.startswith("conv_transpose2d_softmax_bias_sigmoid")]
    assert not any(word in name for name in others for word in ("conv", "gemm", "cudnn", "softmax", "sigmoid")), kernels


# Half precision: the workload's layer and odd ones (strides 1 to 3, kernels 2 to 5, C_out not a
# multiple of 16), all in the fused kernel.
# The workload and (2, 48, 16, 16, 32, ...) run the ALIGNED half-precision tile, the latter with
# its last 64-channel chunk part masked; the others the unaligned and one-phase tiles.
HALF_CONFIGS = [WORKLOAD_CONFIG, (2, 48, 16, 16, 32, 4, 2, 1, 1), (2, 16, 9, 9, 40, 3, 1, 1, 0),
                (2, 8, 10, 7, 24, 5, 3, 2, 1), (3, 32, 11, 13, 100, 2, 2, 0, 1),
                (2, 24, 8, 12, 36, (4, 5), (2, 3), (1, 2), (1, 0))]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("config", HALF_CONFIGS, ids=str)
def test_cuda_half_precision_within_twice_pytorchs_error(config, dtype):
    """Against float64, the fused kernel's error in fp16 and bf16 is at most twice that of
    PyTorch's own layer in the same dtype (eager ATen ops)."""
    x, weight, cb, bias = make_inputs(config, dtype, "cuda")
    expected = reference(x, weight, cb, bias, *geometry(config), 2.0)
    poison_cuda_allocator(expected.numel() * 2)
    out = op(x, weight, cb, bias, *geometry(config), 2.0)
    assert out.dtype == dtype and out.shape == expected.shape
    pytorch_error = max_error(reference_formula(x, weight, cb, bias, *geometry(config), 2.0), expected)
    assert max_error(out, expected) <= 2 * pytorch_error, (max_error(out, expected), pytorch_error)


@pytest.mark.cuda
@pytest.mark.parametrize("config", CONFIGS + [(3, 32, 17, 20, 128, 4, 2, 1, 1), (2, 70, 11, 13, 100, 3, 2, 0, 1),
                                              (2, 16, 12, 12, 64, 4, 4, 0, 0), (1, 64, 33, 32, 128, 2, 2, 0, 0)],
                         ids=str)
def test_cuda_matches_reference(config):
    check_cuda(config, scale=-1.5)


@pytest.mark.cuda
def test_cuda_without_conv_bias():
    check_cuda((2, 16, 15, 15, 32, 4, 2, 1, 1), conv_bias=False)


# fp32 x and weight reach the fused kernel as fp16 scaled by powers of two, the weight per tensor
# and x per sample: the workload's tile and the unaligned one.
@pytest.mark.cuda
@pytest.mark.parametrize("config", [WORKLOAD_CONFIG, (2, 16, 15, 15, 32, 4, 2, 1, 1)], ids=str)
def test_cuda_fp32_far_outside_fp16s_range(config):
    """Sample 1 of x 2^20 times sample 0 and the weight 2^-20 times its usual size: one scale for
    all of x would overflow fp16 on sample 1, or its scale undone on the wrong sample would be
    2^20 off."""
    x, weight, cb, bias = make_inputs(config, torch.float32, "cuda")
    x[1] *= 2.0**20
    weight *= 2.0**-20
    expected = reference(x, weight, cb, bias, *geometry(config), 2.0, device="cuda")
    out = op(x, weight, cb, bias, *geometry(config), 2.0)
    assert max_error(out, expected) <= CUDA_TOLERANCE


@pytest.mark.cuda
def test_cuda_fp32_non_finite_inputs_reach_only_their_outputs():
    """An inf and a NaN in x (which set no operand scale) spoil the outputs they reach, as in the
    float64 reference, and no others."""
    config = (2, 16, 15, 15, 32, 4, 2, 1, 1)
    x, weight, cb, bias = make_inputs(config, torch.float32, "cuda")
    x[0, 3, 4, 5] = float("inf")
    x[1, 0, 9, 2] = float("nan")
    expected = reference(x, weight, cb, bias, *geometry(config), 2.0, device="cuda")
    out = op(x, weight, cb, bias, *geometry(config), 2.0)
    finite = expected.isfinite()
    assert 0 < (~finite).sum() < finite.sum()
    assert torch.equal(out.isfinite(), finite)
    assert (out[finite].double() - expected[finite]).abs().max().item() <= CUDA_TOLERANCE


@pytest.mark.cuda
@pytest.mark.parametrize("config, dtype, tolerance", [
    ((2, 8, 9, 9, 200, 4, 2, 1, 1), torch.float32, CUDA_TOLERANCE),  # C_out beyond the widest tile
    ((2, 8, 9, 9, 200, 4, 2, 1, 1), torch.float16, 2e-3),
    ((2, 8, 9, 9, 200, 4, 2, 1, 1), torch.bfloat16, 1.6e-2),
], ids=str)
def test_cuda_configurations_outside_the_kernel_run_unfused(config, dtype, tolerance):
    check_cuda(config, dtype=dtype, tolerance=tolerance)


@pytest.mark.cuda
def test_cuda_with_tf32_off_is_full_fp32():
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        check_cuda(WORKLOAD_CONFIG, tolerance=2e-6)
    finally:
        torch.backends.cudnn.allow_tf32 = previous


@pytest.mark.cuda
@pytest.mark.parametrize("config, tf32", [(WORKLOAD_CONFIG, False), ((2, 64, 32, 32, 200, 4, 2, 1, 1), True)], ids=str)
def test_cuda_fallback_transposes_nothing(config, tf32):
    """Outside the kernel (TF32 off; C_out beyond its tile) the convolution runs in the format
    cuDNN's kernels for it take (NCHW for full-precision fp32, NHWC on the tensor cores) and the
    tail op writes the NCHW output from it: no layout transpose runs."""
    x, weight, cb, bias = make_inputs(config, torch.float32, "cuda")
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        op(x, weight, cb, bias, *geometry(config), 2.0)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
            op(x, weight, cb, bias, *geometry(config), 2.0)
            torch.cuda.synchronize()
    finally:
        torch.backends.cudnn.allow_tf32 = previous
    kernels = {event.name for event in profile.events() if event.device_type == torch.autograd.DeviceType.CUDA}
    assert any(name.startswith("softmax_bias_sigmoid") for name in kernels), kernels
    transposes = ("nhwc2nchw", "nchw2nhwc", "nhwcToNchw", "nchwToNhwc")
    assert not any(t.lower() in name.lower() for name in kernels for t in transposes), kernels


@pytest.mark.cuda
def test_cuda_mixed_devices_name_the_problem():
    x, weight, cb, bias = make_inputs(CONFIGS[0], device="cuda")
    with pytest.raises(RuntimeError, match="x is on cuda:0 but bias is on cpu"):
        op(x, weight, cb, bias.cpu(), *geometry(CONFIGS[0]), 2.0)


@pytest.mark.cuda
def test_cuda_runs_on_the_current_stream():
    x, weight, cb, bias = make_inputs(WORKLOAD_CONFIG, device="cuda")
    expected = reference(x, weight, cb, bias, *geometry(WORKLOAD_CONFIG), 2.0, device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        torch.cuda._sleep(10_000_000)  # a busy stream: a launch elsewhere would race ahead
        out = op(x, weight, cb, bias, *geometry(WORKLOAD_CONFIG), 2.0)
    stream.synchronize()
    assert max_error(out, expected) <= CUDA_TOLERANCE


# --- gradients ---------------------------------------------------------------------------
# (batch, C_in, H, W, C_out, kernel, stride, padding, output_padding), small enough for gradcheck.
GRAD_CONFIGS = [
    (1, 3, 4, 4, 5, 4, 2, 1, 1),                      # the workload's geometry
    (2, 2, 3, 5, 3, 3, 2, 1, 0),                      # kernel not a multiple of the stride
    (1, 2, 3, 3, 4, (3, 2), (3, 1), (1, 0), (2, 0)),  # different strides per axis
]


def with_grads(tensors):
    return [None if t is None else t.detach().requires_grad_() for t in tensors]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", GRAD_CONFIGS, ids=str)
@pytest.mark.parametrize("conv_bias", [True, False])
def test_gradcheck_float64(device, config, conv_bias, monkeypatch):
    # gradcheck also runs the backward twice and wants the same bits: cuDNN's weight gradient
    # may accumulate with atomics unless told to be deterministic (ATen's own layer alike).
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    x, weight, cb, bias = with_grads(make_inputs(config, torch.float64, device, conv_bias))
    inputs = (x, weight, bias) + ((cb,) if conv_bias else ())
    assert torch.autograd.gradcheck(
        lambda x, w, b, cb=None: op(x, w, cb, b, *geometry(config), -1.5), inputs)


def reference_gradients(config, x, weight, cb, bias, grad_out, scale):
    """Gradients of the float64 reference on the CPU, in the order x, weight, conv_bias, bias."""
    leaves = with_grads([None if t is None else t.detach().cpu().double() for t in (x, weight, cb, bias)])
    reference_formula(*leaves, *geometry(config), scale).backward(grad_out.detach().cpu().double())
    return [None if t is None else t.grad for t in leaves]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", CONFIGS[:4] + [(2, 16, 12, 12, 64, 4, 2, 1, 1)], ids=str)
def test_gradients_match_reference(device, config):
    """float32 on CUDA runs the fused kernel forward and TF32 convolutions backward, as Model
    does by default: each gradient within 2e-3 of its largest reference element."""
    x, weight, cb, bias = with_grads(make_inputs(config, torch.float32, device))
    out = op(x, weight, cb, bias, *geometry(config), 2.0)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    expected = reference_gradients(config, x, weight, cb, bias, grad_out, 2.0)
    relative = 1e-5 if device == "cpu" else 2e-3
    for name, leaf, want in zip(("x", "weight", "conv_bias", "bias"), (x, weight, cb, bias), expected):
        assert leaf.grad is not None and leaf.grad.shape == leaf.shape, name
        error = max_error(leaf.grad, want.to(leaf.device))
        assert error <= relative * want.abs().max().item(), (name, error)


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_only_where_wanted(device):
    """Grads for the inputs that require them; a frozen weight is never written."""
    config = GRAD_CONFIGS[0]
    x, weight, cb, bias = make_inputs(config, torch.float32, device)
    bias.requires_grad_()
    op(x, weight, cb, bias, *geometry(config), 2.0).sum().backward()
    assert bias.grad is not None and x.grad is None and weight.grad is None and cb.grad is None
    with torch.no_grad():
        assert op(x, weight, cb, bias, *geometry(config), 2.0).grad_fn is None


def test_double_backward_is_refused_by_name():
    config = GRAD_CONFIGS[0]
    x, weight, cb, bias = with_grads(make_inputs(config, torch.float64))
    (grad_x,) = torch.autograd.grad(op(x, weight, cb, bias, *geometry(config), 2.0).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="second derivative of fused::softmax_bias_sigmoid is not implemented"):
        grad_x.sum().backward()


@pytest.mark.cuda
def test_cuda_workload_layer_gradients_match_model():
    """The workload's layer at batch 2: ModelNew's gradients against Model's (both TF32 on CUDA),
    relative error of each gradient's norm within 1e-3."""
    torch.manual_seed(0)
    model = fused_ops.Model(*MODEL_ARGS).cuda()
    model_new = fused_ops.ModelNew(*MODEL_ARGS).cuda()
    model_new.load_state_dict(model.state_dict())
    x = torch.rand(2, 64, 64, 64, device="cuda", requires_grad=True)
    x_new = x.detach().clone().requires_grad_()
    grad_out = torch.randn(2, 128, 129, 129, device="cuda")
    model(x).backward(grad_out)
    model_new(x_new).backward(grad_out)
    pairs = [("x", x_new.grad, x.grad)] + [
        (name, p.grad, dict(model.named_parameters())[name].grad) for name, p in model_new.named_parameters()]
    for name, got, want in pairs:
        relative = ((got - want).norm() / want.norm()).item()
        assert relative <= 1e-3, (name, relative)


# --- ModelNew ------------------------------------------------------------------------------

MODEL_ARGS = (64, 128, 4, 2, 1, 1, (128, 1, 1), 2.0)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_model_new_inference_matches_reference(device):
    torch.manual_seed(0)
    model = fused_ops.Model(*MODEL_ARGS).double()
    model_new = fused_ops.ModelNew(*MODEL_ARGS).to(device)
    model_new.load_state_dict(model.state_dict())
    x = torch.rand(2, 64, 16 if device == "cpu" else 64, 16 if device == "cpu" else 64, device=device)
    with torch.no_grad():
        out = model_new(x)
        expected = model.to(device)(x.double())
    assert max_error(out, expected) <= (1e-5 if device == "cpu" else CUDA_TOLERANCE)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_model_new_trains(device):
    """With gradients wanted, ModelNew takes the differentiable path: same gradients as Model."""
    torch.manual_seed(0)
    args = (4, 8, 4, 2, 1, 1, (8, 1, 1), 2.0)
    model, model_new = fused_ops.Model(*args).double().to(device), fused_ops.ModelNew(*args).to(device)
    model_new.load_state_dict(model.state_dict())
    x = torch.rand(2, 4, 5, 6, device=device)
    grad = torch.randn(2, 8, 11, 13, device=device)
    model_new(x).backward(grad)
    model(x.double()).backward(grad.double())
    relative = 1e-5 if device == "cpu" else 2e-3  # TF32 convolutions on CUDA
    for name, parameter in model_new.named_parameters():
        reference_grad = dict(model.named_parameters())[name].grad
        assert parameter.grad is not None, name
        error = (parameter.grad.double() - reference_grad).abs().max().item()
        assert error <= relative * max(1.0, reference_grad.abs().max().item()), (name, error)
