"""Measures the candidate tiles of triton_src/softmax_bias_sigmoid.py on this GPU and writes the
table that the build compiles: triton_src/softmax_bias_sigmoid_tuning.json.

    python benchmarks/tune_softmax_bias_sigmoid.py [--out PATH] [--jobs N]

For every layout flavour (contiguous NCHW, the same with 16-byte aligned rows, channels_last
unaligned and aligned, the general strided view) and every channel bucket BLOCK_C, it times each
candidate (BLOCK_S, num_warps) through Triton's JIT on a ~128 MB tensor whose channel count
fills the bucket, and keeps the fastest. Contiguous NCHW is also timed compiled for C equal to
the bucket (CHANNELS_EXACT, no channel mask) and with whole-sector stores (SECTOR_STORES), both
and either; such a tile is kept only where it beats, in the same run, every tile that the
launcher's order would put after it for C equal to the bucket (RIVALS). --flavours re-measures
some flavours (and their rivals) and keeps the table's entries of the others. The launcher
then takes, per call, the variant of the call's flavour and dtype with the smallest BLOCK_C that
holds C (C++: choose_from), falling back to the two-pass tile above the largest bucket.

fp16 and bf16 move the same bytes through the same instructions, so bf16 takes fp16's tiles.
The RTX 4090 (sm_89), the product's target, cannot be measured here; it takes the H100's
tiles, for these reasons: the kernel is bound by bytes in flight, and a tile that keeps the
H100's 3.35 TB/s busy holds more than the 4090's 1008 GB/s needs (Little's law: about
bandwidth x latency per SM, some 4x less on the 4090); both have 64 K registers per SM, so the
register-bound occupancy of a tile is the same (the 4090's 1536 threads per SM against 2048
only caps 16-warp tiles, which are used for C >= 1024 alone); and no variant uses shared memory
beyond its reductions, far under the 4090's 99 KB per block (triton_src/aot.py fails the build
if an sm_89 image needs more). Compiling candidates needs only the CPU and runs in parallel
through Triton's cache; timing runs one at a time.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch
import triton
import triton.testing

ROOT = Path(__file__).resolve().parents[1]
KERNEL_PATH = ROOT / "triton_src" / "softmax_bias_sigmoid.py"
TARGET_BYTES = 128 << 20
BUCKETS = (4, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
CHANNELS_LAST_BUCKETS = BUCKETS + (8192, 16384, 32768)
TWO_PASS_TILES = ((64, 64, 4), (128, 32, 4), (128, 16, 4), (256, 16, 4), (512, 8, 8))
TWO_PASS_CHANNELS = 8192
# Not tuned: 64-bit offsets are for samples past 2^31 elements, rare and too large to sweep
# here; large tiles spill with them (benchmarks/NOTES.md), so these stay small.
INDEX64_TILES = ((16, 64, 4, True), (128, 16, 4, True), (32, 32, 4, False))
SIZE_CLASSES = {"fp32": (torch.float32, ("fp32",)), "fp16": (torch.float16, ("fp16", "bf16"))}

FLAVOURS = {
    # name: (CONTIGUOUS, CHANNELS_LAST, ALIGNED, CHANNELS_EXACT, SECTOR_STORES)
    "nchw": (1, 0, 0, 0, 0),
    "nchw_exact": (1, 0, 0, 1, 0),
    "nchw_sector": (1, 0, 0, 0, 1),
    "nchw_sector_exact": (1, 0, 0, 1, 1),
    "nchw_aligned": (1, 0, 1, 0, 0),
    "channels_last": (0, 1, 0, 0, 0),
    "channels_last_aligned": (0, 1, 1, 0, 0),
    "strided": (0, 0, 0, 0, 0),
}
# The flavours whose tiles are kept only where they beat, in the same run, those of every rival:
# the flavours that csrc/ops/softmax_bias_sigmoid.cpp (choose_from, forward_flavours) tries
# after them for C equal to the bucket.
RIVALS = {
    "nchw_sector_exact": ("nchw_sector", "nchw_exact", "nchw"),
    "nchw_sector": ("nchw_exact", "nchw"),
    "nchw_exact": ("nchw",),
}


def sector_elements(dtype: torch.dtype) -> int:
    """SECTOR_STORES's value: the elements of a 32-byte sector."""
    return 32 // torch.tensor([], dtype=dtype).element_size()


