"""The build-time compiler (triton_src/aot.py) on this machine, GPU or not: what it makes of the
arguments a variant never reads. Needs triton, a build-time tool only; skipped without it."""
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed", allow_module_level=True)
sys.path.insert(0, os.path.join(REPO, "triton_src"))
import aot  # noqa: E402

ARCH = 90  # any arch the installed Triton compiles for; compiled offline, like the build


@pytest.fixture(autouse=True)
def triton_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton_cache"))


def job_for(module_path, predicate, dtype="fp32"):
    module = aot.load_module(module_path)
    for variant in module.VARIANTS:
        config = dict(variant)
        if dtype in config.pop("dtypes", module.DTYPES) and predicate(config):
            return aot.Job(module_path, module.KERNEL_NAME, dtype, tuple(sorted(config.items())), ARCH, False)
    raise AssertionError("no such variant")


def test_unread_arguments_are_left_out_of_the_kernel():
    """The one-channel small-tensor tile reads 9 of the tail kernel's 17 arguments: its compiled
    parameters are those 9, in order, then Triton's scratch pointers, and the table maps every
    argument of the signature to its parameter or to none."""
    path = os.path.join(REPO, "triton_src", "softmax_bias_sigmoid.py")
    job = job_for(path, lambda v: v["SMALL_TENSOR"] and v["BLOCK_C"] == 1 and v["ALIGNED"] and not v["SOFTMAX_STATS"])
    module = aot.load_module(path)
    unread = module.unread_arguments(dict(job.variant))
    assert unread == {"softmax_stats_ptr", "inner_size", "num_position_blocks", "x_stride_outer", "x_stride_inner",
                      "out_stride_c", "out_stride_outer", "out_stride_inner"}

    compiled = aot.compile_job(job)
    declared = aot.formatted_signature(module, "fp32", dict(job.variant))
    read = [name for name in declared if name not in unread]
    kinds = aot.signature_kinds(declared)
    assert compiled.num_user_params == len(read) == 9
    assert compiled.params[:9] == [kind for name, kind in zip(declared, kinds) if name not in unread]
    assert all(kind == "Pointer" for kind in compiled.params[9:])
    assert compiled.arguments == [(kind, read.index(name) if name in read else -1)
                                  for name, kind in zip(declared, kinds)]
    # The promise of 16-byte rows still reaches the reads it is about.
    assert [m for m in compiled.multiples[:9] if m] == [16, 16, 4, 4, 4, 4]


KERNEL_MODULE = '''
import triton
import triton.language as tl

KERNEL_NAME = "scaled_copy"
SIGNATURE = {"x_ptr": "*{dtype}", "out_ptr": "*{dtype}", "count": "i32", "spare": "i32", "scale": "{acc_dtype}"}
DTYPES = ("fp32",)
VARIANTS = [dict(BLOCK=128, CLAIM_COUNT_UNREAD=claim, num_warps=4) for claim in (0, 1)]


def unread_arguments(variant):
    return {"spare", "count"} if variant["CLAIM_COUNT_UNREAD"] else {"spare"}


@triton.jit
def scaled_copy(x_ptr, out_ptr, count, spare, scale, BLOCK: tl.constexpr, CLAIM_COUNT_UNREAD: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offsets, tl.load(x_ptr + offsets, mask=offsets < count) * scale, mask=offsets < count)
'''


def test_a_variant_that_reads_an_argument_it_calls_unread_fails_to_build(tmp_path):
    path = tmp_path / "scaled_copy.py"
    path.write_text(textwrap.dedent(KERNEL_MODULE))
    honest = aot.compile_job(job_for(str(path), lambda v: not v["CLAIM_COUNT_UNREAD"]))
    assert honest.params[:4] == ["Pointer", "Pointer", "Int32", "Float32"]
    assert honest.arguments == [("Pointer", 0), ("Pointer", 1), ("Int32", 2), ("Int32", -1), ("Float32", 3)]
    with pytest.raises(RuntimeError, match=r"compiled without \[.count., .spare.\]"):
        aot.compile_job(job_for(str(path), lambda v: v["CLAIM_COUNT_UNREAD"]))


def test_kernel_cache_is_keyed_by_the_sources(tmp_path):
    """A compiled kernel comes back from the cache while the sources are unchanged, not after an
    edit; pruning keeps the current sources' folder and the most recently used others."""
    sources = tmp_path / "triton_src"
    sources.mkdir()
    path = sources / "scaled_copy.py"
    path.write_text(textwrap.dedent(KERNEL_MODULE))
    job = job_for(str(path), lambda v: not v["CLAIM_COUNT_UNREAD"])
    cache = aot.KernelCache(tmp_path / "cache", sources)
    assert cache.load(job) is None
    compiled = aot.compile_job(job)
    cache.store(compiled)

    again = aot.KernelCache(tmp_path / "cache", sources).load(job)
    assert again is not None and again.cubin == compiled.cubin and again.params == compiled.params
    assert again.job == job

    path.write_text(textwrap.dedent(KERNEL_MODULE).replace("* scale", "* scale * 2"))
    edited = aot.KernelCache(tmp_path / "cache", sources)
    assert edited.folder != cache.folder and edited.load(job) is None

    for state in range(aot.CACHED_SOURCE_STATES + 2):
        path.write_text(textwrap.dedent(KERNEL_MODULE) + f"\n# state {state}\n")
        aot.KernelCache(tmp_path / "cache", sources).prune()
    assert len(list((tmp_path / "cache").iterdir())) == aot.CACHED_SOURCE_STATES


