"""Property tests of fused::softmax_bias_sigmoid on the CPU: random shapes, strides, dtypes and
scales against the float64 reference. Derandomized, so every CI run draws the same examples."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import assert_matches_reference

op = torch.ops.fused.softmax_bias_sigmoid.default

PROPERTY_SETTINGS = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                             suppress_health_check=[HealthCheck.too_slow])


@st.composite
def strided_inputs(draw):
    """x of rank 2..5 with sizes up to 6 (C up to 40), laid out in memory in a random
    dimension order, each dimension sliced with a random start and step; channels_last is one
    of those orders, and gets drawn on its own as well."""
    rank = draw(st.integers(2, 5))
    shape = [draw(st.integers(1, 4)), draw(st.integers(1, 40))] + [draw(st.integers(1, 6))
                                                                   for _ in range(rank - 2)]
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]))
    seed = draw(st.integers(0, 2**31 - 1))
    steps = [draw(st.integers(1, 3)) for _ in shape]
    starts = [draw(st.integers(0, step - 1)) for step in steps]
    channels_last = rank == 4 and draw(st.booleans())
    order = [0, 2, 3, 1] if channels_last else draw(st.permutations(range(rank)))
    # A base tensor stored in `order` and big enough for the slices, viewed back in (N, C, ...).
    base_shape = [size * step for size, step in zip(shape, steps)]
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn([base_shape[d] for d in order], dtype=torch.float64, generator=generator) * 3
    inverse = sorted(range(rank), key=order.__getitem__)
    x = base.to(dtype).permute(inverse)[tuple(slice(start, None, step) for start, step in zip(starts, steps))]
    bias = torch.randn(shape[1], dtype=torch.float64, generator=generator).to(dtype)
    bias = bias.reshape(draw(st.sampled_from([(-1,), (-1, 1, 1), (1, -1, 1, 1)])))
    return x, bias


scales = st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0]),
                   st.floats(-8.0, 8.0, allow_nan=False, allow_infinity=False))


@PROPERTY_SETTINGS
@given(inputs=strided_inputs(), scale=scales)
def test_any_strides_dtype_and_scale_match_reference(inputs, scale):
    x, bias = inputs
    out = op(x, bias, scale)
    assert_matches_reference(out, x, bias, scale)
    assert out.stride() == torch.empty_like(x).stride(), "the output does not keep x's layout"


@PROPERTY_SETTINGS
@given(inputs=strided_inputs(), scale=scales)
def test_meta_agrees_with_cpu_on_shape_and_strides(inputs, scale):
    x, bias = inputs
    meta_x = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta")
    out, meta_out = op(x, bias, scale), op(meta_x, bias.to("meta"), scale)
    assert (meta_out.shape, meta_out.dtype) == (out.shape, out.dtype)
    # Only the strides of dimensions longer than 1 address anything; torch's own empty_like
    # keeps the others from a dense CPU tensor but not from a meta one.
    assert significant_strides(meta_out) == significant_strides(out)


def significant_strides(t):
    return [stride for size, stride in zip(t.shape, t.stride()) if size > 1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@PROPERTY_SETTINGS
@given(channels=st.integers(1, 64), shift=st.floats(-1e4, 1e4), seed=st.integers(0, 2**31 - 1))
def test_softmax_is_shift_invariant(dtype, channels, shift, seed):
    """Adding one constant to every channel of a position changes nothing: the kernel
    subtracts the channel max before exponentiating, so large offsets cannot overflow."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, channels, 5, dtype=torch.float64, generator=generator)
    bias = torch.randn(channels, dtype=torch.float64, generator=generator).to(dtype)
    shifted = (x + shift).to(dtype)
    assert_matches_reference(op(shifted, bias, 2.0), shifted, bias, 2.0)
