"""Whole models: every attention layer of a config (attnsim.modelcfg) priced for one setting,
identical layers once, with the time of each layer kind, the model total and, with a pattern
substituted, the speedup per kind and in total (``attnsim model``, docs/models.md).

Each layer is one call of :func:`attnsim.predict_api.predict`. A substituted layer is priced
against its original pattern as the baseline, so both sides share the tiling and the pricing
level, exactly as ``attnsim predict --pattern SUB`` with the original as ``--baseline`` would."""
from __future__ import annotations

import shlex
from dataclasses import dataclass

from .errors import AttnsimError
from .hwmodels import Profile, load_profile
from .modelcfg import LayerSpec, ModelSpec
from .patterns import MLA, REGISTRY, Causal, Dense, Pattern, Sliding
from .predict_api import Prediction, predict
from .workload import Workload

SUBSTITUTE_LAYERS = ("full", "all")
ATTENTION_ONLY = "attention only: QKV/O projections, MLPs, norms and embeddings are not priced"
MLA_SCOPE = ("MLA layers: the K/V up-projections from the latent are priced (the mla pattern); the query's "
             "q_lora_rank down/up projections are not, like every QKV projection")
SLIDING_MEANING = ("sliding layers: HF sliding_window W = keys per query, its own included (transformers "
                   "masking_utils: q - W < k <= q), i.e. --pattern sliding --window W --causal; a window "
                   "covering the whole KV length is plain causal attention")


@dataclass(frozen=True)
class Setting:
    """What every layer runs: ``context`` is the sequence (decode: KV-cache) length of a language
    model; ``tokens`` replaces a DiT's token grid."""

    batch: int = 1
    phase: str = "fwd"
    dtype: str = "bf16"
    context: int | None = None
    decode_tokens: int = 1
    tokens: tuple[int, ...] | None = None


@dataclass(frozen=True)
class KindPrice:
    """Identical layers: one prediction, counted ``len(layers)`` times."""

    layer: LayerSpec
    layers: tuple[int, ...]
    workload: Workload
    pattern: Pattern
    prediction: Prediction
    substitute: Pattern | None = None   # when set, prediction.dense is the original pattern

    @property
    def time_each_s(self) -> float:
        return (self.prediction.dense if self.substitute else self.prediction.pattern).predicted_s

    @property
    def substituted_each_s(self) -> float:
        return self.prediction.pattern.predicted_s if self.substitute else self.time_each_s

    @property
    def speedup(self) -> float:
        return self.time_each_s / self.substituted_each_s

    @property
    def flop_bound(self) -> float:
        return self.prediction.speedup_vs_dense["flop"] if self.substitute else 1.0


@dataclass(frozen=True)
class ModelPrice:
    spec: ModelSpec
    hw: Profile
    setting: Setting
    kinds: tuple[KindPrice, ...]
    predictions: int                    # distinct predict() calls
    substitute: str | None
    notes: tuple[str, ...]

    @property
    def total_s(self) -> float:
        return sum(len(k.layers) * k.time_each_s for k in self.kinds)

    @property
    def substituted_total_s(self) -> float:
        return sum(len(k.layers) * k.substituted_each_s for k in self.kinds)

    @property
    def speedup(self) -> float:
        return self.total_s / self.substituted_total_s


def parse_pattern_text(text: str, where: str) -> Pattern:
    """"sliding --window 4096 --causal" -> a Pattern, through the CLI's own pattern flags."""
    import click

    from .cli.pattern_flags import PATTERN_OPTIONS  # the CLI package imports this module: call time
    from .spec import build_pattern

    words = shlex.split(text)
    if not words or words[0] not in REGISTRY:
        got = repr(words[0]) if words else "nothing"
        raise AttnsimError(f"{where} {text!r}: starts with {got}, not a pattern name "
                           "(e.g. \"sliding --window 4096 --causal\"; attnsim predict --help lists them)")

    def probe() -> None: ...
    for option in PATTERN_OPTIONS:
        probe = option(probe)
    command = click.Command(where, params=probe.__click_params__, add_help_option=False)
    try:
        flags = command.make_context(where, words[1:]).params
    except click.ClickException as err:
        raise AttnsimError(f"{where} {text!r}: {err.format_message()}") from None
    return build_pattern({**flags, "pattern": words[0]})


