"""Model configs -> the list of a model's attention layers (``attnsim model``, docs/models.md).

Two inputs:

- a Hugging Face ``config.json`` (Llama, Mistral, Qwen2/3, Gemma 1/2/3, DeepSeek-V2/V3 MLA, or any
  decoder with the standard fields). Field meanings and defaults follow the transformers
  ``configuration_*.py`` classes: ``num_key_value_heads`` defaults to ``num_attention_heads``,
  ``head_dim`` to ``hidden_size // num_attention_heads``; which layers slide comes from
  ``layer_types`` when the config has it, else from each family's rule (see :func:`_layer_kinds`).
  Fields that size the model (layers, heads) are never filled from a class default: a config
  without them is refused, naming the key.
- a small YAML for vision/video DiTs (``format: attnsim-dit``): a token grid, heads and layers,
  every layer full bidirectional attention unless an override gives it a pattern.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from .errors import AttnsimError
from .shipped import shipped_files

DIT_FORMAT = "attnsim-dit"
MLA_TYPES = ("deepseek_v2", "deepseek_v3")
QWEN_TYPES = ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe")
MISTRAL_TYPES = ("mistral", "mixtral")
FULL_TYPES = ("llama", "gemma", *MLA_TYPES)  # no sliding layers in these families
KNOWN_TYPES = (*FULL_TYPES, *MISTRAL_TYPES, *QWEN_TYPES, "gemma2", "gemma3", "gemma3_text")
QWEN_MAX_WINDOW_LAYERS = 28     # transformers Qwen2Config/Qwen3Config default
GEMMA3_PATTERN = 6              # transformers Gemma3TextConfig: sliding_window_pattern default


class ConfigError(AttnsimError):
    """A model config attnsim cannot read (missing or bad key, unsupported attention)."""


@dataclass(frozen=True)
class LayerSpec:
    """One attention layer. ``attention`` is what ``--substitute-layers full`` matches: "full"
    (global attention, MLA included), "sliding", or "pattern" (a DiT override)."""

    attention: str
    heads: int
    kv_heads: int
    head_dim: int
    v_head_dim: int
    causal: bool
    window: int | None = None            # sliding: keys per query, its own included (HF sliding_window)
    mla: tuple[int, int] | None = None   # (kv_lora_rank, rope_dim) of an MLA layer
    pattern: str | None = None           # DiT override, "PATTERN FLAGS..." as on the CLI

    @property
    def label(self) -> str:
        if self.pattern is not None:
            return self.pattern
        if self.mla is not None:
            return f"mla r{self.mla[0]} rope{self.mla[1]}"
        if self.attention == "sliding":
            return f"sliding {self.window}"  # always causal: bidirectional configs are refused
        return "full causal" if self.causal else "full"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str                        # "llm" (1D, --context) or "dit" (token grid)
    source: str
    layers: tuple[LayerSpec, ...]
    grid: tuple[int, ...] | None = None
    max_positions: int | None = None
    notes: tuple[str, ...] = ()        # how the config was read


def shipped_models() -> dict[str, Path]:
    """Configs shipped in cases/models/, by file stem."""
    return shipped_files("attnsim.cases", "models", (".json", ".yaml", ".yml"))


def load_model(ref: str) -> ModelSpec:
    """A config file path, or the name of a shipped one (``attnsim model llama-3.1-8b``)."""
    path = Path(ref)
    if not path.is_file():
        shipped = shipped_models()
        if ref not in shipped:
            raise ConfigError(f"no config file {ref!r} and no shipped model of that name "
                              f"(shipped: {', '.join(sorted(shipped))})")
        path = shipped[ref]
    text = path.read_text()
    try:
        raw = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not valid {'YAML' if path.suffix != '.json' else 'JSON'} "
                          f"({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(raw).__name__}")
    return parse_dit(raw, str(path)) if path.suffix in (".yaml", ".yml") else parse_hf(raw, str(path))


# -- field readers: every error names the key --------------------------------------------------
def _int(cfg: dict, key: str, where: str, default=None, minimum: int = 1) -> int:
    value = cfg.get(key, default)
    if value is None:
        raise ConfigError(f"{where}: missing required key '{key}'")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: '{key}' must be an integer >= {minimum}, got {value!r}")
    return value


def _optional_int(cfg: dict, key: str, where: str) -> int | None:
    return None if cfg.get(key) is None else _int(cfg, key, where)


# -- Hugging Face config.json -------------------------------------------------------------------
def parse_hf(raw: dict, where: str) -> ModelSpec:
    cfg, model_type = _text_config(raw)
    name = raw.get("_name_or_path") or Path(where).stem
    where = f"{where}{' text_config' if cfg is not raw else ''}"
    if model_type not in KNOWN_TYPES and "num_attention_heads" not in cfg and "num_hidden_layers" not in cfg:
        raise ConfigError(f"{where}: model_type {model_type!r} is not one attnsim reads and the config has no "
                          "num_attention_heads / num_hidden_layers: not a decoder attention config")
    if cfg.get("use_bidirectional_attention"):
        raise ConfigError(f"{where}: 'use_bidirectional_attention' is true (an encoder): attnsim model prices "
                          "causal decoders; set it to false or price the layers with attnsim predict")
    n_layers = _int(cfg, "num_hidden_layers", where)
    base = _base_layer(cfg, model_type, where)
    kinds, notes = _layer_kinds(cfg, model_type, n_layers, where)
    layers = tuple(base if window is None else replace(base, attention="sliding", window=window)
                   for window in kinds)
    if cfg.get("attn_logit_softcapping") is not None:
        notes.append("attn_logit_softcapping: one tanh per score, not counted (a score epilogue like the "
                     "softmax's max and sum)")
    if cfg.get("num_nextn_predict_layers"):
        notes.append(f"the {cfg['num_nextn_predict_layers']} multi-token-prediction layer(s) "
                     "(num_nextn_predict_layers) are not priced: num_hidden_layers only")
    if model_type not in KNOWN_TYPES:
        notes = [f"model_type {model_type!r} is not a family attnsim knows: read as a generic causal decoder "
                 "(layer_types when given, else every layer full)", *notes]
    return ModelSpec(name=name, family="llm", source=where,
                     layers=layers, max_positions=_optional_int(cfg, "max_position_embeddings", where),
                     notes=tuple(notes))


def _text_config(raw: dict) -> tuple[dict, str | None]:
    """Multimodal configs (Gemma 3, Llava...) nest the language model under ``text_config``."""
    nested = raw.get("text_config")
    if isinstance(nested, dict) and "num_attention_heads" not in raw and "num_hidden_layers" not in raw:
        return nested, nested.get("model_type") or raw.get("model_type")
    return raw, raw.get("model_type")


def _base_layer(cfg: dict, model_type: str | None, where: str) -> LayerSpec:
    heads = _int(cfg, "num_attention_heads", where)
    if model_type in MLA_TYPES or cfg.get("kv_lora_rank") is not None:
        # DeepSeek-V2/V3 (modeling_deepseek_v3): q/k head = nope + rope dims, one latent for all heads
        nope, rope = _int(cfg, "qk_nope_head_dim", where), _int(cfg, "qk_rope_head_dim", where)
        return LayerSpec("full", heads, heads, nope + rope, _int(cfg, "v_head_dim", where), causal=True,
                         mla=(_int(cfg, "kv_lora_rank", where), rope))
    kv_heads = _int(cfg, "num_key_value_heads", where, default=heads)
    if heads % kv_heads:
        raise ConfigError(f"{where}: 'num_attention_heads' {heads} is not a multiple of "
                          f"'num_key_value_heads' {kv_heads}")
    if cfg.get("head_dim") is not None:
        head_dim = _int(cfg, "head_dim", where)
    elif cfg.get("hidden_size") is not None:
        head_dim = _int(cfg, "hidden_size", where) // heads
    else:
        raise ConfigError(f"{where}: missing required key 'head_dim' (or 'hidden_size' to derive it)")
    if head_dim < 1:
        raise ConfigError(f"{where}: 'hidden_size' // 'num_attention_heads' is 0: give 'head_dim'")
    return LayerSpec("full", heads, kv_heads, head_dim, head_dim, causal=True)


def _layer_kinds(cfg: dict, model_type: str | None, n: int, where: str) -> tuple[list[int | None], list[str]]:
    """Per layer: the sliding window (keys per query) or None for full attention, and notes."""
    # transformers Qwen2Config: sliding_window = sliding_window if use_sliding_window else None
    qwen_off = model_type in QWEN_TYPES and not cfg.get("use_sliding_window", False)
    window = None if qwen_off else _optional_int(cfg, "sliding_window", where)
    if cfg.get("layer_types") is not None:
        return _from_layer_types(cfg["layer_types"], n, window, qwen_off, where)
    if model_type in MISTRAL_TYPES:
        return [window] * n, ([f"{model_type}: sliding_window {window} in every layer"] if window else [])
    if model_type in QWEN_TYPES:
        if window is None:
            return [None] * n, ["qwen: use_sliding_window false (or no sliding_window): every layer full"]
        first = _int(cfg, "max_window_layers", where, default=QWEN_MAX_WINDOW_LAYERS, minimum=0)
        # transformers Qwen2Config: layer i slides iff i >= max_window_layers
        return [window if i >= first else None for i in range(n)], [
            f"qwen: layers >= max_window_layers ({first}) slide with window {window}"]
    if model_type == "gemma2":
        # transformers Gemma2Config: layer i slides iff (i + 1) % 2, i.e. even layers
        return [_required(window, "sliding_window", where) if i % 2 == 0 else None for i in range(n)], [
            "gemma2: no layer_types, so even layers slide and odd layers are global (transformers Gemma2Config)"]
    if model_type in ("gemma3", "gemma3_text"):
        every = _int(cfg, "sliding_window_pattern", where, default=GEMMA3_PATTERN)
        return [None if (i + 1) % every == 0 else _required(window, "sliding_window", where) for i in range(n)], [
            f"gemma3: no layer_types, so every {every}th layer is global (sliding_window_pattern {every})"]
    if window is not None and model_type not in FULL_TYPES:
        raise ConfigError(f"{where}: 'sliding_window' is set but model_type {model_type!r} has no rule for "
                          "which layers slide: add 'layer_types' (sliding_attention / full_attention per layer)")
    return [None] * n, []


def _required(window: int | None, key: str, where: str) -> int:
    if window is None:
        raise ConfigError(f"{where}: missing required key '{key}' (the model has sliding layers)")
    return window


def _from_layer_types(types, n: int, window: int | None, qwen_off: bool,
                      where: str) -> tuple[list[int | None], list[str]]:
    if not isinstance(types, list) or len(types) != n:
        raise ConfigError(f"{where}: 'layer_types' must list one type per layer ({n} = num_hidden_layers)")
    out, notes = [], ["layer types from the config's layer_types"]
    for i, kind in enumerate(types):
        if kind == "full_attention":
            out.append(None)
        elif kind == "sliding_attention" and qwen_off:
            # transformers runs them with sliding_window None, i.e. without a window
            out.append(None)
            if len(notes) == 1:
                notes.append("qwen: use_sliding_window false, so sliding_attention layers run full")
        elif kind == "sliding_attention":
            out.append(_required(window, "sliding_window", where))
        else:
            raise ConfigError(f"{where}: layer_types[{i}] is {kind!r}: attnsim model prices "
                              "full_attention and sliding_attention layers only")
    return out, notes


# -- DiT YAML -----------------------------------------------------------------------------------
def parse_dit(raw: dict, where: str) -> ModelSpec:
    if raw.get("format") != DIT_FORMAT:
        raise ConfigError(f"{where}: missing required key 'format' (format: {DIT_FORMAT}; see docs/models.md)")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: missing required key 'name'")
    n, heads, head_dim = _int(raw, "layers", where), _int(raw, "heads", where), _int(raw, "head_dim", where)
    grid = raw.get("grid")
    if not isinstance(grid, list) or not 1 <= len(grid) <= 3 or not all(
            isinstance(g, int) and not isinstance(g, bool) and g > 0 for g in grid):
        raise ConfigError(f"{where}: missing or bad key 'grid': 1 to 3 positive token extents, e.g. [33, 45, 80]")
    base = LayerSpec("full", heads, _int(raw, "kv_heads", where, default=heads), head_dim, head_dim, causal=False)
    layers = [base] * n
    for k, override in enumerate(raw.get("overrides") or []):
        spot = f"{where} overrides[{k}]"
        if not isinstance(override, dict) or not isinstance(override.get("pattern"), str):
            raise ConfigError(f"{spot}: missing required key 'pattern' (e.g. \"neighborhood --window 13x13x13\")")
        for i in _layer_indices(override.get("layers"), n, spot):
            layers[i] = replace(layers[i], attention="pattern", pattern=override["pattern"].strip())
    notes = [raw["notes"]] if isinstance(raw.get("notes"), str) else []
    return ModelSpec(name=name, family="dit", source=where, layers=tuple(layers), grid=tuple(grid),
                     notes=tuple(notes))


def _layer_indices(spec, n: int, where: str) -> list[int]:
    """[0, 1, 5] or "0-9" or "0-9, 20": layer indices in 0..n-1."""
    if isinstance(spec, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in spec):
        indices = spec
    elif isinstance(spec, str):
        try:
            indices = [i for part in spec.split(",") for i in _span(part.strip())]
        except ValueError:
            raise ConfigError(f"{where}: 'layers' {spec!r}: use a list [0, 1] or ranges like \"0-9, 20\"") from None
    else:
        raise ConfigError(f"{where}: missing required key 'layers' (a list [0, 1] or ranges like \"0-9\")")
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise ConfigError(f"{where}: 'layers' has index {bad[0]}, outside 0..{n - 1}")
    return indices


def _span(text: str) -> range:
    lo, _, hi = text.partition("-")
    return range(int(lo), int(hi or lo) + 1)
