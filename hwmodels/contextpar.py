"""Context parallelism: one attention call split across G devices, priced stage by stage.

Every scheme is a Ulysses degree U times a ring degree R = G (USP: Fang & Zhao 2024, arXiv 2405.07719;
feifeibear/long-context-attention). ring (U = 1; Liu et al. 2023, arXiv 2310.01889; zhuzilin/ring-flash-attention):
each rank holds N/R tokens and at step s attends the KV block of rank (r - s) mod R while passing its block on;
causal layouts contiguous, striped (Brandon et al. 2023, arXiv 2311.09431) and zigzag. ulysses (R = 1;
DeepSpeed-Ulysses, arXiv 2309.14509): all-to-alls turn sequence shards into head shards, each device attends the
full sequence on H/U heads. hybrid: Ulysses among U consecutive devices (in a node by default), rings across groups.

A device's attention is priced by attnsim's own model (attnsim.predict_api.predict) kernel by kernel, so tile
effects of small shards stay; messages cost latency + bytes / bandwidth (attnsim.hwmodels.interconnect).
"""
from __future__ import annotations

from dataclasses import dataclass

from attnsim.errors import AttnsimError
from attnsim.patterns import Causal, Dense, Pattern
from attnsim.predict_api import predict
from attnsim.workload import Workload

from .interconnect import Interconnect
from .profile import Profile

SCHEMES = ("ring", "ulysses", "hybrid")
LAYOUTS = ("contiguous", "striped", "zigzag")
PASSES = {"fwd": ("fwd",), "bwd": ("bwd",), "fwd+bwd": ("fwd", "bwd")}
# The backward ring accumulates dK, dV in fp32 and passes them on in fp32
# (ring_flash_attn.py: dk = block_dk_buffer.to(torch.float32)).
GRAD_BYTES = 4
RING_PATTERNS = ("dense", "causal")


class ParallelError(AttnsimError):
    """A cluster or context-parallel split that cannot run (names the flag and the fix)."""


