"""The GPU cases that .ci/sanitize runs under compute-sanitizer (memcheck, racecheck, initcheck):
edge shapes, layouts and dtypes, each checked against the float64 reference too, so a clean
sanitizer report also means right answers. The inputs are the samples of tests/samples.py.
Not a pytest module; run it directly:

    python tests/sanitizer_cases.py [--list | --canary] [NAME_SUBSTRING ...]

CASES is a list of (name, callable); a new op or a backward adds its callables to it. Inputs
are made on the CPU and copied over, so that the sanitized kernels are ours, not torch's.
Exits with 1 if any case fails.
"""
import sys
import traceback

import torch

import fused_ops  # noqa: F401  (registers torch.ops.fused)
from conftest import assert_matches_reference, reference_gradients
from samples import (CONV_CONFIGS, LARGER_CONV_CONFIGS, SHAPES, layouts, make_conv_inputs, softmax_bias_sigmoid_samples,
                     to_device)
from samples import geometry as conv_geometry

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def sample(shape, dtype, layout, seed):
    """The sample of tests/samples.py for (shape, dtype, layout): x and bias, on the CPU."""
    return next((x, bias) for name, x, bias in softmax_bias_sigmoid_samples(dtype, [shape], seed)
                if name.endswith(" " + layout))


def forward_case(shape, dtype, layout, scale=-1.5):
    def run():
        view, bias = sample(shape, dtype, layout, seed=0)
        out = torch.ops.fused.softmax_bias_sigmoid(to_device(view, "cuda"), bias.cuda(), scale)
        # A dense output comes back by a plain copy, which initcheck watches: an element the
        # kernel never wrote is reported as an uninitialized read.
        assert_matches_reference(out.cpu(), view, bias, scale)
    return run


def forward_cases():
    for shape in SHAPES:
        for dtype in DTYPES:
            for layout, _ in layouts(torch.empty(shape)):
                name = f"softmax_bias_sigmoid {shape} {str(dtype).removeprefix('torch.')} {layout}"
                yield name, forward_case(shape, dtype, layout)


def backward_case(shape, dtype, layout, scale=-1.5):
    """The backward as autograd runs it: the forward's softmax statistics, then the backward
    (reading them where its tile can)."""
    def run():
        view, bias = sample(shape, dtype, layout, seed=1)
        grad_out = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).to(dtype)
        _, stats = torch.ops.fused.softmax_bias_sigmoid_forward(to_device(view, "cuda"), bias.cuda(), scale)
        grad_x, grad_bias = torch.ops.fused.softmax_bias_sigmoid_backward(
            to_device(grad_out, "cuda"), to_device(view, "cuda"), bias.cuda(), scale, stats)
        expected_x, expected_bias = reference_gradients(view, bias, scale, grad_out)
        tolerance = 1e-5 if dtype == torch.float32 else 3e-2
        assert (grad_x.cpu().double() - expected_x).abs().max().item() <= tolerance
        assert (grad_bias.cpu().double() - expected_bias).abs().max().item() <= tolerance * shape[0] * 64
    return run


def backward_cases():
    for shape in SHAPES:
        for dtype in (torch.float32, torch.bfloat16):
            for layout in ("contiguous", "channels_last", "misaligned"):
                if layout == "channels_last" and len(shape) != 4:
                    continue
                name = f"softmax_bias_sigmoid_backward {shape} {str(dtype).removeprefix('torch.')} {layout}"
                yield name, backward_case(shape, dtype, layout)


def conv_case(config, path):
    """fused::conv_transpose2d_softmax_bias_sigmoid: (N, C_in, H, W, C_out, kernel, stride,
    padding, output_padding), against float64 ATen; TF32's precision on CUDA as PyTorch's own
    convolution. path "fused" runs fp16_operands and the fused kernel; "fallback" turns TF32 off,
    so ATen's convolution runs and the tail writes the NCHW output from it; "backward" also checks
    the gradients, whose tail backward writes grad_y over the recomputed convolution output."""
    def run():
        generator = torch.Generator().manual_seed(2)
        x, weight, conv_bias, bias = make_conv_inputs(config, torch.float64, generator=generator)
        geometry = conv_geometry(config)
        inputs = [t.float().cuda().requires_grad_(path == "backward") for t in (x, weight, conv_bias, bias)]
        tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = path != "fallback"
        try:
            out = torch.ops.fused.conv_transpose2d_softmax_bias_sigmoid(*inputs, *geometry, 2.0)
            reference = [t.requires_grad_(path == "backward") for t in (x, weight, conv_bias, bias)]
            y = torch.nn.functional.conv_transpose2d(*reference[:3], *geometry)
            expected = torch.sigmoid((torch.softmax(y, dim=1) + reference[3].reshape(1, -1, 1, 1)) * 2.0)
            assert (out.detach().cpu().double() - expected.detach()).abs().max().item() <= 1e-4
            if path == "backward":
                grad_out = torch.randn(expected.shape, dtype=torch.float64, generator=generator)
                got = torch.autograd.grad(out, inputs, grad_out.float().cuda())
                wanted = torch.autograd.grad(expected, reference, grad_out)
                for g, e in zip(got, wanted):
                    assert (g.cpu().double() - e).norm().item() <= 1e-3 * e.norm().item()
        finally:
            torch.backends.cudnn.allow_tf32 = tf32
    return run


CASES = [*forward_cases(), *backward_cases(),
         *((f"conv_transpose2d_softmax_bias_sigmoid {path} {c}", conv_case(c, path))
           for c in CONV_CONFIGS + LARGER_CONV_CONFIGS for path in ("fused", "fallback", "backward"))]


def canary():
    """The tail op reading a fresh cudaMalloc that nothing wrote: initcheck must report it, which
    shows that .ci/sanitize's kernel filter selects our kernels (a filter that matched none would
    pass every case unchecked)."""
    x = torch.empty(2, 8, 16, 16, device="cuda")
    torch.ops.fused.softmax_bias_sigmoid(x, torch.zeros(8, 1, 1, device="cuda"), 1.0)
    torch.cuda.synchronize()


def main(argv):
    if "--canary" in argv:
        canary()
        return 0
    if "--list" in argv:
        print("\n".join(name for name, _ in CASES))
        return 0
    wanted = [arg for arg in argv if not arg.startswith("-")]
    selected = [(name, run) for name, run in CASES if not wanted or any(w in name for w in wanted)]
    failures = []
    for name, run in selected:
        try:
            run()
        except Exception:
            failures.append(name)
            print(f"FAILED {name}\n{traceback.format_exc()}", flush=True)
    print(f"sanitizer cases: {len(selected) - len(failures)} of {len(selected)} right", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
