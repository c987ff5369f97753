"""Measures the candidate tiles of triton_src/softmax_bias_sigmoid.py on this GPU and writes the
table that the build compiles: triton_src/softmax_bias_sigmoid_tuning.json.

    python benchmarks/tune_softmax_bias_sigmoid.py [--out PATH] [--jobs N] [--flavours ...] [--prune]

For every layout flavour (contiguous NCHW, the same with 16-byte aligned rows, channels_last
unaligned and aligned, the general strided view, and x[..., ::2] with rows on 16 bytes read as
whole spans) and every channel bucket BLOCK_C, it times each candidate (BLOCK_S, num_warps)
through Triton's JIT on a ~128 MB tensor whose channel count fills the bucket, and keeps the
fastest; contiguous NCHW also gets tiles for tensors of at most 1 MB (SMALL_TENSOR), timed per
call replayed from a CUDA graph on 512 KB. Contiguous NCHW is also timed compiled for C equal to
the bucket (CHANNELS_EXACT, no channel mask) and with whole-sector stores (SECTOR_STORES), both
and either; such a tile is kept only where it is at least 3% faster (KEEP_MARGIN), in the same
run, than every tile that the launcher's order would put after it for C equal to the bucket
(RIVALS): each variant costs every user build time. Likewise a bucket's tile stays only where it
is 3% faster at its C than the next larger bucket's kept tile, which would serve that C without
it (prune_buckets); the table records what each kept tile buys (next_bucket_ms) and what went. --flavours re-measures
some flavours (and their rivals) and keeps the table's entries of the others; --prune sweeps no
candidates, but times the table's own tiles again and applies those two rules to them. The launcher then
takes, per call, the variant of the call's flavour and dtype with the smallest BLOCK_C that
holds C (csrc/ops/flavour_choice.cpp), falling back to the two-pass tile above the largest bucket; the
aligned spans' two-pass tile is timed at several C and replaces the single-pass tiles from the
first bucket where it is faster.

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "triton_src"))
import softmax_bias_sigmoid_flavours as flavours_registry  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KERNEL_PATH = ROOT / "triton_src" / "softmax_bias_sigmoid.py"
KERNEL_NAME = "softmax_bias_sigmoid"
TUNING_NAME = "softmax_bias_sigmoid_tuning.json"
TARGET_BYTES = 128 << 20
BUCKETS = (4, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
# Aligned NCHW rows with few channels need tiles of their own: above the small-tensor size they
# ran in the 16-channel tile, 2 to 4 times slower than one that fits C (H100, per call in a
# graph: 16x3x256x256 fp32 19.2 us against 5.9 for [4, 4096] x 8, torch.compile 10.1; 16x4x128x128
# 6.7 against 3.0, torch.compile 5.4).
ALIGNED_NCHW_BUCKETS = (1, 2, 4, 8) + tuple(bucket for bucket in BUCKETS if bucket > 8)
CHANNELS_LAST_BUCKETS = BUCKETS + (8192, 16384, 32768)
TWO_PASS_TILES = ((64, 64, 4), (128, 32, 4), (128, 16, 4), (256, 16, 4), (512, 8, 8))
TWO_PASS_CHANNELS = 8192
# The aligned spans of x[..., ::2] take a two-pass tile wherever it beats the single-pass one, not
# only above the largest bucket: its loads go through shared memory SWEEP_STAGES chunks ahead,
# and in bf16 a single-pass tile of C = 4096 holds 8 positions, half a sector of out's rows
# (H100, 16x4096x32x32 x[..., ::2], / a copy of the view: [64, 32] x 4 two-pass 1.35x, the
# single-pass [4096, 8] x 16 1.73x, torch.compile 1.41x; without the prefetch 1.42x).
SPAN_TWO_PASS_TILES = ((32, 32, 4), (64, 16, 4), (64, 32, 4), (128, 16, 4), (128, 32, 4), (256, 32, 4))
# The span flavours are timed on x[..., ::2] of rows of 2 * SPAN_ROW elements, and their tiles
# hold at most SPAN_ROW positions: a tile must not cross a row (an inner group), and the
# launcher falls back to the unaligned spans where BLOCK_S does not divide the row. They start
# at SPAN_FROM channels: below it the unaligned span tiles run at 0.86 to 0.96x of a copy of the
# view (H100), and a tile limited to SPAN_ROW positions is slower there (fp16, C = 16: 0.221 ms
# against 0.142 with 512 positions).
SPAN_ROW = 32
SPAN_FROM = 1024
SPAN_TWO_PASS_CHANNELS = (1024, 2048, 4096, TWO_PASS_CHANNELS)
SPAN_SWEEP_STAGES = 3
# Not tuned: 64-bit offsets are for samples past 2^31 elements, rare and too large to sweep
# here; large tiles spill with them (docs/performance.md), so these stay small.
INDEX64_TILES = ((16, 64, 4, True), (128, 16, 4, True), (32, 32, 4, False))
SIZE_CLASSES = {"fp32": (torch.float32, ("fp32",)), "fp16": (torch.float16, ("fp16", "bf16"))}

# The flavours tuned here, as triton_src/softmax_bias_sigmoid_flavours.py names them; the
# others are twins of these tiles (softmax_bias_sigmoid.py) or not tuned (64-bit offsets).
TUNED = ("nchw", "nchw_exact", "nchw_sector", "nchw_sector_exact", "nchw_aligned", "channels_last",
         "channels_last_aligned", "strided", "strided_span_aligned", "nchw_small_tensor", "nchw_aligned_small_tensor")


def promise(flavour: str, key: str) -> int:
    return int(flavours_registry.by_name(KERNEL_NAME, flavour).promises.get(key, 0))


FLAVOURS = {name: tuple(promise(name, key) for key in ("CONTIGUOUS", "CHANNELS_LAST", "ALIGNED", "CHANNELS_EXACT",
                                                       "SECTOR_STORES"))
            for name in TUNED}
# Tiles for tensors of at most 1 MB (csrc: kSmallTensorBytes), which move in less time than a
# launch takes: timed on SMALL_TENSOR_BYTES, with buckets down to one channel and few values a
# thread, so that the grid spreads over the SMs and no thread computes masked channels
# (triton_src/softmax_bias_sigmoid.py has the measurements).
SMALL_TENSOR_FLAVOURS = tuple(name for name in TUNED if promise(name, "SMALL_TENSOR"))
SMALL_TENSOR_BYTES = 512 << 10
SMALL_TENSOR_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# The flavours whose tiles are kept only where they beat, in the same run, those of every rival:
# the tuned flavours that the launcher would run instead for C equal to the bucket
# (flavours_registry.rivals), timed on the same tensors.
KEEP_MARGIN = 0.97
_SAME_CASE = ("CONTIGUOUS", "CHANNELS_LAST", "ALIGNED", "SMALL_TENSOR", "INNER_STRIDE_2")
RIVALS = {name: tuple(r.name for r in flavours_registry.rivals(flavours_registry.by_name(KERNEL_NAME, name))
                      if r.name in TUNED and all(promise(r.name, key) == promise(name, key) for key in _SAME_CASE))
          for name in TUNED}


def sector_elements(dtype: torch.dtype) -> int:
    """SECTOR_STORES's value: the elements of a 32-byte sector."""
    return 32 // torch.tensor([], dtype=dtype).element_size()