def layer_workload(spec: ModelSpec, layer: LayerSpec, s: Setting) -> Workload:
    common = dict(batch=s.batch, heads=layer.heads, kv_heads=layer.kv_heads, head_dim=layer.head_dim,
                  v_head_dim=layer.v_head_dim, dtype=s.dtype, phase=s.phase)
    if spec.family == "dit":
        if s.context is not None:
            raise AttnsimError(f"--context does not apply to {spec.name}, a DiT on a token grid: "
                               "change the grid with --tokens (e.g. 33x45x80)")
        if s.phase == "decode":
            raise AttnsimError(f"--phase decode: {spec.name} is a DiT (no KV cache): use fwd, bwd or fwd+bwd")
        return Workload.on_grid(s.tokens or spec.grid, **common)
    if s.tokens is not None:
        raise AttnsimError(f"--tokens does not apply to {spec.name}, a language model: give --context N")
    if s.context is None:
        raise AttnsimError(f"{spec.name} is a language model: give --context N (the sequence length; "
                           "in decode, the KV-cache length)")
    if s.phase == "decode" and s.decode_tokens > s.context:
        raise AttnsimError(f"--decode-tokens {s.decode_tokens} exceeds --context {s.context} (the KV cache "
                           "holds the new tokens too)")
    return Workload.sequence(s.context, decode_tokens=s.decode_tokens, **common)


def layer_pattern(layer: LayerSpec, wl: Workload) -> Pattern:
    if layer.pattern is not None:
        return parse_pattern_text(layer.pattern, "overrides pattern")
    if layer.mla is not None:
        return MLA(kv_lora_rank=layer.mla[0], rope_dim=layer.mla[1], causal=layer.causal)
    if layer.window is not None and layer.window < wl.kv_len:
        return Sliding(window=layer.window, causal=True)
    return Causal() if layer.causal else Dense()


def group_layers(spec: ModelSpec) -> dict[LayerSpec, list[int]]:
    groups: dict[LayerSpec, list[int]] = {}
    for i, layer in enumerate(spec.layers):
        groups.setdefault(layer, []).append(i)
    return groups


def price_model(spec: ModelSpec, hw: Profile | str, setting: Setting, substitute: str | None = None,
                substitute_layers: str = "full") -> ModelPrice:
    """Every layer kind priced once; a prediction is shared by kinds with the same workload and
    pattern (e.g. a sliding window that covers the whole context is causal attention)."""
    hw = load_profile(hw) if isinstance(hw, str) else hw
    if substitute_layers not in SUBSTITUTE_LAYERS:
        raise AttnsimError(f"--substitute-layers {substitute_layers!r}: use one of {', '.join(SUBSTITUTE_LAYERS)}")
    sub = parse_pattern_text(substitute, "--substitute") if substitute else None
    cache: dict[tuple, Prediction] = {}
    kinds = []
    for layer, indices in group_layers(spec).items():
        wl = layer_workload(spec, layer, setting)
        original = layer_pattern(layer, wl)
        chosen = sub if sub is not None and (substitute_layers == "all" or layer.attention == "full") else None
        key = (wl, original, chosen)
        if key not in cache:
            cache[key] = _predict(wl, original, chosen, hw, layer, indices)
        kinds.append(KindPrice(layer, tuple(indices), wl, original, cache[key], chosen))
    return ModelPrice(spec, hw, setting, tuple(kinds), len(cache), substitute,
                      _notes(spec, setting, kinds, substitute_layers if sub is not None else None))


def _predict(wl: Workload, original: Pattern, chosen: Pattern | None, hw: Profile, layer: LayerSpec,
             indices: list[int]) -> Prediction:
    try:
        return predict(wl, original, hw) if chosen is None else predict(wl, chosen, hw, baseline=original)
    except AttnsimError as err:  # say which layers the pattern did not fit
        what = "--substitute on layers" if chosen is not None else "layers"
        raise type(err)(f"{what} {index_ranges(indices)} ({layer.label}): {err}") from None


