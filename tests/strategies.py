"""Hypothesis strategies for small random workloads and patterns (brute force stays cheap)."""
from hypothesis import strategies as st

from attnsim import Workload
from attnsim.patterns import Causal, Dense, Neighborhood, Sliding
from attnsim.tiles import Tiling

MAX_1D = 48
MAX_DIM = 9


@st.composite
def seq_workload(draw, cross: bool = True) -> Workload:
    q_len = draw(st.integers(1, MAX_1D))
    kv_len = draw(st.integers(1, MAX_1D)) if cross and draw(st.booleans()) else q_len
    kv_heads = draw(st.sampled_from([1, 2]))
    return Workload(batch=draw(st.integers(1, 3)), q_heads=kv_heads * draw(st.integers(1, 3)),
                    kv_heads=kv_heads, q_len=q_len, kv_len=kv_len,
                    qk_head_dim=draw(st.sampled_from([8, 16, 64])),
                    v_head_dim=draw(st.sampled_from([8, 32, 64])),
                    dtype=draw(st.sampled_from(["fp32", "bf16", "fp8"])),
                    phase=draw(st.sampled_from(["fwd", "bwd", "fwd+bwd"])))


@st.composite
def grid_workload(draw) -> Workload:
    rank = draw(st.integers(1, 3))
    grid = tuple(draw(st.integers(1, MAX_DIM)) for _ in range(rank))
    return Workload.on_grid(grid, batch=draw(st.integers(1, 2)), heads=draw(st.integers(1, 4)),
                            head_dim=draw(st.sampled_from([16, 64])))


@st.composite
def sliding_case(draw):
    wl = draw(seq_workload())
    return wl, Sliding(window=draw(st.integers(1, wl.kv_len)), causal=draw(st.booleans()))


@st.composite
def neighborhood_case(draw):
    wl = draw(grid_workload())
    windows, dilations = [], []
    for length in wl.grid:
        dil = draw(st.integers(1, length))
        windows.append(draw(st.integers(1, length // dil)))
        dilations.append(dil)
    return wl, Neighborhood(window=tuple(windows), dilation=tuple(dilations))


@st.composite
def dense_case(draw):
    wl = draw(st.one_of(seq_workload(), grid_workload()))
    return wl, Dense()


@st.composite
def causal_case(draw):
    return draw(seq_workload()), Causal()


@st.composite
def unpadded_gna(draw, ranks=(1, 3), tiles=(1, 2, 3, 4), max_m=4, **workload):
    """GNA on a grid that tiles exactly (L = tile * dilation * m): no padding anywhere."""
    grid, tile_shape, window, dilation, stride, causal = [], [], [], [], [], []
    for _ in range(draw(st.integers(*ranks))):
        d, t, m = draw(st.integers(1, 2)), draw(st.sampled_from(tiles)), draw(st.integers(1, max_m))
        grid.append(d * t * m)
        tile_shape.append(t)
        k = draw(st.integers(1, t * m))
        window.append(k)
        dilation.append(d)
        stride.append(draw(st.integers(1, k)))
        causal.append(draw(st.booleans()))
    wl = Workload.on_grid(tuple(grid), **workload)
    pattern = Neighborhood(tuple(window), tuple(dilation), tuple(stride), tuple(causal))
    policy = draw(st.sampled_from(["block-sparse", "range"]))
    return wl, pattern, Tiling(tuple(tile_shape), tuple(tile_shape), policy)
