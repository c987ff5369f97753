"""Build-time compiler: Triton kernels in triton_src/ become one C++ source of embedded images.

    python triton_src/aot.py --out-dir BUILD_DIR [--archs 80,89,90] [--jobs N]

Every module in this folder that declares ``VARIANTS`` is a kernel: its ``@triton.jit`` function
named ``KERNEL_NAME``, its argument ``SIGNATURE`` and ``DTYPES`` (a variant may name its own
``dtypes`` instead). A signature type may say ``{dtype}``, ``{acc_dtype}`` (the type the math
runs in: fp64 for fp64, else fp32, as at::opmath_type), ``{operand_dtype}`` (the module's
``OPERAND_DTYPES`` maps a dtype to the one its launcher converts operands to; else the dtype) or
any constexpr of the variant, such as ``i{INDEX_BITS}``. A module may define
``multiples(variant, dtype)``, the arguments that the variant is compiled to assume are
multiples of a number (a pointer's address in bytes, an integer's value), as {name: number}; the
table carries that promise to the launcher, which checks it on every call; a promise about a
pointer must show up as 16- or 8-byte accesses in the PTX, or the build fails. A module may also
define ``unread_arguments(variant)``, the arguments of SIGNATURE the variant never reads: they
are compiled as constants (None, so a variant that reads one fails to build), are not parameters
of its kernel, and the launcher skips them. Each (variant, dtype, arch) is compiled with an
explicit ``GPUTarget``, so no GPU or driver is needed, in parallel across cores. The output,
``BUILD_DIR/aot_kernels.cpp``, holds the cubins (and the PTX of the highest non-"a" arch, which
any newer GPU can JIT), embedded, plus the table described in csrc/kernel_table.h, with the
layout flavours of softmax_bias_sigmoid_flavours.py that the launcher chooses among. Everything
the C++ launcher knows about a kernel (entry name, warps, shared memory, parameter list) is read
here from the compiled kernel.

Runs with the build's Python; needs triton, never torch.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import pickle
import shutil
import tempfile
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
# sm_86 (RTX 30xx, A10, A40) runs the sm_80 cubins: machine code runs on later minor versions of
# its major one (csrc/launcher.cpp: cubin_runs_on), so a build of its own would only cost time.
DEFAULT_ARCHS = (80, 89, 90)
ARCHS_ENV = "FUSED_OPS_ARCHS"
CACHE_ENV = "FUSED_OPS_KERNEL_CACHE"
# pip's editable installs and wheels build in fresh temporary folders, CMake in its own: the
# cache lives beside the sources so that every build of this checkout shares it.
DEFAULT_CACHE = HERE.parent / "build" / "kernel-cache"
CACHED_SOURCE_STATES = 3  # folders of other triton_src contents kept, most recently used first
# Rough compile time of one kernel on one core, for the estimate printed before a build.
SECONDS_PER_KERNEL = 0.7
# Shared memory one block may use, by arch, where it is below what Triton assumes: sm_86 and
# sm_89 (the RTX 4090) allow 99 KB, and the sm_80 images run on sm_86 too. A variant over it
# would compile and then fail to launch.
SHARED_LIMIT = {80: 99 * 1024, 86: 99 * 1024, 89: 99 * 1024}

# PTX parameter declarations: ".param .u64 .ptr .global .align 1 name_param_3".
_PTX_PARAM = re.compile(r"\.param\s+\.(\w+)(\s+\.ptr)?[^,)]*?_param_(\d+)")
_PTX_KIND = {("u64", True): "Pointer", ("u64", False): "Int64", ("b64", False): "Int64",
             ("u32", False): "Int32", ("b32", False): "Int32", ("s32", False): "Int32",
             ("f32", False): "Float32", ("f64", False): "Float64"}
# A 16- or 8-byte global access: a vector load or store, or an asynchronous copy to shared memory.
_WIDE_ACCESS = re.compile(r"\b(ld|st)\.global(\.\w+)*\.v[248]\.|\bcp\.async\.\w+\.shared\.global[^;]*,\s*(16|8|0x10|0x8)\s*(,|;)")
_SIGNATURE_KIND = {"i32": "Int32", "i64": "Int64", "fp32": "Float32", "fp64": "Float64"}


@dataclass(frozen=True)
class Job:
    module_path: str
    kernel: str
    dtype: str
    variant: tuple  # sorted (name, value) pairs of the variant dict, num_warps included
    arch: int
    want_ptx: bool


@dataclass
class Compiled:
    job: Job
    entry: str
    num_warps: int
    shared_bytes: int
    params: list
    multiples: list
    num_user_params: int
    arguments: list  # per SIGNATURE argument, (kind, its index among params or -1 where unread)
    cubin: bytes
    ptx: bytes | None


class KernelCache:
    """Compiled kernels on disk, keyed by content: every file in triton_src (the kernels, their
    tile tables and this compiler), the job (kernel, dtype, variant, arch, PTX or not) and the
    versions of Triton and torch. A rebuild whose kernels did not change compiles nothing."""

    def __init__(self, root: Path, sources: Path = HERE):
        digest = hashlib.sha256()
        for path in sorted(sources.iterdir()):
            if path.suffix in (".py", ".json"):
                digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        for package in ("triton", "torch"):
            try:
                digest.update(f"{package}={importlib.metadata.version(package)}\0".encode())
            except importlib.metadata.PackageNotFoundError:
                digest.update(f"{package}=none\0".encode())
        digest.update(f"line_info_off={os.environ.get('TRITON_DISABLE_LINE_INFO')}\0".encode())
        self.root = root
        self.folder = root / digest.hexdigest()[:24]

    def _path(self, job: Job) -> Path:
        key = repr((Path(job.module_path).name, job.kernel, job.dtype, job.variant, job.arch, job.want_ptx))
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.pickle"

    def load(self, job: Job) -> Compiled | None:
        try:
            fields = pickle.loads(self._path(job).read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError):
            return None
        return Compiled(job=job, **fields)

    def store(self, result: Compiled) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fields = {k: v for k, v in vars(result).items() if k != "job"}
        path = self._path(result.job)
        staged = path.with_suffix(f".{os.getpid()}.tmp")
        staged.write_bytes(pickle.dumps(fields))
        staged.replace(path)  # atomic: a concurrent build never reads half a file

    def prune(self) -> None:
        """Keeps this build's folder and the few most recently used others."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.touch()
        others = sorted((p for p in self.root.iterdir() if p.is_dir() and p != self.folder),
                        key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in others[CACHED_SOURCE_STATES - 1:]:
            shutil.rmtree(stale, ignore_errors=True)


def parse_archs(text: str) -> list[int]:
    archs = []
    for item in re.split(r"[,;\s]+", text.strip()):
        if not item:
            continue
        digits = item.lower().removeprefix("sm_").removeprefix("sm").rstrip("a")
        if not digits.isdigit():
            raise SystemExit(f"aot.py: cannot read arch {item!r} in {text!r}; write e.g. 80,89,90")
        archs.append(int(digits))
    if not archs:
        raise SystemExit(f"aot.py: the arch list {text!r} is empty")
    return sorted(set(archs))


def kernel_modules() -> list[Path]:
    return sorted(p for p in HERE.glob("*.py")
                  if p.name not in ("aot.py", "__init__.py") and "VARIANTS =" in p.read_text())


@functools.cache  # once per process, not once per kernel compiled: executing a module is not free
def load_module(path: str):
    spec = importlib.util.spec_from_file_location(f"fused_ops_kernels.{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def jobs_for(archs: list[int]) -> list[Job]:
    # PTX is only forward compatible for targets without the "a" suffix, which Triton uses
    # from sm_90 on; the highest such arch is the one a newer GPU falls back to.
    ptx_arch = max((a for a in archs if a < 90), default=None)
    jobs = []
    for path in kernel_modules():
        module = load_module(str(path))
        for variant in module.VARIANTS:
            config = dict(variant)
            for dtype in config.pop("dtypes", module.DTYPES):
                for arch in archs:
                    jobs.append(Job(str(path), module.KERNEL_NAME, dtype,
                                    tuple(sorted(config.items())), arch, arch == ptx_arch))
    return jobs


def ptx_params(ptx: str, entry: str) -> list[str]:
    header = ptx[ptx.index(f".entry {entry}("):]
    header = header[:header.index(")")]
    params = []
    for index, (ptx_type, is_pointer, number) in enumerate(_PTX_PARAM.findall(header)):
        assert int(number) == index, f"{entry}: PTX parameters out of order"
        params.append(_PTX_KIND[(ptx_type, bool(is_pointer))])
    return params


def formatted_signature(module, dtype: str, variant: dict) -> dict:
    acc_dtype = "fp64" if dtype == "fp64" else "fp32"
    operand_dtype = getattr(module, "OPERAND_DTYPES", {}).get(dtype, dtype)
    return {name: t.format(dtype=dtype, acc_dtype=acc_dtype, operand_dtype=operand_dtype, **variant)
            for name, t in module.SIGNATURE.items()}


def signature_kinds(signature: dict) -> list[str]:
    return ["Pointer" if t.startswith("*") else _SIGNATURE_KIND[t] for t in signature.values()]


def promised_multiples(module, variant: dict, dtype: str) -> dict:
    hook = getattr(module, "multiples", None)
    return dict(hook(variant, dtype)) if hook else {}


def unread_arguments(module, variant: dict) -> set:
    hook = getattr(module, "unread_arguments", None)
    return set(hook(variant)) if hook else set()


def compile_job(job: Job) -> Compiled:
    import triton
    from triton.backends.compiler import GPUTarget

    module = load_module(job.module_path)
    kernel = getattr(module, job.kernel)
    variant = dict(job.variant)
    num_warps = variant.pop("num_warps")
    num_stages = variant.pop("num_stages", 1)
    declared = formatted_signature(module, job.dtype, variant)
    unread = unread_arguments(module, variant)
    promised = promised_multiples(module, variant, job.dtype)
    for names, what in ((promised, "multiples"), (unread, "unread_arguments")):
        if set(names) - set(declared):
            raise RuntimeError(f"{job.kernel}: {what} names {sorted(set(names) - set(declared))}, not in SIGNATURE")
    if set(promised) & unread:
        raise RuntimeError(f"{job.kernel} {variant}: promises multiples of {sorted(set(promised) & unread)}, "
                           "which it never reads")
    passed = {name: t for name, t in declared.items() if name not in unread}
    signature = {**declared, **{name: "constexpr" for name in [*unread, *variant]}}
    attrs = {(index,): [["tt.divisibility", promised[name]]] for index, name in enumerate(declared)
             if name in promised}
    source = triton.compiler.ASTSource(fn=kernel, signature=signature, attrs=attrs,
                                       constexprs={**variant, **dict.fromkeys(unread)})
    try:
        compiled = triton.compile(source, target=GPUTarget("cuda", job.arch, 32),
                                  options={"num_warps": num_warps, "num_stages": num_stages})
    except Exception as error:
        if not unread:
            raise
        # Reading an argument compiled as None fails in Triton's front end with a bare NoneType error.
        raise RuntimeError(f"{job.kernel} ({job.dtype}, {variant}): {error}\n(compiled without "
                           f"{sorted(unread)}, the arguments its module's unread_arguments names: does the "
                           "variant read one of them?)") from error
    meta = compiled.metadata
    for scratch in ("global_scratch_size", "profile_scratch_size"):
        if getattr(meta, scratch, 0):
            raise RuntimeError(f"{job.kernel} ({job.dtype}, {variant}, sm_{job.arch}) needs "
                               f"{scratch}={getattr(meta, scratch)}; the launcher passes no scratch")
    limit = SHARED_LIMIT.get(job.arch)
    if limit is not None and meta.shared > limit:
        raise RuntimeError(f"{job.kernel} ({job.dtype}, {variant}) needs {meta.shared} B of shared memory "
                           f"per block; sm_{job.arch} allows {limit}")
    ptx = compiled.asm["ptx"]
    # A pointer's alignment promise that reaches the compiler shows up as vector accesses; none
    # means this Triton version read the hint differently, and the variant would be slow for nothing.
    if any(declared[name].startswith("*") for name in promised) and not _WIDE_ACCESS.search(ptx):
        raise RuntimeError(f"{job.kernel} ({job.dtype}, {variant}): compiled with divisibility hints "
                           f"{promised} but issues no vector load or store")
    params = ptx_params(ptx, meta.name)
    expected = signature_kinds(passed)
    if params[:len(expected)] != expected or any(p != "Pointer" for p in params[len(expected):]):
        raise RuntimeError(f"{job.kernel} sm_{job.arch}: compiled parameters {params} do not "
                           f"start with the declared {expected} followed by scratch pointers")
    multiples = [promised.get(name, 0) for name in passed] + [0] * (len(params) - len(expected))
    arguments = [(kind, list(passed).index(name) if name in passed else -1)
                 for name, kind in zip(declared, signature_kinds(declared))]
    return Compiled(job, meta.name, meta.num_warps, meta.shared, params, multiples, len(expected), arguments,
                    compiled.asm["cubin"], ptx.encode() + b"\0" if job.want_ptx else None)


def embed(name: str, path: Path, data: bytes) -> str:
    """The bytes of `path` as the array `name`, by the assembler's .incbin: a C++ byte-array
    literal is slow to compile (docs/performance.md). The digest puts the contents into the
    source text, so that the build recompiles it when an image changes (its dependency scan
    does not see .incbin's file)."""
    path.write_bytes(data)
    quoted = str(path.resolve()).replace("\\", "\\\\").replace('"', '\\"')
    return (f'// {name}: {len(data)} B, sha256 {hashlib.sha256(data).hexdigest()}\n'
            f'extern "C" const unsigned char {name}[];\n'
            f'__asm__(".pushsection .rodata, \\"a\\"\\n.balign 16\\n.globl {name}\\n.hidden {name}\\n"\n'
            f'        "{name}:\\n.incbin \\"{quoted}\\"\\n.popsection");\n')


def render_flavours(flavours: list) -> tuple[str, str]:
    """The registry's flavours as C++ (csrc/kernel_table.h: Flavour), in its order."""
    index = {(f.kernel, f.name): i for i, f in enumerate(flavours)}
    arrays, rows = [], []
    for i, f in enumerate(flavours):
        requires = "nullptr"
        if f.requires:
            arrays.append(f"const char* const requires_{i}[] = {{" + ", ".join(f'"{r}"' for r in f.requires) + "};")
            requires = f"requires_{i}"
        partner = index[(f.kernel, f.same_tiles_as)] if f.same_tiles_as else -1
        rows.append(f'  {{"{f.kernel}", "{f.name}", {requires}, {len(f.requires)}, '
                    f"{str(f.exact_channels).lower()}, {partner}, {str(f.within_inner_group).lower()}}},")
    return "\n".join(arrays) + "\n", "const Flavour flavours[] = {\n" + "\n".join(rows) + "\n};\n"


def render_fact_limits(limits: dict) -> str:
    return "const Constexpr fact_limits[] = {" + ", ".join(f'{{"{k}", {int(v)}}}' for k, v in limits.items()) + "};\n"


def render(results: list[Compiled], archs: list[int], image_dir: Path) -> str:
    registry = load_module(str(HERE / "softmax_bias_sigmoid_flavours.py"))
    flavour_index = {(f.kernel, f.name): i for i, f in enumerate(registry.FLAVOURS)}
    groups: dict[tuple, list[Compiled]] = {}
    for r in results:
        groups.setdefault((r.job.kernel, r.job.variant, r.job.dtype), []).append(r)
    arrays, images, variants = [], [], []
    for index, ((kernel, variant, dtype), compiled) in enumerate(groups.items()):
        first = compiled[0]
        if any(c.params != first.params or c.num_warps != first.num_warps or c.multiples != first.multiples
               or c.arguments != first.arguments for c in compiled):
            raise RuntimeError(f"{kernel} {dtype} {variant}: archs disagree on parameters or warps")
        image_rows = []
        for c in sorted(compiled, key=lambda c: c.job.arch):
            for fmt, data in (("Cubin", c.cubin), ("Ptx", c.ptx)):
                if data is None:
                    continue
                name = f"fused_ops_image_{index}_sm{c.job.arch}_{fmt.lower()}"
                arrays.append(embed(name, image_dir / f"{name}.bin", data))
                image_rows.append(f'  {{{c.job.arch}, ImageFormat::{fmt}, {name}, {len(data)}, '
                                  f'"{c.entry}", {c.shared_bytes}}},')
        constexprs = [(k, v) for k, v in variant if k != "num_warps"]
        flavour = registry.flavour_of(kernel, dict(variant))
        flavour_number = flavour_index[(kernel, flavour.name)] if flavour else -1
        images.append(f"const Image images_{index}[] = {{\n" + "\n".join(image_rows) + "\n};\n"
                      f"const Constexpr constexprs_{index}[] = {{"
                      + ", ".join(f'{{"{k}", {int(v)}}}' for k, v in constexprs) + "};\n"
                      f"const ParamKind params_{index}[] = {{"
                      + ", ".join(f"ParamKind::{p}" for p in first.params) + "};\n"
                      f"const int multiple_of_{index}[] = {{"
                      + ", ".join(str(m) for m in first.multiples) + "};\n"
                      f"const Argument arguments_{index}[] = {{"
                      + ", ".join(f"{{ParamKind::{kind}, {param}}}" for kind, param in first.arguments) + "};\n")
        variants.append(f'  {{"{kernel}", "{dtype}", constexprs_{index}, {len(constexprs)}, '
                        f"{first.num_warps}, params_{index}, multiple_of_{index}, {len(first.params)}, "
                        f"{first.num_user_params}, arguments_{index}, {len(first.arguments)}, "
                        f"images_{index}, {len(image_rows)}, {flavour_number}}},")
    arch_list = ";".join(str(a) for a in archs)
    requires_arrays, flavour_rows = render_flavours(registry.FLAVOURS)
    return ("// Generated by triton_src/aot.py. Do not edit: the build writes it anew.\n"
            '#include "kernel_table.h"\n\n' + "\n".join(arrays)
            + "\nnamespace fused_ops {\nnamespace {\n\n" + "\n".join(images)
            + "\nconst Variant variants[] = {\n" + "\n".join(variants) + "\n};\n\n"
            + requires_arrays + flavour_rows + render_fact_limits(registry.FACT_LIMITS) + "\n}  // namespace\n\n"
            "const KernelTable& kernel_table() {\n"
            f'  static const KernelTable table{{variants, sizeof(variants) / sizeof(variants[0]), "{arch_list}",\n'
            "                                  flavours, sizeof(flavours) / sizeof(flavours[0]),\n"
            "                                  fact_limits, sizeof(fact_limits) / sizeof(fact_limits[0])};\n"
            "  return table;\n}\n\n}  // namespace fused_ops\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--archs", default=os.environ.get(ARCHS_ENV, ",".join(map(str, DEFAULT_ARCHS))),
                        help=f"target archs (default: ${ARCHS_ENV} or {DEFAULT_ARCHS})")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE)),
                        help=f"compiled-kernel cache shared by every build of this checkout (default: "
                             f"${CACHE_ENV} or build/kernel-cache)")
    args = parser.parse_args(argv)

    archs = parse_archs(args.archs)
    if 89 not in archs:
        print(f"aot.py: note: sm_89 (RTX 4090, the target GPU) is not in {archs}", file=sys.stderr)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    # Triton's own cache would only duplicate KernelCache's: keep it out of the user's home
    # directory and delete it with the build's temporary files.
    triton_cache = tempfile.TemporaryDirectory(prefix="fused_ops_triton_cache_")
    os.environ.setdefault("TRITON_CACHE_DIR", triton_cache.name)
    # Line tables double the size of every image; TRITON_DISABLE_LINE_INFO=0 keeps them for
    # profiling against the Python source.
    os.environ.setdefault("TRITON_DISABLE_LINE_INFO", "1")

    jobs = jobs_for(archs)
    start = time.monotonic()
    cache = KernelCache(args.cache_dir)
    cache.prune()
    results = [r for r in map(cache.load, jobs) if r is not None]
    cached = {r.job for r in results}
    to_compile = [job for job in jobs if job not in cached]
    workers = max(1, min(args.jobs, len(to_compile)))
    estimate = f", roughly {SECONDS_PER_KERNEL * len(to_compile) / workers / 60:.0f} min" if to_compile else ""
    print(f"aot.py: {len(jobs)} kernels for sm_{', sm_'.join(map(str, archs))}: {len(cached)} from the "
          f"cache in {cache.folder}, {len(to_compile)} to compile on {workers} processes{estimate}", flush=True)
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(compile_job, job): job for job in to_compile}
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            job = futures[future]
            try:
                result = future.result()
            except Exception as error:
                for f in futures:
                    f.cancel()
                raise SystemExit(f"aot.py: compiling {job.kernel} {job.dtype} {dict(job.variant)} "
                                 f"for sm_{job.arch} failed: {error}") from error
            cache.store(result)
            results.append(result)
            config = " ".join(f"{k}={v}" for k, v in job.variant)
            print(f"[{done}/{len(to_compile)}] {job.kernel} {job.dtype} {config} sm_{job.arch}: "
                  f"{len(result.cubin)} B cubin, {result.shared_bytes} B shared "
                  f"({time.monotonic() - start:.0f} s)", flush=True)

    # The table keeps each module's VARIANTS order: a launcher may take the first that fits.
    order = {job: index for index, job in enumerate(jobs)}
    results.sort(key=lambda r: order[r.job])
    image_dir = args.out_dir / "images"
    image_dir.mkdir(exist_ok=True)
    source = render(results, archs, image_dir)
    target = args.out_dir / "aot_kernels.cpp"
    # Rewriting identical output would force a recompile of the largest source in the build.
    if not target.exists() or target.read_text() != source:
        target.write_text(source)
    print(f"aot.py: {len(jobs)} kernels for sm_{', sm_'.join(map(str, archs))} in "
          f"{time.monotonic() - start:.0f} s -> {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
