"""Benchmark of training with fused_ops: the fused backward kernel, and a whole training step.

    python benchmarks/bench_backward.py [--out DIR]

1. fused::softmax_bias_sigmoid_backward on the workload's conv output and a few other cases, as
   autograd runs it (reading the softmax statistics of fused::softmax_bias_sigmoid_forward),
   checked against eager autograd of the reference tail, timed against a device copy of the
   bytes it must move: it reads x and grad_out and writes grad_x (3 tensors; the statistics
   are 2/C of one), so the floor is a copy of a buffer 1.5 times the size of x (read + write =
   3 tensors' worth). Also timed: the same op recomputing the statistics (no softmax_stats),
   the eager autograd backward of the reference tail, and the forward with and without
   writing the statistics against a copy of x.
2. A training step (forward, then backward of a fixed random output gradient, parameter
   gradients included) on the workload of ../shared/WORKLOAD.md: ModelNew, torch.compile of
   the reference Model, and the eager Model.

Medians on fresh random inputs (timing as in bench_softmax_bias_sigmoid.py); results go to
DIR/softmax_bias_sigmoid_backward-<device>.json. A dev tool: it imports Triton, the package does not.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch

import fused_ops
from bench_softmax_bias_sigmoid import TIMING, WORKLOAD, Case, make_input, run_info, time_ms, write_results
from fused_ops.__main__ import GPU_CASE, MODEL_ARGS, reference_tail

SCALE = 2.0
KERNEL_CASES = [
    WORKLOAD,
    Case(16, 128, 128, 128, "fp32", "channels_last"),
    Case(16, 128, 128, 128, "bf16"),
    Case(16, 3, 128, 128, "fp32"),
    Case(16, 1000, 64, 64, "fp32"),  # the widest single-pass tile, [1024, 8]
    Case(16, 4096, 32, 32, "fp32"),  # the multi-pass kernel
]
# Against eager fp32 autograd of the tail: grad_x in absolute terms, grad_bias (a sum over
# N * positions values) relative to its largest value.
TOLERANCE = {"fp32": 1e-5, "fp16": 2e-3, "bf16": 2e-2}

backward_op = torch.ops.fused.softmax_bias_sigmoid_backward
forward_op = torch.ops.fused.softmax_bias_sigmoid_forward


def check_kernel(x: torch.Tensor, bias: torch.Tensor, grad_out: torch.Tensor) -> dict:
    stats = forward_op(x, bias, SCALE)[1]
    torch.empty_like(x).fill_(float("nan"))  # an element the kernel fails to write shows up
    grad_x, grad_bias = backward_op(grad_out, x, bias, SCALE, stats)
    # detach(): for fp32, float() is x itself, which requires_grad_() would change for the caller.
    x32 = x.detach().float().requires_grad_()
    bias32 = bias.detach().float().requires_grad_()
    reference_tail(x32, bias32, SCALE).backward(grad_out.float())
    return {"grad_x_max_abs_err": torch.sub(grad_x.float(), x32.grad).abs_().max().item(),
            "grad_bias_max_rel_err": (torch.sub(grad_bias.float(), bias32.grad).abs().max()
                                      / bias32.grad.abs().max()).item()}


def run_kernel_case(case: Case) -> dict:
    x = make_input(case).detach()
    bias = torch.randn(case.channels, 1, 1, device="cuda", dtype=x.dtype)
    grad_out = torch.randn_like(x)
    result = {"case": case.label, **check_kernel(x, bias, grad_out)}
    result["passed"] = max(result["grad_x_max_abs_err"], result["grad_bias_max_rel_err"]) <= TOLERANCE[case.dtype]

    # Fresh inputs for the timing, unrelated to the checked ones.
    x, grad_out = make_input(case).detach(), make_input(case).detach()
    stats = forward_op(x, bias, SCALE)[1]
    copy_source = torch.empty(x.numel() * 3 // 2, device="cuda", dtype=x.dtype).normal_()
    copy_target = torch.empty_like(copy_source)
    x_leaf, bias_leaf = x.detach().requires_grad_(), bias.detach().requires_grad_()
    eager_out = reference_tail(x_leaf, bias_leaf, SCALE)
    candidates: dict[str, Callable[[], object]] = {
        "fused_backward": lambda: backward_op(grad_out, x, bias, SCALE, stats),
        "copy_1.5x": lambda: copy_target.copy_(copy_source),
        "fused_backward_recomputing": lambda: backward_op(grad_out, x, bias, SCALE),
        "eager_backward": lambda: torch.autograd.grad(eager_out, (x_leaf, bias_leaf), grad_out, retain_graph=True),
        "fused_forward": lambda: torch.ops.fused.softmax_bias_sigmoid(x, bias, SCALE),
        "fused_forward_with_stats": lambda: forward_op(x, bias, SCALE),
        "copy_1x": lambda: copy_target[:x.numel()].copy_(copy_source[:x.numel()]),
    }
    result["ms"] = {name: time_ms(fn) for name, fn in candidates.items()}
    moved_bytes = 3 * x.numel() * x.element_size()
    result["bytes"] = moved_bytes
    result["fused_over_copy"] = result["ms"]["fused_backward"] / result["ms"]["copy_1.5x"]
    result["recomputing_over_copy"] = result["ms"]["fused_backward_recomputing"] / result["ms"]["copy_1.5x"]
    result["forward_with_stats_over_copy"] = result["ms"]["fused_forward_with_stats"] / result["ms"]["copy_1x"]
    result["fused_gb_per_s"] = moved_bytes / result["ms"]["fused_backward"] / 1e6
    return result


def training_steps() -> dict:
    """ms per training step on the workload, by model."""
    torch.manual_seed(0)
    reference = fused_ops.Model(*MODEL_ARGS).cuda()
    fused = fused_ops.ModelNew(*MODEL_ARGS).cuda()
    fused.load_state_dict(reference.state_dict())
    torch.compiler.reset()
    models = {"ModelNew": fused, "compile(Model)": torch.compile(reference), "Model": reference}
    batch, size = GPU_CASE["batch"], GPU_CASE["size"]

    def step(model: torch.nn.Module, x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
        for parameter in model.parameters():
            parameter.grad = None
        x.grad = None
        model(x).backward(grad_out)
        return x.grad

    results = {"shape": [batch, MODEL_ARGS[0], size, size], "ms": {}}
    x = torch.rand(batch, MODEL_ARGS[0], size, size, device="cuda", requires_grad=True)
    grad_out = torch.randn(batch, MODEL_ARGS[1], 2 * size + 1, 2 * size + 1, device="cuda")
    input_grads = {name: step(model, x, grad_out).clone() for name, model in models.items()}
    scale = input_grads["Model"].abs().max().item()
    results["input_grad_max_rel_err_vs_Model"] = {
        name: (grad - input_grads["Model"]).abs().max().item() / scale for name, grad in input_grads.items()}
    del input_grads
    for name, model in models.items():
        fresh_x = torch.rand_like(x).requires_grad_()
        fresh_grad = torch.randn_like(grad_out)
        results["ms"][name] = time_ms(lambda: step(model, fresh_x, fresh_grad))
        torch.cuda.empty_cache()
    results["ModelNew_over_compile"] = results["ms"]["ModelNew"] / results["ms"]["compile(Model)"]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                        help="folder for the JSON (default: benchmarks/results)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_backward: needs a CUDA GPU; torch sees none")
        return 2
    info = run_info("softmax_bias_sigmoid_backward")

    kernel_results = []
    for case in KERNEL_CASES:
        result = run_kernel_case(case)
        kernel_results.append(result)
        print(f"{case.label:<32} " + " ".join(f"{name} {ms:.3f}" for name, ms in result["ms"].items())
              + f" ms; fused/copy {result['fused_over_copy']:.2f}, {result['fused_gb_per_s']:.0f} GB/s; "
              f"err x {result['grad_x_max_abs_err']:.1e} bias {result['grad_bias_max_rel_err']:.1e}"
              + ("" if result["passed"] else "  FAIL"), flush=True)
        torch.cuda.empty_cache()
    training = training_steps()
    print("training step, workload: " + ", ".join(f"{name} {ms:.3f} ms" for name, ms in training["ms"].items())
          + f"; ModelNew / compile(Model) {training['ModelNew_over_compile']:.2f}; input grad rel err vs Model "
          + ", ".join(f"{name} {err:.1e}" for name, err in training["input_grad_max_rel_err_vs_Model"].items()))

    report = {
        **info,
        "timing": TIMING,
        "bytes": "x and grad_out read once plus grad_x written once; copy_1.5x moves the same",
        "tf32_conv": torch.backends.cudnn.allow_tf32,
        "scale": SCALE,
        "kernel_cases": kernel_results,
        "training_step": training,
    }
    write_results(report, args.out)
    failed = [r["case"] for r in kernel_results if not r["passed"]]
    if failed:
        print(f"FAIL: the backward is off in {len(failed)} case(s): {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
