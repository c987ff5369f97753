"""ModelNew survives torch.jit.script and torch.jit.trace: the saved module runs in a fresh
process that imports fused_ops, and matches the float64 CPU reference. Without the import the
load fails and names the missing op (the documented contract)."""
import subprocess
import sys

import pytest
import torch

import fused_ops

MODEL_ARGS = (4, 8, 4, 2, 1, 1, (8, 1, 1), 2.0)
INPUT_SHAPE = (2, 4, 5, 6)
TOLERANCE = 1e-5

# TorchScript is deprecated upstream but is the interface under test.
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:FutureWarning")

# Runs in a fresh interpreter: nothing of this test process (its loaded op library, say) helps.
LOAD_AND_RUN = """
import sys
import torch
import fused_ops

model_path, input_path, output_path, device = sys.argv[1:]
# The reference is float64: TF32 convolutions would dwarf the fused op's error.
torch.backends.cudnn.allow_tf32 = False
model = torch.jit.load(model_path, map_location=device)
with torch.no_grad():
    output = model(torch.load(input_path).to(device))
torch.save(output.cpu(), output_path)
"""

LOAD_ONLY = "import sys, torch; torch.jit.load(sys.argv[1])"


def export(how, device, folder):
    """Saves ModelNew, scripted or traced on `device`, and an input; returns their paths and
    the float64 CPU reference output."""
    torch.manual_seed(0)
    model = fused_ops.ModelNew(*MODEL_ARGS).eval()
    reference = fused_ops.Model(*MODEL_ARGS).double().eval()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(INPUT_SHAPE)
    model.to(device)
    with torch.no_grad():
        exported = torch.jit.script(model) if how == "script" else torch.jit.trace(model, x.to(device))
        expected = reference(x.double())
    model_path, input_path = folder / f"{how}.pt", folder / "input.pt"
    torch.jit.save(exported, model_path)
    torch.save(x, input_path)
    return model_path, input_path, expected


def run_python(code, *args):
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("how", ["script", "trace"])
def test_saved_module_matches_reference_in_fresh_process(how, device, tmp_path):
    model_path, input_path, expected = export(how, device, tmp_path)
    output_path = tmp_path / "output.pt"

    result = run_python(LOAD_AND_RUN, model_path, input_path, output_path, device)

    assert result.returncode == 0, result.stderr
    output = torch.load(output_path)
    assert output.dtype == torch.float32
    torch.testing.assert_close(output.double(), expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_load_without_fused_ops_names_missing_op(how, tmp_path):
    model_path, _, _ = export(how, "cpu", tmp_path)

    result = run_python(LOAD_ONLY, model_path)

    assert result.returncode != 0
    assert "Unknown builtin op: fused::conv_transpose2d_softmax_bias_sigmoid" in result.stderr
