"""The GPU cases that .ci/sanitize runs under compute-sanitizer (memcheck, racecheck, initcheck):
edge shapes, layouts and dtypes, each checked against the float64 reference too, so a clean
sanitizer report also means right answers. Not a pytest module; run it directly:

    python tests/sanitizer_cases.py [--list] [NAME_SUBSTRING ...]

CASES is a list of (name, callable); a new op or a backward adds its callables to it. Inputs
are made on the CPU and copied over, so that the sanitized kernels are ours, not torch's.
Exits with 1 if any case fails.
"""
import sys
import traceback

import torch

import fused_ops  # noqa: F401  (registers torch.ops.fused)
from conftest import assert_matches_reference, ending_its_storage, reference_gradients

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SHAPES = [
    (2, 1, 5, 5),        # C = 1
    (3, 7, 9, 11),       # C not a power of 2, odd spatial sizes
    (2, 3, 1, 1),        # 1x1 spatial
    (2, 128, 17, 19),    # the workload's C
    (20, 128, 17, 19),   # the same past the small-tensor tiles (over 1 MB): whole-sector stores
    (400, 3, 16, 32),    # rows on 16 bytes, few channels, past the small-tensor tiles: 4-channel tile
    (2, 1025, 3, 5),     # just past the widest single-pass tile: two-pass
    (1, 4100, 2, 3),     # two-pass with a partial last chunk
    (1, 16, 2049),       # rank 3, a partial last block of positions
    (2, 5, 2, 64),       # every other position: rows of 64, read as contiguous spans
    (1, 4100, 2, 32),    # the same with the two-pass tile
    (5, 1000),           # rank 2
    (2, 3, 4, 5, 6),     # rank 5
]


def layouts(x):
    """Contiguous, channels_last, strided views, a misaligned data pointer and the layout that
    runs on a contiguous copy; all made on the CPU, where a copy is no kernel launch."""
    yield "contiguous", x
    if x.dim() == 4:
        yield "channels_last", x.to(memory_format=torch.channels_last)
    if x.dim() >= 3:
        every_other = torch.cat([x, x], dim=-1)[..., ::2]
        yield "every_other_position", every_other
        # Rows on 16 bytes, and nothing after the last position's element: a whole span read
        # (the aligned span tiles) would leave x's storage.
        yield "every_other_position_ending_storage", ending_its_storage(every_other)
        # Rows of odd length, also with nothing after the last position's element: the unaligned
        # span tiles mask that element, and reading it would leave x's storage.
        yield "every_other_position_to_the_end", torch.cat([x, x], dim=-1)[..., :-1].contiguous()[..., ::2]
    yield "misaligned", torch.empty(x.numel() + 1, dtype=x.dtype)[1:].view(x.shape).copy_(x)
    if x.dim() == 5:
        yield "three_spatial_groups", torch.cat([x, x], dim=2).permute(0, 1, 3, 4, 2)[:, :, ::2, :, ::2]


def to_cuda(t):
    """t on the GPU with the same strides and storage offset (a plain host-to-device copy)."""
    storage = torch.empty(0, dtype=t.dtype).set_(t.untyped_storage()).cuda()
    return storage.as_strided(t.shape, t.stride(), t.storage_offset())


def seeded_inputs(shape, dtype, layout, seed):
    """x in `layout` and bias, drawn in float64 from a generator seeded with `seed`, which is
    returned too for the case to draw further tensors from."""
    generator = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, dtype=torch.float64, generator=generator) * 3).to(dtype)
    view = dict(layouts(x))[layout]
    bias = torch.randn(shape[1], dtype=torch.float64, generator=generator).to(dtype)
    return view, bias, generator


def forward_case(shape, dtype, layout, scale=-1.5):
    def run():
        view, bias, _ = seeded_inputs(shape, dtype, layout, seed=0)
        out = torch.ops.fused.softmax_bias_sigmoid(to_cuda(view), bias.cuda(), scale)
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
        view, bias, generator = seeded_inputs(shape, dtype, layout, seed=1)
        grad_out = torch.randn(shape, dtype=torch.float64, generator=generator).to(dtype)
        _, stats = torch.ops.fused.softmax_bias_sigmoid_forward(to_cuda(view), bias.cuda(), scale)
        grad_x, grad_bias = torch.ops.fused.softmax_bias_sigmoid_backward(
            to_cuda(grad_out), to_cuda(view), bias.cuda(), scale, stats)
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
    padding, output_padding), against float64 ATen; TF32 on CUDA as PyTorch's own convolution.
    path "fused" runs the fused kernel; "fallback" turns TF32 off, so the convolution runs in
    channels_last and the tail writes the NCHW output from it; "backward" also checks the
    gradients, whose tail backward writes grad_y over the recomputed convolution output."""
    def run():
        n, c_in, h, w, c_out, kernel, stride, padding, output_padding = config
        generator = torch.Generator().manual_seed(2)
        x = torch.rand(n, c_in, h, w, dtype=torch.float64, generator=generator)
        weight = (torch.rand(c_in, c_out, kernel, kernel, dtype=torch.float64, generator=generator) - 0.5) / 8
        conv_bias = torch.rand(c_out, dtype=torch.float64, generator=generator) - 0.5
        bias = torch.randn(c_out, dtype=torch.float64, generator=generator)
        geometry = ([stride] * 2, [padding] * 2, [output_padding] * 2)
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


# The workload's layer at batch 1, an even output width, a stride of 3, a C_out of no power of 2.
CONV_CONFIGS = [(1, 64, 16, 16, 128, 4, 2, 1, 1), (1, 16, 7, 8, 32, 4, 2, 1, 0),
                (1, 8, 5, 6, 16, 3, 3, 0, 0), (1, 12, 6, 6, 100, 4, 2, 1, 1)]

CASES = [*forward_cases(), *backward_cases(),
         *((f"conv_transpose2d_softmax_bias_sigmoid {path} {c}", conv_case(c, path))
           for c in CONV_CONFIGS for path in ("fused", "fallback", "backward"))]


def main(argv):
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