def strided(flavour: str) -> bool:
    """Whether the flavour is of the strided view (x[..., ::2] here; out at stride 1)."""
    contiguous, channels_last = FLAVOURS[flavour][:2]
    return not contiguous and not channels_last


def spans(flavour: str) -> bool:
    """Whether the flavour's tiles read x[..., ::2] as aligned spans (INNER_STRIDE_2) and are
    tuned as such, rather than derived from the strided ones (softmax_bias_sigmoid.py)."""
    return strided(flavour) and FLAVOURS[flavour][2] == 1


def load_kernel_module():
    spec = importlib.util.spec_from_file_location("softmax_bias_sigmoid_kernel", KERNEL_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def candidates(flavour: str, block_c: int) -> list[tuple[int, int]]:
    """(BLOCK_S, num_warps) pairs holding 4 to 64 fp32 values per thread (2 to 16 for small
    tensors); BLOCK_S whole warps of positions where the tile stores whole sectors."""
    channels_last, sector_stores = FLAVOURS[flavour][1], FLAVOURS[flavour][4]
    if flavour in SMALL_TENSOR_FLAVOURS:
        # An aligned tile's rows must give each thread a 16-byte vector (aot.py checks for one).
        fewest = 8 if FLAVOURS[flavour][2] else 1
        return sorted({(per_thread * 32 * warps // block_c, warps) for per_thread in (2, 4, 8, 16)
                       for warps in (1, 2, 4, 8) if per_thread * 32 * warps >= block_c * fewest})
    pairs = set()
    for per_thread in (4, 8, 16, 32, 64):
        # 16 and 32 warps only where a row of channels is long enough to need them.
        for warps in ((8, 16, 32) if block_c >= 1024 else (4, 8)):
            block_s = per_thread * 32 * warps // block_c
            # Along positions a warp wants at least 16 neighbours for whole sectors; across
            # channels_last rows the channel axis is contiguous instead.
            if (block_s >= (1 if channels_last else 32 if sector_stores else 8) and block_s <= 4096
                    and (not spans(flavour) or SPAN_ROW % block_s == 0)):
                pairs.add((block_s, warps))
    return sorted(pairs)


def make_case(flavour: str, channels: int, dtype: torch.dtype):
    """x and a fresh output for the flavour with C channels, about TARGET_BYTES."""
    contiguous, channels_last, aligned, _, _ = FLAVOURS[flavour]
    if channels_last and not aligned:
        channels = channels - 1 if channels > 4 else 3  # rows 4 bytes off alignment
    element = torch.tensor([], dtype=dtype).element_size()
    target = SMALL_TENSOR_BYTES if flavour in SMALL_TENSOR_FLAVOURS else TARGET_BYTES
    positions = max(1, target // (8 * channels * element))
    if spans(flavour):
        positions = max(SPAN_ROW, positions // SPAN_ROW * SPAN_ROW)
    elif aligned:
        positions = max(16, positions // 16 * 16)
    elif contiguous:
        positions |= 1  # odd rows, as the workload's 129 x 129
    if strided(flavour):
        # x[..., ::2], for the span flavours in rows of SPAN_ROW positions (inner groups).
        rows = (positions // SPAN_ROW, 2 * SPAN_ROW) if spans(flavour) else (2 * positions,)
        x = torch.randn(8, channels, *rows, device="cuda", dtype=dtype)[..., ::2]
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
        promised = module.multiples(dict(CONTIGUOUS=contiguous, CHANNELS_LAST=channels_last, ALIGNED=aligned), "fp32")
        fixed = [name for name in module.SIGNATURE if name not in promised]
        _AOT_EQUIVALENT[flavour] = triton.jit(module.softmax_bias_sigmoid.fn, do_not_specialize=fixed,
                                              do_not_specialize_on_alignment=fixed)
    return _AOT_EQUIVALENT[flavour]


def launch(module, flavour: str, x, bias, out, block_c: int, block_s: int, warps: int, single_pass: bool):
    """The kernel call csrc/ops/softmax_bias_sigmoid.cpp makes for this flavour: x is 3-D, one
    group of positions, or 4-D with each row of the last dimension an inner group."""
    contiguous, channels_last, aligned, exact, sector_stores = FLAVOURS[flavour]
    batch, channels = x.shape[:2]
    positions, inner_size = x[0, 0].numel(), x.shape[-1]
    sector = sector_elements(x.dtype) if sector_stores else 0
    small_tensor = int(flavour in SMALL_TENSOR_FLAVOURS)
    if channels_last:
        rows = batch * positions
        grid, args = (triton.cdiv(rows, block_s),), (channels, rows, rows, triton.cdiv(rows, block_s))
    else:
        per_program = block_s // 32 * (32 - sector) if sector else block_s
        blocks = triton.cdiv(positions + max(sector - 1, 0), per_program)
        # A small-tensor tile's samples are on the grid's axis 1.
        grid = (blocks, batch) if small_tensor else (batch * blocks,)
        args = (channels, positions, inner_size, blocks)
    strides = [stride for t in (x, out) for stride in (t.stride(0), t.stride(1), t.stride(2) if t.dim() == 4 else 0,
                                                       t.stride(-1))]
    constexprs = dict(BLOCK_C=block_c, BLOCK_S=block_s, SINGLE_PASS=int(single_pass), CONTIGUOUS=contiguous,
                      CHANNELS_LAST=channels_last, ALIGNED=aligned, INDEX_BITS=32, OUT_CONTIGUOUS=int(strided(flavour)),
                      INNER_STRIDE_2=int(spans(flavour)), CHANNELS_EXACT=exact, SECTOR_STORES=sector,
                      SWEEP_STAGES=sweep_stages(flavour, single_pass), SMALL_TENSOR=small_tensor)
    # The arguments the variant never reads go in as None, as aot.py compiles them: not parameters.
    unread = module.unread_arguments(constexprs)
    arguments = zip(module.SIGNATURE, (x, bias, out, None, *args, *strides, 2.0))
    aot_equivalent(module, flavour)[grid](*(None if name in unread else value for name, value in arguments),
                                          **constexprs, num_warps=warps, num_stages=1)


def sweep_stages(flavour: str, single_pass: bool) -> int:
    return SPAN_SWEEP_STAGES if spans(flavour) and not single_pass else 1


def jobs(flavours) -> list[tuple]:
    """(size class, flavour, BLOCK_C, BLOCK_S, warps, single pass, C timed at) per candidate."""
    work = []
    for size_class in SIZE_CLASSES:
        for flavour in flavours:
            contiguous, channels_last, aligned, exact, sector_stores = FLAVOURS[flavour]
            buckets = (SMALL_TENSOR_BUCKETS if flavour in SMALL_TENSOR_FLAVOURS
                       else CHANNELS_LAST_BUCKETS if channels_last
                       else ALIGNED_NCHW_BUCKETS if contiguous and aligned else BUCKETS)
            for block_c in buckets:
                if ((channels_last and aligned and block_c < 16) or (spans(flavour) and block_c < SPAN_FROM)):
                    continue
                for block_s, warps in candidates(flavour, block_c):
                    work.append((size_class, flavour, block_c, block_s, warps, True, block_c))
            if spans(flavour):
                for block_c, block_s, warps in SPAN_TWO_PASS_TILES:
                    for channels in SPAN_TWO_PASS_CHANNELS:
                        work.append((size_class, flavour, block_c, block_s, warps, False, channels))
            elif (not channels_last and not aligned and not exact and not sector_stores
                  and flavour not in SMALL_TENSOR_FLAVOURS):
                for block_c, block_s, warps in TWO_PASS_TILES:
                    work.append((size_class, flavour, block_c, block_s, warps, False, TWO_PASS_CHANNELS))
    return work


def run_job(job, module=None) -> float:
    """Compiles (through Triton's cache) and, in the parent, times one candidate; checks it."""
    size_class, flavour, block_c, block_s, warps, single_pass, channels = job
    module = module or load_kernel_module()
    dtype = SIZE_CLASSES[size_class][0]
    x, bias, out = make_case(flavour, channels, dtype)
    run = lambda: launch(module, flavour, x, bias, out, block_c, block_s, warps, single_pass)  # noqa: E731
    out.fill_(float("nan"))
    run()
    expected = torch.sigmoid((torch.softmax(x.float(), 1) + bias.float().view(-1, *[1] * (x.dim() - 2))) * 2.0)
    error = (out.float() - expected).abs().max().item()
    if not error <= 1e-2:
        raise RuntimeError(f"{job}: max abs error {error}")
    if flavour in SMALL_TENSOR_FLAVOURS:
        # At 512 KB do_bench times the host's launch as much as the kernel: the candidates came
        # out within a few percent of each other, 4.9 to 5.2 us. A call replayed from a CUDA graph
        # is what such a kernel costs in a model (the benchmark's graph_us).
        return triton.testing.do_bench_cudagraph(run, rep=25, return_mode="median")
    return triton.testing.do_bench(run, warmup=5, rep=25, return_mode="median")


def choose_two_pass(best: dict, two_pass_ms: dict) -> None:
    """Adds each flavour's two-pass tile to `best`: the one fastest where it takes over from the
    single-pass tiles. The span flavours' two-pass tiles are timed at several bucket sizes too:
    from the smallest bucket where one of them beat the single-pass tile, the single-pass tiles of
    that bucket and above go (the launcher takes the smallest one that holds C, else the two-pass
    tile), and the two-pass tile is the fastest at that bucket. Elsewhere it is the fastest at the
    largest C it was timed at, above every bucket."""
    tiles_of: dict[tuple, dict] = {}
    for (size_class, flavour, tile), times in two_pass_ms.items():
        tiles_of.setdefault((size_class, flavour), {})[tile] = times
    for (size_class, flavour), tiles in tiles_of.items():
        timed_at = sorted(set.intersection(*(set(times) for times in tiles.values())))
        takeover = [c for c in timed_at if (size_class, flavour, c) in best
                    and min(times[c] for times in tiles.values()) < best[(size_class, flavour, c)]["ms"]]
        at = takeover[0] if takeover else timed_at[-1]
        block_c, block_s, warps = min(tiles, key=lambda tile: tiles[tile][at])
        for bucket in BUCKETS:
            if takeover and bucket >= at:
                best.pop((size_class, flavour, bucket), None)
        best[(size_class, flavour, "two-pass")] = {"ms": tiles[(block_c, block_s, warps)][at], "BLOCK_C": block_c,
                                                   "BLOCK_S": block_s, "num_warps": warps, "single_pass": False}


def prune_buckets(best: dict, time_at) -> list[dict]:
    """Drops from `best` each single-pass bucket whose tile is not at least 3% faster (KEEP_MARGIN)
    at its own C than the tile that would serve that C without it: the next larger bucket kept
    (the launcher takes the smallest BLOCK_C that holds C). Largest buckets first, so that each
    is measured against what will really run; the largest stays. Flavours whose tiles serve C
    equal to BLOCK_C only (exact) keep theirs, and a linked flavour's tile goes with its
    partner's bucket. `time_at(size_class, flavour, tile, channels)` times a kept tile at C.
    Each kept tile records `next_bucket_ms`, what it would cost without it; returns the pruned."""
    pruned = []
    groups = sorted({(size_class, flavour) for size_class, flavour, bucket in best if isinstance(bucket, int)})
    for size_class, flavour in groups:
        registered = flavours_registry.by_name(KERNEL_NAME, flavour)
        if registered.exact_channels or registered.same_tiles_as:
            continue
        buckets = sorted((b for sc, f, b in best if (sc, f) == (size_class, flavour) and isinstance(b, int)),
                         reverse=True)
        above = buckets[0]
        for bucket in buckets[1:]:
            tile = best[(size_class, flavour, bucket)]
            without = time_at(size_class, flavour, best[(size_class, flavour, above)], bucket)
            if tile["ms"] > KEEP_MARGIN * without:
                pruned.append({"flavour": flavour, "size_class": size_class, "BLOCK_C": bucket, "ms": tile["ms"],
                               "served_by_BLOCK_C": above, "served_ms": round(without, 5)})
                del best[(size_class, flavour, bucket)]
            else:
                tile["next_bucket_ms"] = without
                above = bucket
    for (size_class, flavour, bucket) in [key for key in best if isinstance(key[2], int)]:
        partner = flavours_registry.by_name(KERNEL_NAME, flavour).same_tiles_as
        if partner and partner in TUNED and (size_class, partner, bucket) not in best:
            pruned.append({"flavour": flavour, "size_class": size_class, "BLOCK_C": bucket,
                           "ms": best[(size_class, flavour, bucket)]["ms"], "partner_pruned": partner})
            del best[(size_class, flavour, bucket)]
    return pruned


def compile_only(job) -> None:
    run_job(job)


def size_class_of(entry: dict) -> str:
    return next(name for name, (_, dtypes) in SIZE_CLASSES.items() if list(dtypes) == entry["dtypes"])


def measure_candidates(module, flavours: list[str], jobs_count: int) -> dict:
    """Every candidate of the flavours, timed: the fastest single-pass tile per (size class,
    flavour, bucket), and the two-pass tiles chosen by choose_two_pass."""
    work = jobs(flavours)
    compile_all(work, jobs_count)
    best: dict[tuple, dict] = {}
    two_pass_ms: dict[tuple, dict] = {}  # (size class, flavour, tile) -> {C: ms}
    for index, job in enumerate(work, 1):
        size_class, flavour, block_c, block_s, warps, single_pass, channels = job
        ms = run_job(job, module)
        if single_pass:
            key = (size_class, flavour, block_c)
            if key not in best or ms < best[key]["ms"]:
                best[key] = {"ms": ms, "BLOCK_C": block_c, "BLOCK_S": block_s, "num_warps": warps,
                             "single_pass": True}
        else:
            two_pass_ms.setdefault((size_class, flavour, (block_c, block_s, warps)), {})[channels] = ms
        if index % 25 == 0 or index == len(work):
            print(f"[{index}/{len(work)}] {size_class} {flavour} C{block_c} S{block_s} w{warps} "
                  f"at C = {channels}: {ms:.4f} ms", flush=True)
    for (size_class, flavour, (block_c, block_s, warps)), times in two_pass_ms.items():
        print(f"two-pass {size_class} {flavour} [{block_c}, {block_s}] x {warps}: "
              + ", ".join(f"C = {c} {ms:.4f} ms" + (f" (single-pass {best[(size_class, flavour, c)]['ms']:.4f})"
                                                    if (size_class, flavour, c) in best else "")
                          for c, ms in times.items()), flush=True)
    choose_two_pass(best, two_pass_ms)
    return best


def tile_job(size_class: str, flavour: str, tile: dict, channels: int) -> tuple:
    """The run_job of a chosen single-pass tile, timed at C = channels."""
    return (size_class, flavour, tile["BLOCK_C"], tile["BLOCK_S"], tile["num_warps"], True, channels)


def remeasure_table(module, entries: list[dict], jobs_count: int) -> dict:
    """The table's own single-pass tiles, each timed again at the C of its bucket (this run's
    figures, to compare with the tiles that would serve that C without it); its two-pass tiles
    as they were measured."""
    best = {}
    for entry in entries:
        choice = {"ms": entry["measured_ms"], "BLOCK_C": entry["BLOCK_C"], "BLOCK_S": entry["BLOCK_S"],
                  "num_warps": entry["num_warps"], "single_pass": bool(entry["SINGLE_PASS"])}
        best[(size_class_of(entry), entry["flavour"], entry["BLOCK_C"] if entry["SINGLE_PASS"] else "two-pass")] = choice
    work = {tile_job(size_class, flavour, tile, bucket): tile
            for (size_class, flavour, bucket), tile in best.items() if tile["single_pass"]}
    compile_all(list(work), jobs_count)
    for job, tile in work.items():
        tile["ms"] = run_job(job, module)
    return best


def compile_all(work: list[tuple], jobs_count: int) -> None:
    print(f"{len(work)} candidates; compiling with {jobs_count} processes", flush=True)
    context = __import__("multiprocessing").get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs_count, mp_context=context) as pool:
        list(pool.map(compile_only, work, chunksize=4))


def table_entries(best: dict, pruned: list[dict]) -> list[dict]:
    """The table's variants from the kept tiles: each flavour's tile stays where it is at least 3%
    faster than every rival's for the same C (a rival whose bucket went is measured by the tile
    that serves its C instead)."""
    served = {(e["size_class"], e["flavour"], e["BLOCK_C"]): {"ms": e["served_ms"]} for e in pruned if "served_ms" in e}
    variants = []
    for (size_class, flavour, bucket), choice in sorted(best.items(), key=lambda item: str(item[0])):
        rivals = [best.get((size_class, rival, bucket)) or served.get((size_class, rival, bucket))
                  for rival in RIVALS.get(flavour, ())]
        if any(rival is not None and choice["ms"] > KEEP_MARGIN * rival["ms"] for rival in rivals):
            pruned.append({"flavour": flavour, "size_class": size_class, "BLOCK_C": bucket, "ms": choice["ms"],
                           "rival_faster": True})
            continue
        contiguous, channels_last, aligned, exact, sector_stores = FLAVOURS[flavour]
        span_keys = {"OUT_CONTIGUOUS": 1, "INNER_STRIDE_2": 1,
                     "SWEEP_STAGES": sweep_stages(flavour, choice["single_pass"])} if spans(flavour) else {}
        variants.append({"flavour": flavour, "dtypes": list(SIZE_CLASSES[size_class][1]),
                         "BLOCK_C": choice["BLOCK_C"], "BLOCK_S": choice["BLOCK_S"],
                         "num_warps": choice["num_warps"], "SINGLE_PASS": int(choice["single_pass"]),
                         "CONTIGUOUS": contiguous, "CHANNELS_LAST": channels_last, "ALIGNED": aligned,
                         "CHANNELS_EXACT": exact,
                         "SECTOR_STORES": sector_elements(SIZE_CLASSES[size_class][0]) if sector_stores else 0,
                         **span_keys, **({"SMALL_TENSOR": 1} if flavour in SMALL_TENSOR_FLAVOURS else {}),
                         "INDEX_BITS": 32, "measured_ms": round(choice["ms"], 5),
                         **({"next_bucket_ms": round(choice["next_bucket_ms"], 5)} if "next_bucket_ms" in choice else {})})
    return variants


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=KERNEL_PATH.with_name(TUNING_NAME))
    parser.add_argument("--jobs", type=int, default=8, help="processes compiling candidates")
    parser.add_argument("--flavours", nargs="+", choices=sorted(FLAVOURS), default=list(FLAVOURS),
                        help="re-measure these, keep the table's (--out) entries of the others")
    parser.add_argument("--prune", action="store_true",
                        help="sweep no candidates: time the table's (--out) tiles again and drop those that do "
                             "not earn their place")
    args = parser.parse_args(argv)
    flavours = set(args.flavours) | {rival for f in args.flavours for rival in RIVALS.get(f, ())}
    if (flavours != set(FLAVOURS) or args.prune) and not args.out.is_file():
        parser.error(f"--flavours and --prune start from the table at --out, and {args.out} is not one: copy "
                     f"{KERNEL_PATH.with_name(TUNING_NAME)} there first, or measure every flavour")
    if not torch.cuda.is_available():
        print("tune_softmax_bias_sigmoid: needs a CUDA GPU")
        return 2
    kept, earlier = [], None
    if flavours != set(FLAVOURS) or args.prune:
        earlier = json.loads(args.out.read_text())
        earlier.pop("pruned", None)  # this run records its own
        entries = earlier.pop("variants")
        kept = [v for v in entries if v["flavour"] not in flavours | {"strided_index64"}]
    module = load_kernel_module()
    if args.prune:
        best = remeasure_table(module, [v for v in entries if v["flavour"] in flavours], args.jobs)
    else:
        best = measure_candidates(module, [f for f in FLAVOURS if f in flavours], args.jobs)
    pruned = prune_buckets(best, lambda *tile_at: run_job(tile_job(*tile_at), module))
    variants = kept + table_entries(best, pruned)
    for entry in pruned:
        print(f"pruned: {entry}", flush=True)
    for block_c, block_s, warps, single_pass in INDEX64_TILES:
        variants.append({"flavour": "strided_index64", "dtypes": ["fp32", "fp16", "bf16"],
                         "BLOCK_C": block_c, "BLOCK_S": block_s, "num_warps": warps,
                         "SINGLE_PASS": int(single_pass), "CONTIGUOUS": 0, "CHANNELS_LAST": 0, "ALIGNED": 0,
                         "CHANNELS_EXACT": 0, "INDEX_BITS": 64, "measured_ms": None})
    table = {
        "written_by": "benchmarks/tune_softmax_bias_sigmoid.py" + (" --prune" if args.prune else ""),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "measure": f"median of triton.testing.do_bench(rep=25 ms) on ~{TARGET_BYTES >> 20} MB; "
                   f"{', '.join(SMALL_TENSOR_FLAVOURS)}: per call of triton.testing.do_bench_cudagraph(rep=25 ms) "
                   f"on {SMALL_TENSOR_BYTES >> 10} KB; C filling each bucket",
        "flavours": sorted(flavours),
    }
    if earlier is not None:
        # The tiles (and with --flavours the other flavours' entries) come from the earlier run(s).
        table["other_flavours_from"] = {key: value for key, value in earlier.items() if key != "written_by"}
    table["variants"] = variants
    table["pruned"] = pruned
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {args.out}: {len(variants)} variants, {len(pruned)} pruned")
    for v in variants:
        print(f"  {v['flavour']:<22}{'/'.join(v['dtypes']):<10}C{v['BLOCK_C']:<6}S{v['BLOCK_S']:<5}"
              f"w{v['num_warps']:<3}{'' if v['SINGLE_PASS'] else 'two-pass '}{v['measured_ms']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