@dataclass(frozen=True)
class Cluster:
    """``gpus`` devices of profile ``hw``, ``gpus_per_node`` per node, numbered node by node."""

    hw: Profile
    gpus: int
    gpus_per_node: int
    intra: Interconnect
    inter: Interconnect | None = None

    def __post_init__(self) -> None:
        g, p = self.gpus, self.gpus_per_node
        for flag, value in (("--gpus", g), ("--gpus-per-node", p)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ParallelError(f"{flag} must be a positive integer, got {value!r}")
        if g > p and g % p:
            raise ParallelError(f"--gpus {g} is not a whole number of nodes of --gpus-per-node {p}: "
                                f"use a multiple of {p}")
        if g > p and self.inter is None:
            raise ParallelError(f"--inter: {g} GPUs span {g // p} nodes of {p}; name the inter-node link "
                                "(e.g. --inter IB-NDR)")

    def node(self, device: int) -> int:
        return device // self.gpus_per_node

    def link(self, a: int, b: int) -> Interconnect:
        return self.intra if self.node(a) == self.node(b) else self.inter


@dataclass(frozen=True)
class Split:
    """How the G devices share the work: Ulysses degree x ring degree, and the ring's layout."""

    scheme: str
    layout: str
    ulysses: int
    ring: int
    kv_heads: int  # KV heads the all-to-all moves: the workload's, or U when replicated


@dataclass(frozen=True)
class Shard:
    """One kernel a ring rank runs in one step: ``pattern`` on ``q_len`` queries x ``kv_len`` keys."""

    pattern: Pattern
    q_len: int
    kv_len: int


def ring_shards(layout: str, causal: bool, rank: int, src: int, n: int) -> tuple[Shard, ...]:
    """The kernels ``rank`` runs on the KV block of rank ``src`` (``n`` tokens per rank), as
    zhuzilin/ring-flash-attention runs them (ring_flash_attn.py, stripe_flash_attn.py,
    zigzag_ring_flash_attn.py). Contiguous: rank r holds tokens [rn, (r+1)n). Striped: token t
    lives on rank t mod R. Zigzag: 2R chunks of n/2, rank r holds chunks r and 2R-1-r."""
    if not causal:
        return (Shard(Dense(), n, n),)
    if src == rank:
        return (Shard(Causal(), n, n),)
    if layout == "contiguous":  # blocks from later ranks are skipped
        return (Shard(Dense(), n, n),) if src < rank else ()
    if layout == "striped":  # a later rank's token j sits after our token j: drop the diagonal
        return (Shard(Causal(), n, n),) if src < rank else ((Shard(Causal(), n - 1, n - 1),) if n > 1 else ())
    half = n // 2  # zigzag: an earlier rank's first chunk precedes both of ours; its second follows both
    return (Shard(Dense(), n, half),) if src < rank else (Shard(Dense(), half, n),)


def kv_message_bytes(wl: Workload, kv_heads: int, tokens: int, element_bytes: int) -> int:
    """K and V of ``tokens`` tokens on ``kv_heads`` heads: one ring message."""
    return wl.batch * kv_heads * tokens * (wl.qk_head_dim + wl.v_head_dim) * element_bytes


def a2a_bytes_per_peer(wl: Workload, heads: int, ulysses: int, dim: int, element_bytes: int, gpus: int) -> int:
    """What one device sends each other member of its Ulysses group: ``heads / U`` of the heads
    of its ``N / G`` local tokens."""
    return wl.batch * (wl.q_len // gpus) * (heads // ulysses) * dim * element_bytes


def _is_mask(pattern: Pattern) -> bool:
    """A per-(query, key) mask, the same in every head: splitting heads changes nothing in it."""
    cls = type(pattern)
    return (pattern.tileable and cls.op_graph is Pattern.op_graph
            and cls.effective_workload is Pattern.effective_workload)


def _in_node_groups(cluster: Cluster, u: int) -> bool:
    return all(cluster.node(k) == cluster.node(k + u - 1) for k in range(0, cluster.gpus, u))


def _heads_fit(wl: Workload, u: int) -> bool:
    return wl.q_heads % u == 0 and (wl.kv_heads % u == 0 or u % wl.kv_heads == 0)


def _ulysses_degree(wl: Workload, cluster: Cluster, scheme: str, requested: int | None) -> int:
    g = cluster.gpus
    if scheme != "hybrid":
        if requested is not None:
            raise ParallelError("--ulysses-degree applies to --scheme hybrid (ring uses 1, ulysses all --gpus)")
        return 1 if scheme == "ring" else g
    if requested is None:  # the largest in-node degree the heads allow (USP: Ulysses inside a node)
        return max(u for u in range(1, g + 1) if g % u == 0 and _in_node_groups(cluster, u) and _heads_fit(wl, u))
    if isinstance(requested, bool) or not isinstance(requested, int) or requested <= 0 or g % requested:
        raise ParallelError(f"--ulysses-degree {requested!r} must divide --gpus {g}")
    return requested


def plan(wl: Workload, pattern: Pattern, cluster: Cluster, scheme: str, layout: str = "zigzag",
         ulysses_degree: int | None = None) -> Split:
    """Validate the request and split the devices; errors name the flag and the fix."""
    if scheme not in SCHEMES:
        raise ParallelError(f"--scheme {scheme!r}: use one of {', '.join(SCHEMES)} (or all)")
    if layout not in LAYOUTS:
        raise ParallelError(f"--layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if wl.phase not in PASSES:
        raise ParallelError(f"--phase {wl.phase}: context parallelism here splits a prefill or training "
                            "sequence; use --phase fwd, bwd or fwd+bwd (decode is not modelled)")
    if wl.q_len != wl.kv_len:
        raise ParallelError("--kv-seq: context parallelism splits one self-attention sequence; drop --kv-seq")
    u = _ulysses_degree(wl, cluster, scheme, ulysses_degree)
    r, g, flag = cluster.gpus // u, cluster.gpus, "--gpus" if scheme == "ulysses" else "--ulysses-degree"
    if wl.q_heads % u:
        raise ParallelError(f"--heads {wl.q_heads} is not divisible by the Ulysses degree {u} ({flag}): the "
                            "all-to-all gives each device whole heads (DeepSpeed-Ulysses)")
    if wl.kv_heads % u and u % wl.kv_heads:
        raise ParallelError(f"--kv-heads {wl.kv_heads} with Ulysses degree {u} ({flag}): KV heads are split "
                            "when U divides them and replicated when they divide U; neither holds")
    if wl.q_len % g:
        raise ParallelError(f"--seq {wl.q_len} is not a multiple of --gpus {g}: each device holds N/G tokens "
                            "(pad the sequence)")
    if r > 1 and layout == "zigzag" and wl.q_len % (2 * r):
        raise ParallelError(f"--seq {wl.q_len} is not a multiple of 2 x {r} ring ranks: --layout zigzag cuts "
                            "the sequence into two chunks per rank (pad it or use --layout striped)")
    if r > 1 and pattern.name not in RING_PATTERNS:
        raise ParallelError(f"--pattern {pattern.name}: ring and hybrid price dense and causal shards only; "
                            "use --scheme ulysses (any mask pattern) or --pattern dense/causal")
    if g > 1 and r == 1 and not _is_mask(pattern):
        raise ParallelError(f"--pattern {pattern.name}: Ulysses splits heads, which needs a mask that is the "
                            "same in every head (dense, causal, sliding, neighborhood, ...); "
                            f"{pattern.name} is data-dependent, multi-op or changes the heads")
    kv_heads = wl.kv_heads if wl.kv_heads % u == 0 else u
    return Split(scheme, layout, u, r, kv_heads)


@dataclass(frozen=True)
class Stage:
    """A stretch of time every device spends alike: attention compute (the slowest device's)
    overlapped with communication (the slowest message or collective)."""

    name: str
    compute_s: float
    comm_s: float

    @property
    def time_s(self) -> float:
        return max(self.compute_s, self.comm_s)


@dataclass(frozen=True)
class CPResult:
    split: Split
    gpus: int
    phase: str
    links: dict[str, str | None]
    stages: tuple[Stage, ...]
    rank_compute_s: tuple[float, ...]     # per ring rank, every stage summed
    rank_pairs_per_head: tuple[int, ...]  # per ring rank and head: the (q, k) pairs it attends
    message_bytes: dict[str, int]         # bytes one device sends per message, by message
    single_device_s: float
    assumptions: tuple[str, ...]

    @property
    def compute_s(self) -> float:
        return sum(s.compute_s for s in self.stages)

    @property
    def comm_s(self) -> float:
        return sum(s.comm_s for s in self.stages)

    @property
    def total_s(self) -> float:
        return sum(s.time_s for s in self.stages)

    @property
    def exposed_comm_s(self) -> float:
        """Communication not hidden under compute."""
        return self.total_s - self.compute_s

    @property
    def efficiency(self) -> float:
        """Single-device time / (G x parallel time): 1 is perfect scaling."""
        return self.single_device_s / (self.gpus * self.total_s)

    @property
    def imbalance(self) -> float:
        """The busiest ring rank's compute over the mean (1: balanced)."""
        ranks = self.rank_compute_s
        return max(ranks) * len(ranks) / sum(ranks) if sum(ranks) else 1.0

    @property
    def bound_by(self) -> str:
        return "communication" if self.comm_s > self.compute_s else "compute"

    def to_dict(self) -> dict:
        s = self.split
        return {
            "scheme": s.scheme, "layout": s.layout if s.ring > 1 else None, "gpus": self.gpus,
            "ulysses_degree": s.ulysses, "ring_degree": s.ring, "phase": self.phase, "links": self.links,
            "compute_s": self.compute_s, "comm_s": self.comm_s, "exposed_comm_s": self.exposed_comm_s,
            "total_s": self.total_s, "single_device_s": self.single_device_s, "efficiency": self.efficiency,
            "imbalance": self.imbalance, "bound_by": self.bound_by,
            "rank_compute_s": list(self.rank_compute_s), "rank_pairs_per_head": list(self.rank_pairs_per_head),
            "message_bytes": self.message_bytes,
            "stages": [{"name": st.name, "compute_s": st.compute_s, "comm_s": st.comm_s, "time_s": st.time_s}
                       for st in self.stages],
            "assumptions": list(self.assumptions),
        }


def _kernel_pricer(hw: Profile, tiling):
    """Predicted seconds and pairs per head of one kernel, memoised (a ring repeats few shapes)."""
    memo: dict = {}

    def price(wl: Workload, pattern: Pattern) -> tuple[float, int]:
        key = (wl, pattern.describe())
        if key not in memo:
            p = predict(wl, pattern, hw, tiling).pattern
            memo[key] = (p.predicted_s, p.counts.pairs_per_head)
        return memo[key]

    return price


def _hop_s(cluster: Cluster, split: Split, nbytes: int) -> float:
    """A ring message over the slowest hop of every ring (ring i: devices i, i+U, i+2U, ...)."""
    u, g = split.ulysses, cluster.gpus
    return max(cluster.link(d, (d + u) % g).transfer_s(nbytes) for d in range(g))


def _a2a_s(cluster: Cluster, split: Split, per_peer: int) -> float:
    """An all-to-all: each device sends ``per_peer`` bytes to every other member of its group at
    once (NCCL grouped send/recv), on-node peers over the intra link, the rest over the inter link."""
    u, worst = split.ulysses, 0.0
    for d in range(cluster.gpus):
        peers = [e for e in range(d // u * u, d // u * u + u) if e != d]
        near = sum(cluster.node(e) == cluster.node(d) for e in peers)
        far = len(peers) - near
        worst = max(worst, cluster.intra.transfer_s(near * per_peer),
                    cluster.inter.transfer_s(far * per_peer) if far else 0.0)
    return worst


def _ring_pass(wl, pattern, cluster, split, phase, price) -> tuple[list[Stage], list[float], list[int], dict]:
    """The ring's R steps of one pass (R = 1: the one full-sequence kernel of Ulysses)."""
    r_deg, heads, kvh = split.ring, wl.q_heads // split.ulysses, split.kv_heads // split.ulysses
    if r_deg == 1:
        t, pairs = price(wl.with_(q_heads=heads, kv_heads=kvh, phase=phase), pattern)
        return [Stage(f"attention ({phase})", t, 0.0)], [t], [pairs], {}
    n = wl.q_len // r_deg
    kv = kv_message_bytes(wl, kvh, n, wl.element_bytes)
    grad = kv_message_bytes(wl, kvh, n, GRAD_BYTES) if phase == "bwd" else 0
    stages, ranks, pairs = [], [0.0] * r_deg, [0] * r_deg
    for step in range(r_deg):
        slowest = 0.0
        for rank in range(r_deg):
            t = 0.0
            for sh in ring_shards(split.layout, pattern.name == "causal", rank, (rank - step) % r_deg, n):
                kernel = wl.with_(q_len=sh.q_len, kv_len=sh.kv_len, q_heads=heads, kv_heads=kvh, phase=phase, grid=None)
                seconds, kept = price(kernel, sh.pattern)
                t, pairs[rank] = t + seconds, pairs[rank] + kept
            ranks[rank] += t
            slowest = max(slowest, t)
        # K, V for the next step; in the backward dK, dV of the previous step share the link.
        sent = kv * (step < r_deg - 1) + grad * (step > 0)
        stages.append(Stage(f"ring step {step} ({phase})", slowest, _hop_s(cluster, split, sent)))
    messages = {"ring K,V": kv}
    if grad:
        stages.append(Stage("ring dK,dV home (bwd)", 0.0, _hop_s(cluster, split, grad)))
        messages["ring dK,dV (fp32)"] = grad
    return stages, ranks, pairs, messages


def _a2a_stages(wl, cluster, split, when: str, phase: str) -> tuple[list[Stage], dict]:
    """Ulysses' all-to-alls before ('in') or after ('out') attention in one pass."""
    if split.ulysses == 1:
        return [], {}
    e, eo, g = wl.element_bytes, wl.output_bytes, cluster.gpus
    q = ("q", wl.q_heads, wl.qk_head_dim, e)
    k, v = ("k", split.kv_heads, wl.qk_head_dim, e), ("v", split.kv_heads, wl.v_head_dim, e)
    o = ("o", wl.q_heads, wl.v_head_dim, eo)
    tensors = {("fwd", "in"): (q, k, v), ("fwd", "out"): (o,),
               ("bwd", "in"): (("do",) + o[1:],), ("bwd", "out"): tuple(("d" + t[0],) + t[1:] for t in (q, k, v))}
    stages, messages = [], {}
    for name, heads, dim, nbytes in tensors[(phase, when)]:
        per_peer = a2a_bytes_per_peer(wl, heads, split.ulysses, dim, nbytes, g)
        stages.append(Stage(f"all-to-all {name} ({phase})", 0.0, _a2a_s(cluster, split, per_peer)))
        messages[f"all-to-all {name}"] = per_peer * (split.ulysses - 1)
    return stages, messages


def price_context_parallel(wl: Workload, pattern: Pattern, cluster: Cluster, scheme: str,
                           layout: str = "zigzag", ulysses_degree: int | None = None,
                           tiling=None) -> CPResult:
    """Compute, communication, exposed communication and total time of ``pattern`` on ``wl``
    split over ``cluster`` by ``scheme``; ``tiling`` (a TilingRequest) applies to every kernel."""
    pattern.check(wl)
    split = plan(wl, pattern, cluster, scheme, layout, ulysses_degree)
    price = _kernel_pricer(cluster.hw, tiling)
    stages, messages, ranks, pairs = [], {}, [0.0] * split.ring, None
    for phase in PASSES[wl.phase]:
        before, m_in = _a2a_stages(wl, cluster, split, "in", phase)
        ring, rank_s, rank_pairs, m_ring = _ring_pass(wl, pattern, cluster, split, phase, price)
        after, m_out = _a2a_stages(wl, cluster, split, "out", phase)
        stages += before + ring + after
        messages.update({**m_in, **m_ring, **m_out})
        ranks = [a + b for a, b in zip(ranks, rank_s)]
        pairs = pairs or rank_pairs
    single = sum(price(wl.with_(phase=p), pattern)[0] for p in PASSES[wl.phase])
    links = {"intra": cluster.intra.name, "inter": cluster.inter.name if cluster.gpus > cluster.gpus_per_node else None}
    return CPResult(split, cluster.gpus, wl.phase, links, tuple(stages), tuple(ranks), tuple(pairs),
                    messages, single, tuple(_assumptions(wl, cluster, split, pattern)))


def _assumptions(wl: Workload, cluster: Cluster, split: Split, pattern: Pattern) -> list[str]:
    inter = f", {cluster.inter.name} across nodes" if cluster.gpus > cluster.gpus_per_node else ""
    notes = [
        f"attention per device: attnsim's model of each kernel the device runs on {cluster.hw.name}; "
        "single-device time: the same attention on one device, priced the same way (fwd and bwd kernels "
        "apart); efficiency = single / (G x total)",
        f"a message costs latency + bytes / bandwidth on the slowest link it crosses ({cluster.intra.name} "
        f"inside a node{inter}): per-direction peak times the profile's achievable fraction, the peak where "
        "none is sourced",
        "communication kernels do not slow attention kernels (NCCL's SMs and HBM traffic ignored)",
    ]
    if split.ring > 1:
        notes.append("ring: at step s rank r attends the KV block of rank (r - s) mod R while sending the one it "
                     "holds on (zhuzilin/ring-flash-attention); lock-step: a step lasts max(slowest rank's "
                     "kernels, slowest hop's K,V message)")
        notes.append({"contiguous": "contiguous layout, causal: rank r computes its diagonal block and r full "
                                    "blocks and skips later ones (the last rank does R blocks: imbalanced)",
                      "striped": "striped layout (arXiv 2311.09431): token t on rank t mod R; a block from a "
                                 "lower or the same rank is causal with its diagonal, from a higher rank without "
                                 "it (run as causal on q[1:], k[:-1])",
                      "zigzag": "zigzag layout: rank r holds chunks r and 2R-1-r of 2R; an earlier rank's "
                                "block: all local queries x its first chunk; a later rank's: our second chunk x "
                                "both its chunks"}[split.layout] if pattern.name == "causal" else
                     "non-causal ring: every step is one full block; the layout changes nothing")
        if "bwd" in PASSES[wl.phase]:
            notes.append("backward ring: K, V go round again and dK, dV (fp32) follow one step behind on the "
                         "same link; the last dK, dV hop home is exposed")
    if split.ulysses > 1:
        notes.append("Ulysses: one all-to-all per tensor (Q, K, V before attention and O after; dO before, "
                     "dQ, dK, dV after the backward), not overlapped with attention (DeepSpeed "
                     "DistributedAttention, yunchang UlyssesAttention); each sends 1/U of the local tensor to "
                     "every group member at once")
        if split.kv_heads != wl.kv_heads:
            notes.append(f"{wl.kv_heads} KV heads < Ulysses degree {split.ulysses}: replicated to "
                         f"{split.kv_heads} before the all-to-all (LongCA-bench run_benchmark.py), one per device")
    if split.ulysses > 1 and split.ring > 1:
        notes.append(f"hybrid (USP, arXiv 2405.07719): Ulysses among {split.ulysses} consecutive devices, rings "
                     f"of {split.ring} across the groups; ring ranks hold N/R tokens of H/U heads")
    if wl.grid is not None and split.ring > 1:
        notes.append("the ring splits the row-major flattened token sequence")
    return notes
