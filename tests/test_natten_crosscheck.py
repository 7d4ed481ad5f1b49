"""Cross-check attnsim's ``Neighborhood`` masks against the real NATTEN package.

``tests/natten_reference.py`` is a hand transcription of NATTEN's C++ rule. This module
instead imports ``natten`` itself and compares attnsim with the code NATTEN runs:

* the mask is NATTEN's own Flex Attention ``mask_mod``: ``natten.backends.flex.get_na_flex_mask``
  builds it (and a ``BlockMask`` around it); we take ``BlockMask.mask_mod`` and materialise it
  over every (query, key) pair with ``torch.nn.attention.flex_attention.create_mask``. Both of
  NATTEN's variants are checked: the untiled one (row-major flattened tokens, used when no tile
  shape is given) and the multi-dimensionally tiled one (tokens permuted into tiles and
  dilation groups by ``natten.token_permute.token_permute_operation``, used with
  ``q_tile_shape`` / ``kv_tile_shape``);
* a few cases also run NATTEN's flex forward pass (``natten.na1d/na2d/na3d`` with
  ``backend="flex-fna"``, eager on CPU, fp32) and compare it with a plain softmax attention
  masked by attnsim's mask, which shows the mask is the one the kernel applies.

Parameters go through NATTEN's own argument checks (``natten.utils.checks``). NATTEN rejects
two things attnsim accepts: a window of 1 in any dimension (``kernel_size`` entries must be
>= 2) and a token extent of 1 (``input_size`` entries must be >= 2). Such cases are filtered
out. Skipped as a whole when ``natten`` (or a torch with Flex Attention) is not installed.
"""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

natten = pytest.importorskip("natten")
torch = pytest.importorskip("torch")
flex = pytest.importorskip("natten.backends.flex")  # needs torch.nn.attention.flex_attention

from natten.backends.configs.checks import _FLEX_SUPPORTED  # noqa: E402
from natten.backends.configs.flex import FLEX_FORWARD_TILE_SHAPES  # noqa: E402
from natten.token_permute import token_permute_operation  # noqa: E402
from natten.utils.checks import (  # noqa: E402
    check_all_args,
    check_args_against_input,
    check_input_size_arg,
)
from torch.nn.attention.flex_attention import create_mask  # noqa: E402

from attnsim import Workload  # noqa: E402
from attnsim.patterns import Neighborhood  # noqa: E402

from .test_gna import gna_case  # noqa: E402

if not _FLEX_SUPPORTED:
    pytest.skip("this torch has no usable Flex Attention for NATTEN", allow_module_level=True)

# Eager (uncompiled) flex_attention warns that it materialises the scores; that is intended here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

FIELDS = ("window", "dilation", "stride", "causal")


def natten_args(wl: Workload, pattern: Neighborhood):
    """NATTEN-normalised ``(grid, kernel_size, stride, dilation, is_causal)``, or None if NATTEN
    rejects the configuration. Uses NATTEN's own argument checks, as ``natten.na*d`` does."""
    grid = wl.grid
    window, dilation, stride, causal = (pattern._per_dim(f, len(grid)) for f in FIELDS)
    try:
        grid = check_input_size_arg(len(grid), list(grid))
        kernel, stride, dilation, causal = check_all_args(
            len(grid), tuple(window), tuple(stride), tuple(dilation), tuple(bool(c) for c in causal))
        check_args_against_input(torch.empty(1, *grid, 1, 1, device="meta"),
                                 kernel_size=kernel, stride=stride, dilation=dilation,
                                 is_causal=causal)
    except ValueError:
        return None
    return grid, kernel, stride, dilation, causal


def natten_accepts(case) -> bool:
    """Whether NATTEN accepts a ``(workload, pattern)`` case at all."""
    return natten_args(*case) is not None


