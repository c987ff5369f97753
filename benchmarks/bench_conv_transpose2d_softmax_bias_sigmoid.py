"""Benchmark of ModelNew (fused_ops.conv_transpose2d_softmax_bias_sigmoid) on the workload, in
every way it is called, against the reference Model and its alternatives, in one run.

    python benchmarks/bench_conv_transpose2d_softmax_bias_sigmoid.py [--sweep [--sweep-dtype fp16]] [--max-autotune] [--out DIR]

On fresh random inputs (x of shape (128, 64, 64, 64), weight (64, 128, 4, 4), stride 2, padding 1,
output_padding 1, bias (128, 1, 1), scale 2.0) it checks ModelNew against the eager Model and a
float64 reference, then times (medians of triton.testing.do_bench, L2 cleared before each run):

- inference under torch.no_grad(): Model eager, torch.compile(Model) (and with
  --max-autotune its max-autotune mode), ModelNew, the unfused route (ATen's convolution, then
  the fused tail op), and the floors: writing the output once and copying it;
- a plain forward with the parameters requiring grad (how KernelBench's evaluator and most
  users call a model): Model eager, torch.compile(Model), ModelNew;
- a training step (forward, then backward from a random gradient): time and peak memory above
  what was allocated before it;
- with TF32 convolutions turned off, outside the fused kernel: Model eager, torch.compile(Model),
  ModelNew's fallback, and the NCHW route it replaced;
- in fp16 and bf16, under no_grad and with grad enabled: Model eager, torch.compile(Model) and
  ModelNew in that dtype, and their errors against float64.

With --sweep it also JIT-compiles the kernel of triton_src/ over tile configurations (in the dtype
--sweep-dtype names), checks and times each, and breaks the best down: "conv only" stores the convolution without the softmax
tail (BREAKDOWN=1, the main loop plus a store), "epilogue only" skips the main loop (BREAKDOWN=2).
The numbers go to DIR/conv_transpose2d_softmax_bias_sigmoid-<device>.json; a short table is last.

A dev tool: it imports Triton, the package does not. `jit_forward` launches the kernels the way
csrc/ops/conv_transpose2d_softmax_bias_sigmoid.cpp does (the tests run it in Triton's interpreter).
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
import triton.testing

TRITON_SRC = Path(__file__).resolve().parents[1] / "triton_src"
sys.path.insert(0, str(TRITON_SRC))  # the kernel modules import their siblings


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"triton_src_{name}", TRITON_SRC / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


kernels = _load("conv_transpose2d_softmax_bias_sigmoid")
operands = _load("fp16_operands")

# in_channels, out_channels, kernel_size, stride, padding, output_padding, bias_shape, scaling_factor
MODEL_ARGS = (64, 128, 4, 2, 1, 1, (128, 1, 1), 2.0)
X_SHAPE = (128, 64, 64, 64)
TOLERANCE = 1e-4  # KernelBench's, for fp32
# The sweep's dtypes, each with the largest error against the fp32 Model it accepts: about twice
# the eager Model's own in that dtype (docs/performance.md).
SWEEP_DTYPES = {"fp32": (torch.float32, TOLERANCE), "fp16": (torch.float16, 1e-3), "bf16": (torch.bfloat16, 8e-3)}
GOAL_MS = 0.70


# --- the launcher, in Python ---------------------------------------------------------------

def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def phase_count(pad: int, first: int, last: int, stride: int, out_size: int) -> int:
    lo = (pad - last + 2 * stride - 1) // stride - 1
    hi = (out_size - 1 + pad - first + stride) // stride
    return max(hi - lo, 0)


def phase_weight(weight: torch.Tensor, stride: tuple[int, int]):
    """[phase (r_h, r_w)][C_out][tap (t_h, t_w)][C_in], kernel row kh = r_h + stride_h * t_h."""
    c_in, c_out, kh, kw = weight.shape
    taps_h, taps_w = ceil_div(kh, stride[0]), ceil_div(kw, stride[1])
    padded = F.pad(weight, (0, taps_w * stride[1] - kw, 0, taps_h * stride[0] - kh))
    arranged = padded.view(c_in, c_out, taps_h, stride[0], taps_w, stride[1]).permute(3, 5, 1, 2, 4, 0)
    return arranged.contiguous(), taps_h, taps_w


def fp16_operands(src: torch.Tensor, rows: int, row_max: torch.Tensor) -> torch.Tensor:
    """`src` (fp32, contiguous) as fp16 scaled per row, its rows' largest magnitudes in row_max."""
    dst = torch.empty(src.shape, device=src.device, dtype=torch.float16)
    row_length = src.numel() // rows
    variant = next(v for v in operands.VARIANTS if v["ALIGNED"] == 0)
    for convert in (0, 1):
        operands.fp16_operands[(rows * ceil_div(row_length, variant["BLOCK"]),)](
            src, row_max, dst, row_length, CONVERT=convert, ALIGNED=0, BLOCK=variant["BLOCK"],
            num_warps=variant["num_warps"])
    return dst


