"""One set of sample inputs per op, which the correctness tests, torch.library.opcheck and the
compute-sanitizer cases (sanitizer_cases.py) all draw from: an edge case added here reaches
each of them.

- softmax_bias_sigmoid: SHAPES in every layout of `layouts` (softmax_bias_sigmoid_samples).
- conv_transpose2d_softmax_bias_sigmoid: CONV_CONFIGS (make_conv_inputs builds the tensors).

Samples are made on the CPU; `to_device` moves one with its strides and storage offset, by a
plain copy of its storage, so that a GPU run sees the same layout and no torch kernel.
"""
import torch

# --- softmax_bias_sigmoid -------------------------------------------------------------------

SHAPES = [
    (2, 1, 5, 5),        # C = 1
    (3, 7, 9, 11),       # C not a power of 2, odd spatial sizes
    (2, 3, 1, 1),        # 1x1 spatial
    (2, 128, 17, 19),    # the workload's C
    (20, 128, 17, 19),   # the same past the small-tensor tiles (over 1 MB): whole-sector stores
    (400, 3, 16, 32),    # rows on 16 bytes, few channels, past the small-tensor tiles: 4-channel tile
    (2, 1025, 3, 5),     # just past the widest single-pass tile: two-pass
    (1, 4100, 2, 3),     # two-pass with a partial last chunk
    (1, 16, 2049),       # rank 3, a partial last block of positions
    (2, 5, 2, 64),       # every other position: rows of 64, read as contiguous spans
    (1, 4100, 2, 32),    # the same with the two-pass tile
    (5, 1000),           # rank 2
    (2, 3, 4, 5, 6),     # rank 5
]


def last_element_offset(view: torch.Tensor) -> int:
    """The offset of `view`'s last element from its first, in elements (strides not negative)."""
    return sum((size - 1) * stride for size, stride in zip(view.shape, view.stride()))


def ending_its_storage(view: torch.Tensor) -> torch.Tensor:
    """A copy of `view` with the same strides in a storage that ends at its last element: a kernel
    reading one element past it leaves the storage (compute-sanitizer shows it)."""
    last = last_element_offset(view)
    return view.as_strided([last + 1], [1]).clone().as_strided(view.shape, view.stride())


def layouts(x):
    """The same values in every layout the tail op's strided view tells apart: dense ones (whose
    output keeps their strides), strided views of one or two spatial groups, a data pointer off
    16 bytes, and the layouts that run on a contiguous copy."""
    yield "contiguous", x
    yield "batch_slice", torch.cat([x, x], dim=0)[1::2]
    yield "misaligned", torch.empty(x.numel() + 1, dtype=x.dtype, device=x.device)[1:].view(x.shape).copy_(x)
    if x.dim() == 4:
        yield "channels_last", x.to(memory_format=torch.channels_last)
        yield "transposed_spatial", x.transpose(2, 3).contiguous().transpose(2, 3)
    if x.dim() >= 3:
        every_other = torch.cat([x, x], dim=-1)[..., ::2]
        yield "every_other_column", every_other
        # Rows on 16 bytes, and nothing after the last position's element: a whole span read
        # (the aligned span tiles) would leave x's storage.
        yield "every_other_column_ending_storage", ending_its_storage(every_other)
        # Rows of odd length, also with nothing after the last position's element: the unaligned
        # span tiles mask that element, and reading it would leave x's storage.
        yield "every_other_column_to_the_end", torch.cat([x, x], dim=-1)[..., :-1].contiguous()[..., ::2]
    if x.dim() == 5:
        yield "three_spatial_groups", torch.cat([x, x], dim=2).permute(0, 1, 3, 4, 2)[:, :, ::2, :, ::2]


DENSE_LAYOUTS = {"contiguous", "channels_last", "transposed_spatial", "misaligned"}


def softmax_bias_sigmoid_samples(dtype, shapes=SHAPES, seed=0):
    """(name, x, bias) for every shape in every layout, on the CPU, drawn in float64 from a
    generator seeded with `seed` (x spread so that the softmax is not flat)."""
    for shape in shapes:
        generator = torch.Generator().manual_seed(seed)
        x = (torch.randn(shape, dtype=torch.float64, generator=generator) * 3).to(dtype)
        bias = torch.randn(shape[1], dtype=torch.float64, generator=generator).to(dtype)
        for layout, view in layouts(x):
            yield f"{shape} {str(dtype).removeprefix('torch.')} {layout}", view, bias


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """t on `device` with the same strides and storage offset (a plain copy of its storage)."""
    storage = torch.empty(0, dtype=t.dtype).set_(t.untyped_storage()).to(device)
    return storage.as_strided(t.shape, t.stride(), t.storage_offset())


# --- conv_transpose2d_softmax_bias_sigmoid --------------------------------------------------

# (batch, C_in, H, W, C_out, kernel, stride, padding, output_padding); an int means (v, v).
WORKLOAD_CONFIG = (2, 64, 64, 64, 128, 4, 2, 1, 1)  # the workload's layer at batch 2
CONV_CONFIGS = [
    (2, 8, 9, 9, 16, 4, 2, 1, 1),                  # the workload's geometry: odd output width
    (2, 5, 6, 8, 7, 4, 2, 1, 0),                   # even output width, C_out not a power of 2
    (1, 3, 5, 7, 5, 3, 2, 1, 0),                   # kernel not a multiple of the stride
    (1, 4, 4, 5, 6, (3, 5), (3, 2), (1, 2), (2, 1)),  # different strides, kernels, paddings per axis
    (2, 3, 4, 4, 7, 2, 1, 0, 0),                   # stride 1
    (1, 2, 3, 3, 4, 1, 2, 0, 1),                   # kernel smaller than the stride: some phases get no taps
    (1, 3, 5, 5, 9, 4, 2, 3, 0),                   # padding wider than the kernel's reach
]
# Larger ones for GPU runs: the workload's layer at batch 1, an even output width, a stride of 3,
# a C_out of no power of 2.
LARGER_CONV_CONFIGS = [(1, 64, 16, 16, 128, 4, 2, 1, 1), (1, 16, 7, 8, 32, 4, 2, 1, 0),
                       (1, 8, 5, 6, 16, 3, 3, 0, 0), (1, 12, 6, 6, 100, 4, 2, 1, 1)]


def pair(v):
    return v if isinstance(v, tuple) else (v, v)


def geometry(config):
    """(stride, padding, output_padding) of a config, each as a pair."""
    return tuple(pair(v) for v in config[6:9])


def make_conv_inputs(config, dtype=torch.float32, device="cpu", conv_bias=True, generator=None):
    """x, weight, conv_bias (or None) and bias of a config, drawn in float64: weights in
    ConvTranspose2d's default initialisation range."""
    n, c_in, h, w, c_out, kernel, *_ = config
    kh, kw = pair(kernel)
    x = torch.rand(n, c_in, h, w, dtype=torch.float64, generator=generator)
    bound = (c_out * kh * kw) ** -0.5
    weight = (torch.rand(c_in, c_out, kh, kw, dtype=torch.float64, generator=generator) * 2 - 1) * bound
    cb = (torch.rand(c_out, dtype=torch.float64, generator=generator) * 2 - 1) * bound if conv_bias else None
    bias = torch.randn(c_out, 1, 1, dtype=torch.float64, generator=generator)
    to = lambda t: None if t is None else t.to(device, dtype)  # noqa: E731
    return to(x), to(weight), to(cb), to(bias)
