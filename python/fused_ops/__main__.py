"""The main job, python -m fused_ops: checks ModelNew against Model on the workload, then times both.

On a CUDA GPU it runs the workload of ../shared/WORKLOAD.md (x float32 (128, 64, 64, 64), output
(128, 128, 129, 129)); without one, a smaller case on the CPU. Exit code 1 when an error
exceeds the tolerance.
"""
from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
import time
from typing import Callable

import torch

import fused_ops
from fused_ops import Model, ModelNew

# in_channels, out_channels, kernel_size, stride, padding, output_padding, bias_shape, scaling_factor
MODEL_ARGS = (64, 128, 4, 2, 1, 1, (128, 1, 1), 2.0)
GPU_CASE = dict(batch=128, size=64)
CPU_CASE = dict(batch=2, size=16)
TOLERANCE = 1e-4  # KernelBench's, for fp32 results


def reference_tail(y: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
    """Model's forward after the convolution."""
    return torch.sigmoid((torch.softmax(y, dim=1) + bias) * scale)


def max_abs_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    # NaN propagates through max, so an output with NaN fails the tolerance check.
    return torch.sub(actual, expected).abs_().max().item()


def median_ms(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            start_s = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start_s) * 1e3)
    return statistics.median(times)


def median_ms_compiled(fn: Callable, args: tuple, device: torch.device, repeats: int) -> float | str:
    """torch.compile compiles during the warm-up, and can fail there (no C++ compiler, no Triton...)."""
    try:
        compiled = torch.compile(fn)
        return median_ms(lambda: compiled(*args), device, repeats)
    except Exception as error:  # noqa: BLE001 - any compiler failure means "no number"
        first_line = (str(error).strip().splitlines() or [""])[0]
        return f"unavailable: {type(error).__name__}: {first_line[:100]}"


def print_section(title: str, baseline: str, rows: list[tuple[str, float | str]]) -> None:
    """Times in ms and each as a multiple of the row named `baseline` (below 1: faster than it)."""
    base_ms = dict(rows)[baseline]
    print(f"\n{title:<42}{'ms':>10}  x {baseline}")
    for label, ms in rows:
        if isinstance(ms, str):
            print(f"  {label:<40}{ms}")
        else:
            print(f"  {label:<40}{ms:10.3f}  {ms / base_ms:.2f}")


def size_text(num_bytes: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if num_bytes >= size:
            return f"{num_bytes / size:.2f} {unit}"
    return f"{num_bytes} B"


def import_cpp_extension_quietly() -> None:
    """torch.compile imports torch.utils.cpp_extension, which logs a CUDA_HOME warning on a
    machine without a GPU; importing it first, silenced, keeps that out of the table."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension  # noqa: F401
    finally:
        logger.setLevel(level)


def describe_setup(device: torch.device, x: torch.Tensor, out_shape: torch.Size) -> None:
    built = fused_ops.BUILT_FOR
    print(f"torch {torch.__version__}; fused_ops built for torch {built['torch']}, "
          f"CUDA {built['cuda']}, archs {built['archs'] or 'none (CPU-only build)'}")
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        images = sorted({line.rsplit(": ", 1)[-1] for line in fused_ops.kernel_images(device)})
        print(f"device: {torch.cuda.get_device_name(device)} (sm_{major}{minor}); "
              f"kernel image: {', '.join(images)}")
        precision = ("TF32 precision (ModelNew: scaled fp16 operands)" if torch.backends.cudnn.allow_tf32
                     else "full fp32 (TF32 off)")
    else:
        print(f"device: CPU, {torch.get_num_threads()} threads")
        precision = "fp32"
    print(f"x {tuple(x.shape)} float32 -> out {tuple(out_shape)}, "
          f"{size_text(out_shape.numel() * 4)}; the conv runs in {precision} in both models")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fused_ops", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=positive_int, help="batch size (default: 128 on a GPU, 2 on the CPU)")
    parser.add_argument("--repeats", type=positive_int, default=20, help="timed runs per measurement (median)")
    parser.add_argument("--cpu", action="store_true", help="run the CPU case even where a GPU is present")
    args = parser.parse_args(argv)

    cpu_reason = ("--cpu" if args.cpu else "no CUDA GPU" if not torch.cuda.is_available()
                  else "fused_ops was built without CUDA kernels" if fused_ops.BUILT_FOR["cuda"] is None
                  else None)
    if cpu_reason:
        print(f"{cpu_reason}: running a smaller CPU case")
    device = torch.device("cpu" if cpu_reason else "cuda")
    case = CPU_CASE if cpu_reason else GPU_CASE
    batch = args.batch or case["batch"]

    import_cpp_extension_quietly()
    torch.manual_seed(0)
    model = Model(*MODEL_ARGS).to(device)
    model_new = ModelNew(*MODEL_ARGS).to(device)
    model_new.load_state_dict(model.state_dict())
    bias, scale = model.bias, model.scaling_factor
    x = torch.rand(batch, MODEL_ARGS[0], case["size"], case["size"], device=device)

    with torch.no_grad():
        y = model.conv_transpose(x)
        describe_setup(device, x, y.shape)
        errors = {
            "ModelNew vs Model (eager)": max_abs_error(model_new(x), model(x)),
            "fused tail vs float64 tail, same conv output":
                max_abs_error(fused_ops.softmax_bias_sigmoid(y, bias, scale),
                              reference_tail(y.double(), bias.double(), scale)),
        }
        if device.type == "cpu":
            errors["ModelNew vs Model in float64"] = max_abs_error(
                model_new(x), copy.deepcopy(model).double()(x.double()))

        copy_target = torch.empty_like(y)
        whole_model = [
            ("Model, eager", median_ms(lambda: model(x), device, args.repeats)),
            ("Model, torch.compile", median_ms_compiled(model, (x,), device, args.repeats)),
            ("ModelNew", median_ms(lambda: model_new(x), device, args.repeats)),
        ]
        tail = [
            ("copy of the conv output", median_ms(lambda: copy_target.copy_(y), device, args.repeats)),
            ("fused op", median_ms(lambda: fused_ops.softmax_bias_sigmoid(y, bias, scale), device, args.repeats)),
            ("torch.compile of the reference tail",
             median_ms_compiled(reference_tail, (y, bias, scale), device, args.repeats)),
            ("reference tail, eager", median_ms(lambda: reference_tail(y, bias, scale), device, args.repeats)),
        ]

    # A plain forward with the parameters requiring grad: how benchmark harnesses (KernelBench's
    # evaluator) and most users call a model.
    with torch.enable_grad():
        with_grad = [
            ("Model, eager", median_ms(lambda: model(x), device, args.repeats)),
            ("Model, torch.compile", median_ms_compiled(model, (x,), device, args.repeats)),
            ("ModelNew", median_ms(lambda: model_new(x), device, args.repeats)),
        ]

    print_section("whole model, under torch.no_grad()", "Model, eager", whole_model)
    print_section("whole model, parameters requiring grad", "Model, eager", with_grad)
    print_section("tail alone (softmax, bias, scale, sigmoid)", "copy of the conv output", tail)
    if device.type == "cpu":
        print("\nOn the CPU both models run ATen's convolution, which takes most of their time; "
              "the fused kernels\nare for GPUs. The CPU op is a correct fallback: the figures above "
              "check it, they are not the product's speed.")

    print(f"\naccuracy (max abs error; tolerance {TOLERANCE:g})")
    for label, error in errors.items():
        print(f"  {label:<50}{error:.3g}")
    passed = all(error <= TOLERANCE for error in errors.values())
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