def flex_mask(grid, kernel, stride, dilation, causal) -> np.ndarray:
    """NATTEN's untiled flex mask_mod, evaluated over all row-major flattened (q, kv) pairs."""
    block_mask = flex.get_na_flex_mask("cpu", len(grid), grid, kernel, stride, dilation, causal)
    n = math.prod(grid)
    return create_mask(block_mask.mask_mod, None, None, n, n, device="cpu")[0, 0].numpy()


def flex_tiled_mask(grid, kernel, stride, dilation, causal, q_tile, kv_tile) -> np.ndarray:
    """NATTEN's tiled flex mask_mod, mapped back to row-major flattened (q, kv) pairs.

    NATTEN pads the token grid, splits it into dilation groups (folded into the batch) and
    permutes each group into tiles. Permuting a tensor of token indices the same way tells
    which original token sits at each permuted position; padding must never be attended.
    """
    na_dim, n = len(grid), math.prod(grid)

    def permuted_tokens(tile):
        ids = torch.arange(1, n + 1, dtype=torch.int64).reshape(1, *grid, 1, 1)  # 0 = padding
        perm, _, shape = token_permute_operation(ids, tile_shape=tile, dilation=dilation,
                                                 flip_tiled_dims=False)
        return perm[..., 0, 0] - 1, shape  # (dilation groups, tokens per group)

    q_ids, q_shape = permuted_tokens(q_tile)
    kv_ids, kv_shape = permuted_tokens(kv_tile)
    block_mask = flex.get_na_flex_mask("cpu", na_dim, grid, kernel, stride, dilation, causal,
                                       q_tile_shape=q_tile, kv_tile_shape=kv_tile,
                                       q_shape=q_shape, kv_shape=kv_shape)
    groups = q_ids.shape[0]
    tiled = create_mask(block_mask.mask_mod, groups, None, q_ids.shape[1], kv_ids.shape[1],
                        device="cpu")[:, 0]
    real_q, real_kv = (q_ids >= 0)[:, :, None], (kv_ids >= 0)[:, None, :]
    assert not (tiled & real_q & ~real_kv).any(), "a real query attends to a padding token"
    out = np.zeros((n, n), dtype=bool)
    for g in range(groups):
        qs, ks = q_ids[g], kv_ids[g]
        sub = tiled[g][qs >= 0][:, ks >= 0].numpy()
        out[np.ix_(qs[qs >= 0].numpy(), ks[ks >= 0].numpy())] = sub
    return out


