"""The CMake build: run_scripted_model, linked with the op library, loads a scripted ModelNew
from C++ alone and matches the float64 CPU reference computed here, forward and backward (the
op's Autograd kernel is C++, so a module loaded in C++ trains)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

import fused_ops

pytestmark = [
    pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed"),
    # TorchScript is deprecated upstream but is the interface under test.
    pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:FutureWarning"),
]

REPO = Path(__file__).resolve().parents[1]
MODEL_ARGS = (4, 8, 4, 2, 1, 1, (8, 1, 1), 2.0)
INPUT_SHAPE = (2, 4, 5, 6)
TOLERANCE = 1e-5


def cmake(*args):
    result = subprocess.run(["cmake", *args], capture_output=True, text=True)
    assert result.returncode == 0, f"cmake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


# The README's CMake command builds here.
README_BUILD = REPO / "build"


@pytest.fixture(scope="session")
def run_scripted_model():
    """The run_scripted_model of one CMake build, shared by every test of the session. It builds
    in the README's CMake folder, so that the README's command after the tests (as in CI) finds
    its work done and a second test run rebuilds nothing; in a temporary folder instead where
    that one was configured for another Python."""
    cache = README_BUILD / "CMakeCache.txt"
    configured_for = cache.exists() and re.search(r"^Python_EXECUTABLE:\w+=(.*)$", cache.read_text(), re.MULTILINE)
    if configured_for and configured_for.group(1) != sys.executable:
        with tempfile.TemporaryDirectory(prefix="fused_ops_cmake_") as folder:
            yield build_run_scripted_model(Path(folder))
    else:
        yield build_run_scripted_model(README_BUILD)


def build_run_scripted_model(build):
    configure = ["-S", str(REPO), "-B", str(build), f"-DPython_EXECUTABLE={sys.executable}"]
    if not (build / "CMakeCache.txt").exists():
        ninja = shutil.which("ninja")
        if ninja:
            configure += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
        if fused_ops.BUILT_FOR["archs"]:
            # The installed library's archs: their kernels are in the cache its build filled.
            configure.append(f"-DFUSED_OPS_ARCHS={fused_ops.BUILT_FOR['archs']}")
    cmake(*configure)
    cmake("--build", str(build), "--parallel", str(os.cpu_count() or 1))
    return build / "run_scripted_model"


def export(folder, device):
    """Saves a scripted ModelNew on `device`, an input, the float64 CPU reference output and
    the reference gradient of sum(output^2) / 2 in the input (what run_scripted_model
    backpropagates); returns their paths and the reference output."""
    torch.manual_seed(0)
    model = fused_ops.ModelNew(*MODEL_ARGS).eval()
    reference = fused_ops.Model(*MODEL_ARGS).double().eval()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(INPUT_SHAPE)
    x64 = x.double().requires_grad_()
    expected = reference(x64)
    (expected * expected).sum().div(2).backward()
    paths = [folder / f"{name}.pt" for name in ("model", "input", "expected", "expected_grad")]
    torch.jit.save(torch.jit.script(model.to(device)), paths[0])
    for path, value in zip(paths[1:], (x, expected.detach(), x64.grad)):
        torch.save(value, path)
    return *paths, expected.detach()


def run(program, model_path, input_path, expected_path, device, expected_grad_path=None):
    command = [program, model_path, input_path, expected_path, device, TOLERANCE]
    if expected_grad_path:
        command.append(expected_grad_path)
    return subprocess.run([str(arg) for arg in command], capture_output=True, text=True)


def reported_error(stdout, what="output"):
    match = re.search(rf"^{what} max abs error: (\S+)", stdout, re.MULTILINE)
    assert match, f"no {what} error reported in:\n{stdout}"
    return float(match.group(1))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_cpp_loader_matches_reference(run_scripted_model, device, tmp_path):
    model_path, input_path, expected_path, _, _ = export(tmp_path, device)

    result = run(run_scripted_model, model_path, input_path, expected_path, device)

    assert result.returncode == 0, result.stdout + result.stderr
    assert reported_error(result.stdout) <= TOLERANCE


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_cpp_loader_trains_like_reference(run_scripted_model, device, tmp_path):
    model_path, input_path, expected_path, expected_grad_path, _ = export(tmp_path, device)

    result = run(run_scripted_model, model_path, input_path, expected_path, device, expected_grad_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert reported_error(result.stdout) <= TOLERANCE
    assert reported_error(result.stdout, "input gradient") <= TOLERANCE


def test_cpp_loader_fails_on_wrong_expected_output(run_scripted_model, tmp_path):
    model_path, input_path, _, _, expected = export(tmp_path, "cpu")
    off_by = 100 * TOLERANCE
    wrong_path = tmp_path / "wrong.pt"
    torch.save(expected + off_by, wrong_path)

    result = run(run_scripted_model, model_path, input_path, wrong_path, "cpu")

    assert result.returncode == 1, result.stdout + result.stderr
    assert reported_error(result.stdout) == pytest.approx(off_by, rel=1e-3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cpp_loader_names_the_missing_gpu(run_scripted_model, tmp_path):
    model_path, input_path, expected_path, _, _ = export(tmp_path, "cpu")

    result = run(run_scripted_model, model_path, input_path, expected_path, "cuda")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "no usable CUDA GPU" in result.stderr and "run with cpu" in result.stderr, result.stderr