def _notes(spec: ModelSpec, s: Setting, kinds: list[KindPrice], substitute_layers: str | None) -> tuple[str, ...]:
    notes = [ATTENTION_ONLY, *spec.notes]
    if any(k.layer.mla is not None for k in kinds):
        notes.append(MLA_SCOPE)
    if any(k.layer.attention == "sliding" for k in kinds):
        notes.append(SLIDING_MEANING)
    if spec.max_positions is not None and s.context is not None and s.context > spec.max_positions:
        notes.append(f"--context {s.context} exceeds the config's max_position_embeddings {spec.max_positions}")
    if substitute_layers is not None and all(k.substitute is None for k in kinds):
        notes.append(f"--substitute-layers {substitute_layers} matched no layer (none is full attention): "
                     "nothing was substituted; --substitute-layers all replaces every layer")
    if any(k.substitute is not None for k in kinds):
        notes.append("a substituted layer is priced against its original pattern as the baseline (same tiling "
                     "and pricing level: attnsim predict with the original as --baseline)")
    if any(k.substitute is not None and k.prediction.pattern.counts.kernels is not None for k in kinds):
        notes.append("the substitute runs several kernels (roofline + one launch each, no tile model), so the "
                     "layers it replaces are priced that way too: their time differs from a run without "
                     "--substitute")
    return tuple(notes)


def index_ranges(indices) -> str:
    """[0, 2, 4, 6, 9] -> "0-6/2, 9": runs of equal steps as first-last/step."""
    idx, parts, i = sorted(indices), [], 0
    while i < len(idx):
        j = i
        step = idx[i + 1] - idx[i] if i + 1 < len(idx) else 1
        while j + 1 < len(idx) and idx[j + 1] - idx[j] == step:
            j += 1
        if j - i >= 2 or (j > i and step == 1):
            parts.append(f"{idx[i]}-{idx[j]}" + (f"/{step}" if step != 1 else ""))
        else:
            parts.append(str(idx[i]))
            j = i
        i = j + 1
    return ", ".join(parts)


def to_dict(m: ModelPrice) -> dict:
    s = m.setting
    out = {
        "model": m.spec.name, "config": m.spec.source, "family": m.spec.family,
        "hw": {"name": m.hw.name, "kind": m.hw.kind},
        "setting": {"batch": s.batch, "phase": s.phase, "dtype": s.dtype, "decode_tokens": s.decode_tokens,
                    "context": s.context, "tokens": list(s.tokens or m.spec.grid or []) or None},
        "layers": len(m.spec.layers), "predictions": m.predictions,
        "kinds": [_kind_dict(k) for k in m.kinds],
        "total_s": m.total_s,
        "assumptions": list(m.notes),
    }
    if m.substitute is not None:
        out.update(substitute=m.substitute, substituted_total_s=m.substituted_total_s, speedup=m.speedup)
    return out


def _kind_dict(k: KindPrice) -> dict:
    c = (k.prediction.dense if k.substitute else k.prediction.pattern).counts
    out = {"kind": k.layer.label, "attention": k.layer.attention, "layers": list(k.layers), "count": len(k.layers),
           "pattern": k.pattern.describe(), "workload": {f: getattr(k.workload, f) for f in
                                                         ("batch", "q_heads", "kv_heads", "q_len", "kv_len",
                                                          "qk_head_dim", "v_head_dim", "dtype", "phase")},
           "attended_pairs": c.attended_pairs, "matmul_flops": c.flops.matmul,
           "compulsory_bytes": c.bytes.compulsory,
           "time_s_each": k.time_each_s, "time_s_total": len(k.layers) * k.time_each_s}
    if k.substitute is not None:
        out["substitute"] = {"pattern": k.substitute.describe(), "time_s_each": k.substituted_each_s,
                             "time_s_total": len(k.layers) * k.substituted_each_s,
                             "speedup": k.speedup, "flop_bound": k.flop_bound}
    return out