def jit_forward(x, weight, conv_bias, bias, stride, padding, output_padding, scale, *, config,
                breakdown=0, compiled=None):
    """The op through the JIT, with `config` the kernel's tile (BLOCK_M, BLOCK_N, BLOCK_K,
    num_warps, num_stages); `compiled` collects the compiled fused kernel. fp32 runs on fp16
    operands, as the library's launcher does."""
    n, c_in, h, w = x.shape
    c_out, kh, kw = weight.shape[1:]
    h_out = (h - 1) * stride[0] - 2 * padding[0] + kh + output_padding[0]
    w_out = (w - 1) * stride[1] - 2 * padding[1] + kw + output_padding[1]
    weights, taps_h, taps_w = phase_weight(weight, stride)
    conv_bias = conv_bias if conv_bias is not None else torch.zeros(c_out, device=x.device, dtype=x.dtype)
    out = torch.empty(n, c_out, h_out, w_out, device=x.device, dtype=x.dtype)
    x = x.contiguous()
    row_max = torch.zeros(n + 1, device=x.device)  # read by fp32 alone
    if x.dtype == torch.float32:
        weights = fp16_operands(weights, 1, row_max[:1])
        x = fp16_operands(x, n, row_max[1:])
    w_phases = 2 if stride[1] == 2 else 1
    groups = stride[0] if w_phases == 2 else stride[0] * stride[1]
    most = 0
    for group in range(groups):
        r_h, r_w = (group, 0) if w_phases == 2 else divmod(group, stride[1])
        cols = phase_count(padding[1], r_w, r_w + w_phases - 1, stride[1], w_out)
        most = max(most, phase_count(padding[0], r_h, r_h, stride[0], h_out) * (cols + cols % 2))
    tiles = ceil_div(most, config["BLOCK_M"])
    kernel = kernels.conv_transpose2d_softmax_bias_sigmoid[(n * groups * tiles,)](
        x, weights, conv_bias.reshape(-1), bias.reshape(-1), out, row_max,
        c_in, h, w, c_out, h_out, w_out, *stride, *padding, taps_h, taps_w, groups, tiles, scale,
        W_PHASES=w_phases, ALIGNED=0, BREAKDOWN=breakdown, **config)  # the JIT specializes on alignment
    if compiled is not None:
        compiled.append(kernel)
    return out


# --- the sweep -----------------------------------------------------------------------------

TILE_KEYS = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "num_warps", "num_stages")


def tile(block_m, block_k, num_warps, num_stages, block_n=128):
    return dict(BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=num_warps, num_stages=num_stages)


def aot_tile(dtype: str = "fp32") -> dict:
    """The AOT table's first (fastest) tile of the dtype for stride_w == 2."""
    first = next(v for v in kernels.VARIANTS if v["W_PHASES"] == 2 and dtype in v["dtypes"])
    return {k: first[k] for k in TILE_KEYS}


def sweep_configs(dtype: str = "fp32") -> list[dict]:
    configs = [tile(m, k, w, s) for m, w in ((64, 4), (64, 8), (128, 8)) for k in (16, 32, 64) for s in (2, 3, 4)]
    if aot_tile(dtype) not in configs:
        configs.append(aot_tile(dtype))
    return configs


def describe(config) -> str:
    return "M{BLOCK_M} K{BLOCK_K} w{num_warps} s{num_stages}".format(**config)


def bench(fn, rep=100) -> float:
    return triton.testing.do_bench(fn, warmup=10, rep=rep, return_mode="median")


def max_abs_error(actual, expected) -> float:
    return torch.sub(actual, expected).abs_().max().item()