@pytest.mark.skipif(shutil.which("g++") is None or shutil.which("objcopy") is None,
                    reason="needs g++ and objcopy")
def test_images_are_embedded_byte_for_byte(tmp_path):
    """The generated source embeds each image with .incbin: the compiled object's read-only data
    holds the cubin, unchanged."""
    path = tmp_path / "scaled_copy.py"
    path.write_text(textwrap.dedent(KERNEL_MODULE))
    compiled = aot.compile_job(job_for(str(path), lambda v: not v["CLAIM_COUNT_UNREAD"]))
    (tmp_path / "images").mkdir()
    source = tmp_path / "aot_kernels.cpp"
    source.write_text(aot.render([compiled], [ARCH], tmp_path / "images"))
    objects = tmp_path / "aot_kernels.o"
    subprocess.run(["g++", "-std=c++20", "-c", "-fPIC", f"-I{REPO}/csrc", str(source), "-o", str(objects)],
                   check=True)
    rodata = tmp_path / "rodata.bin"
    subprocess.run(["objcopy", "-O", "binary", "--only-section=.rodata", str(objects), str(rodata)], check=True)
    assert compiled.cubin in rodata.read_bytes()


def test_every_tail_variant_belongs_to_one_flavour_and_the_registry_is_consistent():
    """Each compiled variant of the tail op's kernels matches exactly one flavour of the registry
    (aot.py fails the build otherwise), and every flavour that a linked one names exists."""
    registry = aot.load_module(os.path.join(REPO, "triton_src", "softmax_bias_sigmoid_flavours.py"))
    for name in ("softmax_bias_sigmoid", "softmax_bias_sigmoid_backward"):
        module = aot.load_module(os.path.join(REPO, "triton_src", f"{name}.py"))
        used = {registry.flavour_of(name, variant).name for variant in module.VARIANTS}
        assert "nchw" in used and "strided_index64" in used, used
    names = {(f.kernel, f.name) for f in registry.FLAVOURS}
    assert len(names) == len(registry.FLAVOURS), "flavour names repeat"
    assert all((f.kernel, f.same_tiles_as) in names for f in registry.FLAVOURS if f.same_tiles_as)
    with pytest.raises(ValueError, match="matches 0 flavours"):
        registry.flavour_of("softmax_bias_sigmoid", dict(CONTIGUOUS=1, CHANNELS_LAST=1))
    rendered = aot.render_flavours(registry.FLAVOURS)[1]
    assert rendered.count("\n  {") == len(registry.FLAVOURS)


def test_tuner_prunes_buckets_that_gain_less_than_3_percent():
    """benchmarks/tune_softmax_bias_sigmoid.py's prune_buckets, on made-up timings: a bucket goes
    where the next larger kept tile serves its C within 3%, the largest stays, exact flavours
    keep theirs, and a linked flavour's tile goes with its partner's bucket."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import tune_softmax_bias_sigmoid as tuner

    def tile(block_c, ms):
        return {"ms": ms, "BLOCK_C": block_c, "BLOCK_S": 32, "num_warps": 4, "single_pass": True}

    best = {("fp32", "nchw", 16): tile(16, 1.00), ("fp32", "nchw", 32): tile(32, 1.00),
            ("fp32", "nchw", 64): tile(64, 1.00), ("fp32", "nchw_sector", 32): tile(32, 0.9),
            ("fp32", "nchw_exact", 16): tile(16, 0.5), ("fp32", "nchw", "two-pass"): tile(64, 2.0)}
    # The 64-channel tile at C = 32 costs 1.01 (a 1% gain for the 32 bucket); at C = 16, 1.10.
    slower = {32: 1.01, 16: 1.10}
    pruned = tuner.prune_buckets(best, lambda size_class, flavour, t, channels: slower[channels])
    assert [(p["flavour"], p["BLOCK_C"]) for p in pruned] == [("nchw", 32), ("nchw_sector", 32)]
    assert set(best) == {("fp32", "nchw", 16), ("fp32", "nchw", 64), ("fp32", "nchw_exact", 16),
                         ("fp32", "nchw", "two-pass")}
    assert best[("fp32", "nchw", 16)]["next_bucket_ms"] == 1.10