@st.composite
def natten_case(draw):
    """gna_case's recipe (tests.test_gna) within NATTEN's bounds: extents and windows >= 2.

    gna_case draws many windows of 1, which NATTEN rejects, so few of its multi-dimensional
    cases survive the filter; this strategy keeps 2D and 3D well represented. Also draws one
    of NATTEN's supported flex tile-shape pairs for the tiled mask.
    """
    rank = draw(st.integers(1, 3))
    grid = tuple(draw(st.integers(2, {1: 150, 2: 20, 3: 8}[rank])) for _ in range(rank))
    window, dilation, stride, causal = [], [], [], []
    for length in grid:
        d = draw(st.integers(1, length // 2))
        k = draw(st.integers(2, length // d))
        window.append(k)
        dilation.append(d)
        stride.append(draw(st.integers(1, k)))
        causal.append(draw(st.booleans()))
    wl = Workload.on_grid(grid, heads=1, head_dim=16)
    tiles = draw(st.sampled_from(FLEX_FORWARD_TILE_SHAPES[rank]))
    return wl, Neighborhood(tuple(window), tuple(dilation), tuple(stride), tuple(causal)), tiles


@pytest.mark.parametrize("grid,window", [((16,), (1,)), ((1, 8), (1, 4)), ((6, 6), (3, 1))])
def test_natten_rejects_unit_windows_and_extents_that_attnsim_accepts(grid, window):
    """The configurations filtered out below: attnsim has a mask for them, NATTEN refuses them."""
    wl = Workload.on_grid(grid, heads=1, head_dim=16)
    pattern = Neighborhood(window)
    assert pattern.mask(wl).shape == (math.prod(grid),) * 2
    assert natten_args(wl, pattern) is None


@settings(max_examples=100)
@given(gna_case().filter(natten_accepts))
def test_flex_mask_matches_on_gna_cases(case):
    """NATTEN's untiled flex mask equals attnsim's on test_gna's own cases that NATTEN accepts."""
    wl, pattern = case
    assert np.array_equal(pattern.mask(wl), flex_mask(*natten_args(wl, pattern)))


@settings(max_examples=300)
@given(natten_case())
def test_flex_masks_match_on_natten_cases(case):
    """Both of NATTEN's flex masks (untiled and tiled) equal attnsim's, 1-3D."""
    wl, pattern, (q_tile, kv_tile) = case
    args = natten_args(wl, pattern)
    assert args is not None, "natten_case drew a configuration NATTEN rejects"
    expected = pattern.mask(wl)
    assert np.array_equal(expected, flex_mask(*args))
    assert np.array_equal(expected, flex_tiled_mask(*args, q_tile, kv_tile))


def masked_attention(q, k, v, mask: np.ndarray):
    """Plain softmax attention over flattened tokens, ``q/k/v``: (batch, *grid, heads, dim)."""
    batch, *grid, heads, dim = q.shape
    n = math.prod(grid)
    q_, k_, v_ = (t.reshape(batch, n, heads, dim).transpose(1, 2) for t in (q, k, v))
    scores = (q_ @ k_.transpose(-1, -2)) * dim ** -0.5
    scores = scores.masked_fill(~torch.from_numpy(mask), float("-inf"))
    return (scores.softmax(-1) @ v_).transpose(1, 2).reshape(q.shape)


FORWARD_CASES = [
    # grid, window, dilation, stride, causal, (q_tile_shape, kv_tile_shape) or None
    ((37,), (7,), (2,), (3,), (False,), None),
    ((37,), (6,), (3,), (4,), (True,), ((64,), (64,))),
    ((9, 11), (3, 4), (2, 1), (2, 3), (True, False), None),
    ((9, 11), (4, 5), (1, 2), (4, 2), (False, True), ((4, 16), (8, 8))),
    ((6, 7, 5), (3, 2, 4), (2, 3, 1), (1, 2, 3), (False, True, False), None),
    ((6, 7, 5), (2, 3, 2), (3, 2, 2), (2, 3, 1), (True, False, True), ((2, 4, 8), (4, 4, 4))),
    ((8, 8, 8), (3, 3, 3), (1, 1, 1), (1, 1, 1), (False, False, False), ((4, 4, 4), (4, 4, 4))),
]


@pytest.mark.parametrize("grid,window,dilation,stride,causal,tiles", FORWARD_CASES)
def test_flex_forward_equals_softmax_under_attnsim_mask(grid, window, dilation, stride, causal,
                                                        tiles):
    """NATTEN's flex forward (CPU, fp32) equals softmax attention restricted to attnsim's mask."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, *grid, 3, 16, generator=gen) for _ in range(3))
    na = {1: natten.na1d, 2: natten.na2d, 3: natten.na3d}[len(grid)]
    tile_kwargs = {} if tiles is None else dict(q_tile_shape=tiles[0], kv_tile_shape=tiles[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = na(q, k, v, kernel_size=window, stride=stride, dilation=dilation, is_causal=causal,
                 backend="flex-fna", **tile_kwargs)
    mask = Neighborhood(window, dilation, stride, causal).mask(
        Workload.on_grid(grid, heads=1, head_dim=16))
    torch.testing.assert_close(out, masked_attention(q, k, v, mask), rtol=1e-5, atol=1e-5)
    # Control: the comparison is sensitive to the mask (dropping one allowed key changes it).
    some_query = int(np.flatnonzero(mask.sum(1) > 1)[0])
    perturbed = mask.copy()
    perturbed[some_query, np.flatnonzero(mask[some_query])[0]] = False
    assert not torch.allclose(out, masked_attention(q, k, v, perturbed), rtol=1e-5, atol=1e-5)