def training_step(model, x, grad):
    """Forward and backward; the time and the allocator's peak above what was allocated before."""
    def step():
        model(x).backward(grad)
    step()
    model.zero_grad(set_to_none=False)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    peak_gib = (torch.cuda.max_memory_allocated() - base) / 2**30
    return bench(step, rep=200), peak_gib


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", action="store_true", help="also sweep the kernel's tiles through the JIT")
    parser.add_argument("--sweep-dtype", choices=sorted(SWEEP_DTYPES), default="fp32",
                        help="the dtype the sweep runs the kernel in (default fp32)")
    parser.add_argument("--max-autotune", action="store_true", help="also time torch.compile(mode='max-autotune')")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_conv_transpose2d_softmax_bias_sigmoid: needs a CUDA GPU; torch sees none")
        return 2
    import fused_ops
    from fused_ops import Model, ModelNew

    from bench_softmax_bias_sigmoid import run_info, write_results

    started = time.monotonic()
    info = run_info("conv_transpose2d_softmax_bias_sigmoid")
    print(f"TF32 convolutions: {torch.backends.cudnn.allow_tf32}")
    seed = int(time.time())
    torch.manual_seed(seed)
    model = Model(*MODEL_ARGS).cuda()
    model_new = ModelNew(*MODEL_ARGS).cuda()
    model_new.load_state_dict(model.state_dict())
    conv = model.conv_transpose
    geometry = (conv.stride, conv.padding, conv.output_padding)
    scale = model.scaling_factor
    x = torch.rand(X_SHAPE, device="cuda")
    report = {**info, "seed": seed,
              "timing": "median of triton.testing.do_bench, L2 cleared before each run",
              "workload": {"x": list(X_SHAPE), "model_args": list(MODEL_ARGS[:6]) + [list(MODEL_ARGS[6]), MODEL_ARGS[7]]}}

    with torch.no_grad():
        expected = model(x)
        torch.empty_like(expected).fill_(float("nan"))  # an unwritten output element shows as NaN
        out = model_new(x)
        report["max_abs_err_model_new_vs_eager"] = max_abs_error(out, expected)
        small = x[:4].double()
        reference64 = torch.sigmoid((torch.softmax(F.conv_transpose2d(
            small, conv.weight.double(), conv.bias.double(), *geometry), dim=1) + model.bias.double()) * scale)
        report["max_abs_err_model_new_vs_float64_first_4"] = max_abs_error(out[:4].double(), reference64)
        report["max_abs_err_model_vs_float64_first_4"] = max_abs_error(expected[:4].double(), reference64)
        del reference64, small, out
    print(f"ModelNew vs eager Model: max abs error {report['max_abs_err_model_new_vs_eager']:.2e}; vs float64 "
          f"(first 4 samples) {report['max_abs_err_model_new_vs_float64_first_4']:.2e} (Model: "
          f"{report['max_abs_err_model_vs_float64_first_4']:.2e})", flush=True)

    compile_name = "torch.compile(Model)"
    compiled = {compile_name: torch.compile(model)}
    if args.max_autotune:
        compiled["torch.compile(Model, max-autotune)"] = torch.compile(model, mode="max-autotune")
    op_args = (x, conv.weight, conv.bias, model.bias, *geometry, scale)
    timings = {"no_grad": {}, "grad_enabled": {}, "training_step": {}}
    with torch.no_grad():
        fill_target = torch.empty_like(expected)
        rows = {"Model, eager": lambda: model(x),
                **{name: (lambda m=m: m(x)) for name, m in compiled.items()},
                "ModelNew": lambda: model_new(x),
                "unfused: ATen conv_transpose2d + fused tail op": lambda: fused_ops.softmax_bias_sigmoid(
                    F.conv_transpose2d(x, conv.weight, conv.bias, *geometry), model.bias, scale),
                "floor: write the output once (fill_)": lambda: fill_target.fill_(0.5),
                "floor: copy the output": lambda: fill_target.copy_(expected)}
        for name, fn in rows.items():
            timings["no_grad"][name] = bench(fn)
            print(f"  no_grad  {name}: {timings['no_grad'][name]:.3f} ms", flush=True)
        del fill_target
    for name, fn in {"Model, eager": lambda: model(x),
                     **{n: (lambda m=m: m(x)) for n, m in compiled.items()},
                     "ModelNew": lambda: model_new(x)}.items():
        timings["grad_enabled"][name] = bench(fn)
        print(f"  grad     {name}: {timings['grad_enabled'][name]:.3f} ms", flush=True)
    grad = torch.randn_like(expected)
    del expected
    peaks = {}
    for name, m in {"Model, eager": model, **compiled, "ModelNew": model_new}.items():
        timings["training_step"][name], peaks[name] = training_step(m, x, grad)
        print(f"  training {name}: {timings['training_step'][name]:.3f} ms, peak {peaks[name]:.2f} GiB", flush=True)
    report["timings_ms"] = timings
    report["training_step_peak_gib"] = peaks

    # The workload's gradients against Model's, from the same upstream gradient.
    for m in (model, model_new):
        m.zero_grad(set_to_none=True)
        m(x).backward(grad)
    ref_grads = dict(model.named_parameters())
    report["gradient_relative_error"] = {
        name: (p.grad - ref_grads[name].grad).norm().item() / ref_grads[name].grad.norm().item()
        for name, p in model_new.named_parameters()}
    print(f"  gradients vs Model (relative): {report['gradient_relative_error']}", flush=True)
    del grad

    # Outside the fused kernel (here: TF32 convolutions turned off), ModelNew's fallback against
    # the same models and the NCHW route it replaced.
    timings["tf32_off"] = {}
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            for name, fn in {"Model, eager": lambda: model(x),
                             **{n: (lambda m=m: m(x)) for n, m in compiled.items()},
                             "ModelNew": lambda: model_new(x),
                             "unfused NCHW: ATen conv_transpose2d + fused tail op": lambda: fused_ops.softmax_bias_sigmoid(
                                 F.conv_transpose2d(x, conv.weight, conv.bias, *geometry), model.bias, scale)}.items():
                timings["tf32_off"][name] = bench(fn)
                print(f"  TF32 off {name}: {timings['tf32_off'][name]:.3f} ms", flush=True)
            report["max_abs_err_model_new_vs_eager_tf32_off"] = max_abs_error(model_new(x), model(x))
    finally:
        torch.backends.cudnn.allow_tf32 = True
    compiled.clear()
    torch.compiler.reset()

    # Half precision: the layer in fp16 and bf16, ModelNew (the fused kernel) against Model and
    # torch.compile(Model) in the same dtype, and each one's error against float64.
    report["half_precision_max_abs_err_first_4"] = {}
    for dtype_name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        half_model, half_new = copy.deepcopy(model).to(dtype), copy.deepcopy(model_new).to(dtype)
        half_compiled = torch.compile(half_model)
        x_half = x.to(dtype)
        with torch.no_grad():
            small = x_half[:4].double()
            reference64 = torch.sigmoid((torch.softmax(F.conv_transpose2d(
                small, half_model.conv_transpose.weight.double(), half_model.conv_transpose.bias.double(),
                *geometry), dim=1) + half_model.bias.double()) * scale)
            report["half_precision_max_abs_err_first_4"][dtype_name] = {
                name: max_abs_error(m(x_half[:4]).double(), reference64)
                for name, m in (("ModelNew", half_new), ("Model, eager", half_model))}
            del reference64, small
        candidates = {"Model, eager": half_model, compile_name: half_compiled, "ModelNew": half_new}
        for mode, grad_mode in (("no_grad", torch.no_grad), ("grad_enabled", torch.enable_grad)):
            timings[f"{dtype_name}_{mode}"] = {}
            with grad_mode():
                for name, m in candidates.items():
                    timings[f"{dtype_name}_{mode}"][name] = bench(lambda m=m: m(x_half))
                    print(f"  {dtype_name} {mode} {name}: {timings[f'{dtype_name}_{mode}'][name]:.3f} ms", flush=True)
        del half_model, half_new, half_compiled, x_half, candidates
        torch.compiler.reset()
    print(f"  half precision errors vs float64: {report['half_precision_max_abs_err_first_4']}", flush=True)

    breakdown = {}
    if args.sweep:
        sweep = []
        sweep_dtype, sweep_tolerance = SWEEP_DTYPES[args.sweep_dtype]
        sweep_args = tuple(a.detach().to(sweep_dtype) if isinstance(a, torch.Tensor) else a for a in op_args)
        report["sweep_dtype"] = args.sweep_dtype
        with torch.no_grad():
            expected = model(x)
            for config in sweep_configs(args.sweep_dtype):
                entry = dict(config)
                try:
                    launched = []
                    run = lambda: jit_forward(*sweep_args, config=config, compiled=launched)  # noqa: E731
                    entry["max_abs_err"] = max_abs_error(run(), expected)
                    entry.update(registers=launched[0].n_regs, spills=launched[0].n_spills,
                                 shared_bytes_sm90=launched[0].metadata.shared)
                    entry["ms"] = bench(run)
                except Exception as error:  # noqa: BLE001 - out of resources etc.: reported, the sweep goes on
                    entry["error"] = f"{type(error).__name__}: {str(error).strip()[:160]}"
                sweep.append(entry)
                print(f"  sweep {describe(config)}: " + (
                    f"{entry['ms']:.3f} ms, err {entry['max_abs_err']:.1e}, {entry['registers']} regs, "
                    f"{entry['spills']} spills, {entry['shared_bytes_sm90']} B shared" if "ms" in entry
                    else entry.get("error", "")), flush=True)
            report["sweep"] = sweep
            ranked = sorted((e for e in sweep if "ms" in e and e["max_abs_err"] <= sweep_tolerance), key=lambda e: e["ms"])
            for label, config in (("best", ranked[0] if ranked else None), ("aot", aot_tile(args.sweep_dtype))):
                if config is None:
                    continue
                config = {k: config[k] for k in TILE_KEYS}
                parts = {"full": 0, "conv only (BREAKDOWN=1)": 1, "epilogue only (BREAKDOWN=2)": 2}
                breakdown[label] = {"config": describe(config), **{
                    name: bench(lambda: jit_forward(*sweep_args, config=config, breakdown=mode))
                    for name, mode in parts.items()}}
        report["breakdown_ms"] = breakdown

    write_results(report, args.out)
    print(f"({time.monotonic() - started:.0f} s)")

    # The short table, last.
    modes = ("no_grad", "grad_enabled", "training_step", "tf32_off")
    print(f"\n{'ms (' + info['device'] + ')':<52}{'no_grad':>9}{'grad':>9}{'train':>9}{'no TF32':>9}{'peak GiB':>9}")
    for name in {**timings["no_grad"], **timings["tf32_off"]}:
        cells = [timings[mode].get(name) for mode in modes]
        print(f"  {name:<50}" + "".join(f"{c:9.3f}" if c is not None else f"{'':>9}" for c in cells)
              + (f"{peaks[name]:9.2f}" if name in peaks else ""))
    for mode in modes:
        ours, theirs = timings[mode]["ModelNew"], timings[mode][compile_name]
        print(f"  {mode}: ModelNew is {theirs / ours:.2f}x as fast as {compile_name}")
    for dtype_name in ("fp16", "bf16"):
        errors = report["half_precision_max_abs_err_first_4"][dtype_name]
        print(f"  {dtype_name}: " + ", ".join(
            f"{mode} ModelNew {timings[f'{dtype_name}_{mode}']['ModelNew']:.3f} ms, {compile_name} "
            f"{timings[f'{dtype_name}_{mode}'][compile_name]:.3f} ms "
            f"({timings[f'{dtype_name}_{mode}'][compile_name] / timings[f'{dtype_name}_{mode}']['ModelNew']:.2f}x)"
            for mode in ("no_grad", "grad_enabled"))
            + f"; error vs float64 {errors['ModelNew']:.1e} (Model {errors['Model, eager']:.1e})")
    for label, parts in breakdown.items():
        print(f"  breakdown {label} {parts['config']}: " + ", ".join(
            f"{k} {v:.3f}" for k, v in parts.items() if k != "config"))
    model_new_ms = timings["no_grad"]["ModelNew"]
    passed = report["max_abs_err_model_new_vs_eager"] <= TOLERANCE
    print(f"\nModelNew {model_new_ms:.3f} ms under no_grad (goal {GOAL_MS} ms: "
          f"{'met' if model_new_ms <= GOAL_MS else 'not met'}); accuracy {'PASS' if passed else 'FAIL'} "
          f"(max abs error vs eager {report['max_abs_err_model_new_vs_eager']:.1e}, tolerance {TOLERANCE:g})")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