def load_kernel_module():
    spec = importlib.util.spec_from_file_location("softmax_bias_sigmoid_kernel", KERNEL_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def candidates(flavour: str, block_c: int) -> list[tuple[int, int]]:
    """(BLOCK_S, num_warps) pairs holding 4 to 64 fp32 values per thread; BLOCK_S whole warps of
    positions where the tile stores whole sectors."""
    channels_last, sector_stores = FLAVOURS[flavour][1], FLAVOURS[flavour][4]
    pairs = set()
    for per_thread in (4, 8, 16, 32, 64):
        # 16 and 32 warps only where a row of channels is long enough to need them.
        for warps in ((8, 16, 32) if block_c >= 1024 else (4, 8)):
            block_s = per_thread * 32 * warps // block_c
            # Along positions a warp wants at least 16 neighbours for whole sectors; across
            # channels_last rows the channel axis is contiguous instead.
            if block_s >= (1 if channels_last else 32 if sector_stores else 8) and block_s <= 4096:
                pairs.add((block_s, warps))
    return sorted(pairs)


def make_case(flavour: str, block_c: int, dtype: torch.dtype, two_pass: bool = False):
    """x and a fresh output for the flavour, C filling the bucket, about TARGET_BYTES."""
    contiguous, channels_last, aligned, _, _ = FLAVOURS[flavour]
    channels = TWO_PASS_CHANNELS if two_pass else block_c
    if channels_last and not aligned:
        channels = block_c - 1 if block_c > 4 else 3  # rows 4 bytes off alignment
    element = torch.tensor([], dtype=dtype).element_size()
    positions = max(1, TARGET_BYTES // (8 * channels * element))
    if aligned:
        positions = max(16, positions // 16 * 16)
    elif contiguous:
        positions |= 1  # odd rows, as the workload's 129 x 129
    if flavour == "strided":
        wide = torch.randn(8, channels, 2 * positions, device="cuda", dtype=dtype)
        x = wide[..., ::2]
        out = torch.empty(x.shape, device="cuda", dtype=dtype)
    elif channels_last:
        x = torch.randn(8, positions, channels, device="cuda", dtype=dtype).transpose(1, 2)
        out = torch.empty_like(x)
    else:
        x = torch.randn(8, channels, positions, device="cuda", dtype=dtype)
        out = torch.empty_like(x)
    return x, torch.randn(channels, device="cuda", dtype=dtype), out


_AOT_EQUIVALENT = {}


def aot_equivalent(module, flavour: str):
    """The kernel as triton_src/aot.py compiles it for the flavour: specialized on no argument
    value but the alignment an ALIGNED variant promises (here as multiples of 16, which the
    flavour's shapes are; the library promises 16 bytes' worth of elements). Left alone, Triton's
    JIT also specializes on every integer equal to 1 and every argument divisible by 16, which
    the library's images do not, so it times candidates faster than they will run."""
    if flavour not in _AOT_EQUIVALENT:
        contiguous, channels_last, aligned, _, _ = FLAVOURS[flavour]
        promised = module.multiples(dict(CHANNELS_LAST=channels_last, ALIGNED=aligned), "fp32")
        fixed = [name for name in module.SIGNATURE if name not in promised]
        _AOT_EQUIVALENT[flavour] = triton.jit(module.softmax_bias_sigmoid.fn, do_not_specialize=fixed,
                                              do_not_specialize_on_alignment=fixed)
    return _AOT_EQUIVALENT[flavour]


def launch(module, flavour: str, x, bias, out, block_c: int, block_s: int, warps: int, single_pass: bool):
    """The kernel call csrc/ops/softmax_bias_sigmoid.cpp makes for this flavour (x is 3-D here)."""
    contiguous, channels_last, aligned, exact, sector_stores = FLAVOURS[flavour]
    batch, channels, positions = x.shape
    sector = sector_elements(x.dtype) if sector_stores else 0
    if channels_last:
        rows = batch * positions
        grid, args = triton.cdiv(rows, block_s), (channels, rows, rows, triton.cdiv(rows, block_s))
    else:
        per_program = block_s // 32 * (32 - sector) if sector else block_s
        blocks = triton.cdiv(positions + max(sector - 1, 0), per_program)
        grid, args = batch * blocks, (channels, positions, positions, blocks)
    strides = (x.stride(0), x.stride(1), 0, x.stride(2), out.stride(0), out.stride(1), 0, out.stride(2))
    # out again as the softmax statistics' pointer, which a SOFTMAX_STATS=0 variant never writes.
    aot_equivalent(module, flavour)[(grid,)](
        x, bias, out, out, *args, *strides, 2.0, BLOCK_C=block_c, BLOCK_S=block_s, SINGLE_PASS=int(single_pass),
        CONTIGUOUS=contiguous, CHANNELS_LAST=channels_last, ALIGNED=aligned, INDEX_BITS=32,
        OUT_CONTIGUOUS=int(flavour == "strided"), CHANNELS_EXACT=exact, SECTOR_STORES=sector, num_warps=warps,
        num_stages=1)


def jobs(flavours) -> list[tuple]:
    work = []
    for size_class in SIZE_CLASSES:
        for flavour in flavours:
            contiguous, channels_last, aligned, exact, sector_stores = FLAVOURS[flavour]
            buckets = CHANNELS_LAST_BUCKETS if channels_last else BUCKETS
            for block_c in buckets:
                if aligned and block_c < 16:
                    continue
                for block_s, warps in candidates(flavour, block_c):
                    work.append((size_class, flavour, block_c, block_s, warps, True))
            if not channels_last and not aligned and not exact and not sector_stores:
                for block_c, block_s, warps in TWO_PASS_TILES:
                    work.append((size_class, flavour, block_c, block_s, warps, False))
    return work


def run_job(job, module=None) -> float:
    """Compiles (through Triton's cache) and, in the parent, times one candidate; checks it."""
    size_class, flavour, block_c, block_s, warps, single_pass = job
    module = module or load_kernel_module()
    dtype = SIZE_CLASSES[size_class][0]
    x, bias, out = make_case(flavour, block_c, dtype, two_pass=not single_pass)
    run = lambda: launch(module, flavour, x, bias, out, block_c, block_s, warps, single_pass)  # noqa: E731
    out.fill_(float("nan"))
    run()
    expected = torch.sigmoid((torch.softmax(x.float(), 1) + bias.float()[:, None]) * 2.0)
    error = (out.float() - expected).abs().max().item()
    if not error <= 1e-2:
        raise RuntimeError(f"{job}: max abs error {error}")
    return triton.testing.do_bench(run, warmup=5, rep=25, return_mode="median")


def compile_only(job) -> None:
    run_job(job)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=KERNEL_PATH.with_name("softmax_bias_sigmoid_tuning.json"))
    parser.add_argument("--jobs", type=int, default=8, help="processes compiling candidates")
    parser.add_argument("--flavours", nargs="+", choices=sorted(FLAVOURS), default=list(FLAVOURS),
                        help="re-measure these, keep the table's (--out) entries of the others")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("tune_softmax_bias_sigmoid: needs a CUDA GPU")
        return 2
    flavours = set(args.flavours) | {rival for f in args.flavours for rival in RIVALS.get(f, ())}
    kept, earlier = [], None
    if flavours != set(FLAVOURS):
        earlier = json.loads(args.out.read_text())
        kept = [v for v in earlier.pop("variants") if v["flavour"] not in flavours | {"strided_index64"}]
    work = jobs([f for f in FLAVOURS if f in flavours])
    print(f"{len(work)} candidates; compiling with {args.jobs} processes", flush=True)
    context = __import__("multiprocessing").get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        list(pool.map(compile_only, work, chunksize=4))

    module = load_kernel_module()
    best: dict[tuple, dict] = {}
    for index, job in enumerate(work, 1):
        size_class, flavour, block_c, block_s, warps, single_pass = job
        ms = run_job(job, module)
        key = (size_class, flavour, block_c if single_pass else "two-pass")
        if key not in best or ms < best[key]["ms"]:
            best[key] = {"ms": ms, "BLOCK_C": block_c, "BLOCK_S": block_s, "num_warps": warps,
                         "single_pass": single_pass}
        if index % 25 == 0 or index == len(work):
            print(f"[{index}/{len(work)}] {size_class} {flavour} C{block_c} S{block_s} w{warps}: {ms:.4f} ms",
                  flush=True)

    variants = kept
    for (size_class, flavour, bucket), choice in sorted(best.items(), key=lambda item: str(item[0])):
        rivals = [best.get((size_class, rival, bucket)) for rival in RIVALS.get(flavour, ())]
        if any(rival is not None and rival["ms"] <= choice["ms"] for rival in rivals):
            continue
        contiguous, channels_last, aligned, exact, sector_stores = FLAVOURS[flavour]
        variants.append({"flavour": flavour, "dtypes": list(SIZE_CLASSES[size_class][1]),
                         "BLOCK_C": choice["BLOCK_C"], "BLOCK_S": choice["BLOCK_S"],
                         "num_warps": choice["num_warps"], "SINGLE_PASS": int(choice["single_pass"]),
                         "CONTIGUOUS": contiguous, "CHANNELS_LAST": channels_last, "ALIGNED": aligned,
                         "CHANNELS_EXACT": exact,
                         "SECTOR_STORES": sector_elements(SIZE_CLASSES[size_class][0]) if sector_stores else 0,
                         "INDEX_BITS": 32, "measured_ms": round(choice["ms"], 5)})
    for block_c, block_s, warps, single_pass in INDEX64_TILES:
        variants.append({"flavour": "strided_index64", "dtypes": ["fp32", "fp16", "bf16"],
                         "BLOCK_C": block_c, "BLOCK_S": block_s, "num_warps": warps,
                         "SINGLE_PASS": int(single_pass), "CONTIGUOUS": 0, "CHANNELS_LAST": 0, "ALIGNED": 0,
                         "CHANNELS_EXACT": 0, "INDEX_BITS": 64, "measured_ms": None})
    table = {
        "written_by": "benchmarks/tune_softmax_bias_sigmoid.py",
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "measure": f"median of triton.testing.do_bench(rep=25 ms) on ~{TARGET_BYTES >> 20} MB, C filling each bucket",
        "flavours": sorted(flavours),
    }
    if earlier is not None:
        # The other flavours' entries come from the table's earlier run(s).
        table["other_flavours_from"] = {key: value for key, value in earlier.items() if key != "written_by"}
    table["variants"] = variants
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {args.out}: {len(variants)} variants")
    for v in variants:
        print(f"  {v['flavour']:<22}{'/'.join(v['dtypes']):<10}C{v['BLOCK_C']:<6}S{v['BLOCK_S']:<5}"
              f"w{v['num_warps']:<3}{'' if v['SINGLE_PASS'] else 'two-pass '}{v['measured_ms']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
