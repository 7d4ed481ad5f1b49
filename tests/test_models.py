"""Whole models: config parsing (layer kinds derived by hand from the transformers rules), the
sliding-window meaning against HF's mask predicate by brute force, totals against independent
per-layer predictions, and substitution speedups against hand-derived FLOP bounds."""
import json

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim import count, predict
from attnsim.errors import AttnsimError
from attnsim.modelcfg import ConfigError, LayerSpec, load_model, parse_dit, parse_hf, shipped_models
from attnsim.models import (Setting, index_ranges, layer_pattern, layer_workload, parse_pattern_text,
                            price_model, to_dict)
from attnsim.patterns import MLA, Causal, Dense, Neighborhood, Sliding
from attnsim.workload import Workload

HW = "H100-SXM"
LLAMA = {"model_type": "llama", "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2,
         "hidden_size": 512}


def kinds(spec):
    """layer index -> (attention, window) of a parsed model."""
    return [(layer.attention, layer.window) for layer in spec.layers]


# -- shipped configs: kinds and counts by hand ----------------------------------------------------
def test_every_shipped_config_parses():
    assert set(shipped_models()) == {"llama-3.1-8b", "qwen2.5-7b-instruct", "mistral-7b-v0.1", "gemma-2-9b",
                                     "gemma-3-4b-it", "deepseek-v3", "hunyuanvideo-720p", "flux.1-dev-1024"}
    for name in shipped_models():
        assert load_model(name).layers


def test_llama_31_8b_is_32_full_gqa_layers():
    spec = load_model("llama-3.1-8b")
    assert spec.layers == (LayerSpec("full", 32, 8, 128, 128, causal=True),) * 32  # head_dim = 4096 / 32
    assert spec.max_positions == 131072


def test_qwen25_with_use_sliding_window_false_is_all_full():
    spec = load_model("qwen2.5-7b-instruct")  # sliding_window 131072 is set, but not used
    assert spec.layers == (LayerSpec("full", 28, 4, 128, 128, causal=True),) * 28  # 3584 / 28


def test_mistral_7b_slides_4096_in_every_layer():
    spec = load_model("mistral-7b-v0.1")
    assert spec.layers == (LayerSpec("sliding", 32, 8, 128, 128, causal=True, window=4096),) * 32


def test_gemma2_9b_alternates_21_sliding_and_21_global():
    spec = load_model("gemma-2-9b")
    assert len(spec.layers) == 42
    assert kinds(spec) == [("sliding", 4096), ("full", None)] * 21   # layer 0 local, as gemma_pytorch
    assert {(lay.heads, lay.kv_heads, lay.head_dim) for lay in spec.layers} == {(16, 8, 256)}  # not 3584/16
    assert any("softcapping" in note for note in spec.notes)


def test_gemma3_4b_nested_text_config_has_every_sixth_layer_global():
    spec = load_model("gemma-3-4b-it")
    assert [i for i, (a, _) in enumerate(kinds(spec)) if a == "full"] == [5, 11, 17, 23, 29]
    assert sum(w == 1024 for _, w in kinds(spec)) == 29 and len(spec.layers) == 34
    assert {(lay.heads, lay.kv_heads, lay.head_dim) for lay in spec.layers} == {(8, 4, 256)}


def test_deepseek_v3_is_61_mla_layers():
    spec = load_model("deepseek-v3")
    assert spec.layers == (LayerSpec("full", 128, 128, 128 + 64, 128, causal=True, mla=(512, 64)),) * 61


def test_hunyuanvideo_grid_follows_from_720p_129_frames():
    spec = load_model("hunyuanvideo-720p")
    frames, height, width = 129, 720, 1280      # hyvideo/config.py defaults
    latent = ((frames - 1) // 4 + 1, height // 8 // 2, width // 8 // 2)   # 884 VAE, 1x2x2 patches
    assert spec.grid == latent == (33, 45, 80) and np.prod(latent) == 118800
    assert spec.layers == (LayerSpec("full", 24, 24, 128, 128, causal=False),) * 60  # 20 double + 40 single


def test_flux_dev_is_57_layers_on_a_64x64_grid():
    spec = load_model("flux.1-dev-1024")
    assert spec.grid == (1024 // 8 // 2,) * 2 and len(spec.layers) == 19 + 38


# -- family rules on hand-written configs --------------------------------------------------------
def test_qwen_slides_from_max_window_layers_on():
    cfg = {"model_type": "qwen2", "num_hidden_layers": 6, "num_attention_heads": 4, "hidden_size": 64,
           "use_sliding_window": True, "sliding_window": 32, "max_window_layers": 4}
    assert kinds(parse_hf(cfg, "q.json")) == [("full", None)] * 4 + [("sliding", 32)] * 2


def test_layer_types_win_and_qwen_without_use_sliding_window_runs_them_full():
    types = ["sliding_attention", "full_attention", "sliding_attention"]
    cfg = {**LLAMA, "model_type": "qwen3", "num_hidden_layers": 3, "layer_types": types, "sliding_window": 16}
    assert kinds(parse_hf(cfg, "q.json")) == [("full", None)] * 3
    cfg.update(use_sliding_window=True)
    assert kinds(parse_hf(cfg, "q.json")) == [("sliding", 16), ("full", None), ("sliding", 16)]


def test_unknown_model_type_with_standard_fields_is_a_generic_decoder():
    spec = parse_hf({**LLAMA, "model_type": "olmo2"}, "o.json")
    assert kinds(spec) == [("full", None)] * 4 and "olmo2" in spec.notes[0]
    cfg = {**LLAMA, "model_type": "cohere2", "layer_types": ["sliding_attention"] * 3 + ["full_attention"],
           "sliding_window": 8}
    assert kinds(parse_hf(cfg, "c.json")) == [("sliding", 8)] * 3 + [("full", None)]


@pytest.mark.parametrize("cfg, key", [
    ({k: v for k, v in LLAMA.items() if k != "num_attention_heads"}, "num_attention_heads"),
    ({k: v for k, v in LLAMA.items() if k != "num_hidden_layers"}, "num_hidden_layers"),
    ({k: v for k, v in LLAMA.items() if k != "hidden_size"}, "head_dim"),
    ({**LLAMA, "num_key_value_heads": 3}, "num_key_value_heads"),
    ({**LLAMA, "num_attention_heads": "8"}, "num_attention_heads"),
    ({**LLAMA, "model_type": "deepseek_v3", "kv_lora_rank": 512}, "qk_nope_head_dim"),
    ({**LLAMA, "model_type": "gemma2"}, "sliding_window"),
    ({**LLAMA, "model_type": "mystery", "sliding_window": 64}, "layer_types"),
    ({**LLAMA, "layer_types": ["full_attention"] * 3}, "layer_types"),
    ({**LLAMA, "layer_types": ["linear_attention"] * 4}, "linear_attention"),
    ({**LLAMA, "use_bidirectional_attention": True}, "use_bidirectional_attention"),
    ({"model_type": "whisper", "d_model": 512}, "model_type 'whisper'"),
])
def test_bad_configs_name_the_key(cfg, key):
    with pytest.raises(ConfigError, match=key) as err:
        parse_hf(cfg, "cfg.json")
    assert "\n" not in str(err.value)


def test_gemma3_hub_text_config_without_heads_is_refused_not_defaulted():
    # google/gemma-3-4b-it's published text_config leaves the heads to Gemma3TextConfig defaults
    raw = {"model_type": "gemma3", "text_config": {"hidden_size": 2560, "model_type": "gemma3_text",
                                                   "num_hidden_layers": 34, "sliding_window": 1024}}
    with pytest.raises(ConfigError, match="text_config: missing required key 'num_attention_heads'"):
        parse_hf(raw, "g.json")


def test_files_on_disk_and_bad_files(tmp_path):
    good = tmp_path / "m.json"
    good.write_text(json.dumps(LLAMA))
    assert len(load_model(str(good)).layers) == 4
    bad = tmp_path / "b.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_model(str(bad))
    with pytest.raises(ConfigError, match="no shipped model"):
        load_model("no-such-model")


# -- DiT YAML ---------------------------------------------------------------------------------------
DIT = {"format": "attnsim-dit", "name": "toy", "layers": 6, "heads": 4, "head_dim": 32, "grid": [4, 6, 6]}


def test_dit_overrides_give_layers_a_pattern(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump({**DIT, "overrides": [{"layers": "1-2, 5", "pattern": "neighborhood --window 3"}]}))
    spec = load_model(str(path))
    assert [lay.attention for lay in spec.layers] == ["full", "pattern", "pattern", "full", "full", "pattern"]
    wl = layer_workload(spec, spec.layers[1], Setting())
    assert layer_pattern(spec.layers[1], wl) == Neighborhood((3,)) and wl.grid == (4, 6, 6)
    assert layer_pattern(spec.layers[0], wl) == Dense()


@pytest.mark.parametrize("change, key", [
    ({"grid": None}, "grid"), ({"grid": [0, 4]}, "grid"), ({"format": None}, "format"),
    ({"heads": None}, "heads"), ({"name": None}, "name"),
    ({"overrides": [{"layers": [6], "pattern": "dense"}]}, "'layers' has index 6"),
    ({"overrides": [{"layers": [0]}]}, "pattern"),
])
def test_bad_dit_yaml_names_the_key(change, key):
    with pytest.raises(ConfigError, match=key):
        parse_dit({**DIT, **change}, "toy.yaml")


# -- the sliding window means what HF's mask means -------------------------------------------------
def hf_sliding_mask(context: int, window: int, new_tokens: int) -> np.ndarray:
    """transformers masking_utils: causal (k <= q) and sliding overlay (k > q - window), queries at
    the last ``new_tokens`` cache positions (all of them in prefill)."""
    q = np.arange(context - new_tokens, context)[:, None]
    k = np.arange(context)[None, :]
    return (k <= q) & (k > q - window)


@settings(max_examples=300)
@given(st.integers(1, 40), st.integers(1, 50), st.booleans(), st.integers(1, 6))
def test_sliding_layer_matches_hf_mask_by_brute_force(context, window, decode, new_tokens):
    spec = parse_hf({**LLAMA, "model_type": "mistral", "sliding_window": window}, "m.json")
    new_tokens = min(new_tokens, context) if decode else context
    setting = Setting(context=context, phase="decode" if decode else "fwd", decode_tokens=new_tokens)
    wl = layer_workload(spec, spec.layers[0], setting)
    pattern = layer_pattern(spec.layers[0], wl)
    expected = hf_sliding_mask(context, window, new_tokens)
    np.testing.assert_array_equal(pattern.mask(wl), expected)
    assert count(wl, pattern).attended_pairs == int(expected.sum()) * wl.heads_total
    assert isinstance(pattern, Causal) == (window >= context)


# -- pricing: totals are sums of independent per-layer predictions ----------------------------------
def t(wl, pattern):
    return predict(wl, pattern, HW).pattern.predicted_s


def test_gemma2_total_is_the_sum_of_its_42_layers():
    priced = price_model(load_model("gemma-2-9b"), HW, Setting(context=8192))
    wl = Workload.sequence(8192, heads=16, kv_heads=8, head_dim=256)
    expected = sum(t(wl, Sliding(4096, causal=True) if i % 2 == 0 else Causal()) for i in range(42))
    assert priced.total_s == pytest.approx(expected, rel=1e-12)
    assert priced.predictions == 2


def test_deepseek_v3_decode_is_61_mla_predictions_priced_once(monkeypatch):
    import attnsim.models as models
    calls = []
    monkeypatch.setattr(models, "predict", lambda *a, **k: calls.append(a) or predict(*a, **k))
    priced = price_model(load_model("deepseek-v3"), HW, Setting(context=32768, phase="decode"))
    wl = Workload.sequence(32768, heads=128, head_dim=192, v_head_dim=128, phase="decode")
    assert len(calls) == 1 and priced.predictions == 1
    assert priced.total_s == pytest.approx(61 * t(wl, MLA(512, 64)), rel=1e-12)
    assert any("MLA absorbed" in a for a in priced.kinds[0].prediction.assumptions)  # FlashMLA-style decode


def test_window_covering_the_context_shares_the_causal_prediction():
    priced = price_model(load_model("gemma-3-4b-it"), HW, Setting(context=1024))  # window 1024
    assert priced.predictions == 1 and {k.pattern for k in priced.kinds} == {Causal()}
    wl = Workload.sequence(1024, heads=8, kv_heads=4, head_dim=256)
    assert priced.total_s == pytest.approx(34 * t(wl, Causal()), rel=1e-12)


def test_decode_sliding_layer_attends_window_keys():
    spec = load_model("gemma-2-9b")
    priced = price_model(spec, HW, Setting(context=32768, phase="decode", batch=2))
    sliding = next(k for k in priced.kinds if k.layer.attention == "sliding")
    assert sliding.prediction.pattern.counts.attended_pairs == 2 * 16 * 4096


def test_dit_total_and_json():
    priced = price_model(load_model("hunyuanvideo-720p"), HW, Setting())
    wl = Workload.on_grid((33, 45, 80), heads=24, head_dim=128)
    assert priced.total_s == pytest.approx(60 * t(wl, Dense()), rel=1e-12)
    d = to_dict(priced)
    assert d["layers"] == 60 and d["kinds"][0]["count"] == 60 and d["setting"]["tokens"] == [33, 45, 80]
    assert d["total_s"] == pytest.approx(sum(k["time_s_total"] for k in d["kinds"]))
    assert d["kinds"][0]["attended_pairs"] == 24 * 118800 ** 2


# -- substitution -----------------------------------------------------------------------------------
def causal_sliding_pairs(n: int, w: int) -> int:
    """Per head: query i sees min(i + 1, w) keys."""
    return w * (w + 1) // 2 + (n - w) * w


def test_substituting_every_gemma2_layer_with_a_1024_window():
    n, w = 8192, 1024
    priced = price_model(load_model("gemma-2-9b"), HW, Setting(context=n), "sliding --window 1024 --causal", "all")
    bounds = {k.layer.attention: k.flop_bound for k in priced.kinds}
    assert bounds["full"] == pytest.approx(n * (n + 1) / 2 / causal_sliding_pairs(n, w))
    assert bounds["sliding"] == pytest.approx(causal_sliding_pairs(n, 4096) / causal_sliding_pairs(n, w))
    for k in priced.kinds:
        assert 1 < k.speedup <= k.flop_bound
        independent = predict(k.workload, Sliding(w, causal=True), HW, baseline=k.pattern)
        assert k.substituted_each_s == independent.pattern.predicted_s
        assert k.time_each_s == independent.dense.predicted_s
    speedups = [k.speedup for k in priced.kinds]
    assert min(speedups) <= priced.speedup <= max(speedups)
    assert priced.speedup == pytest.approx(priced.total_s / priced.substituted_total_s)


def test_substitute_layers_full_keeps_the_sliding_layers():
    priced = price_model(load_model("gemma-2-9b"), HW, Setting(context=8192), "sliding --window 1024 --causal")
    kept = next(k for k in priced.kinds if k.layer.attention == "sliding")
    assert kept.substitute is None and kept.speedup == 1.0
    assert kept.time_each_s == t(kept.workload, Sliding(4096, causal=True))


def test_neighborhood_in_every_dit_layer_flop_bound():
    priced = price_model(load_model("hunyuanvideo-720p"), HW, Setting(), "neighborhood --window 13x13x13")
    (kind,) = priced.kinds
    assert kind.flop_bound == pytest.approx(118800 / 13 ** 3)  # every extent >= 13: windows shift, never shrink
    assert priced.speedup == pytest.approx(kind.speedup) and kind.speedup <= kind.flop_bound


def test_pattern_text_is_parsed_by_the_cli_flags():
    assert parse_pattern_text("sliding --window 4096 --causal", "x") == Sliding(4096, causal=True)
    assert parse_pattern_text("neighborhood --window 13x13x13", "x") == Neighborhood((13, 13, 13))
    for text, message in (("", "not a pattern name"), ("slide --window 3", "'slide'"),
                          ("moba --top-k x", "not a valid integer"), ("sliding --agents 4", "does not apply")):
        with pytest.raises(AttnsimError, match=message):
            parse_pattern_text(text, "--substitute")


@pytest.mark.parametrize("model, setting, sub, message", [
    ("llama-3.1-8b", Setting(), None, "give --context"),
    ("llama-3.1-8b", Setting(context=64, tokens=(8, 8)), None, "--tokens does not apply"),
    ("llama-3.1-8b", Setting(context=4, phase="decode", decode_tokens=5), None, "--decode-tokens 5 exceeds"),
    ("flux.1-dev-1024", Setting(context=64), None, "--context does not apply"),
    ("flux.1-dev-1024", Setting(phase="decode"), None, "no KV cache"),
    ("llama-3.1-8b", Setting(context=1024), "sliding --window 4096 --causal", "layers 0-31"),
])
def test_bad_settings_are_one_line_errors(model, setting, sub, message):
    with pytest.raises(AttnsimError, match=message):
        price_model(load_model(model), HW, setting, sub)


def test_index_ranges():
    assert index_ranges(range(32)) == "0-31"
    assert index_ranges(range(0, 42, 2)) == "0-40/2"
    assert index_ranges([5, 11, 17]) == "5-17/6"
    assert index_ranges([0, 1, 3]) == "0-1, 3"
    assert index_ranges([0, 5]) == "0, 5"


def test_substitute_layers_full_on_an_all_sliding_model_says_nothing_matched():
    priced = price_model(load_model("mistral-7b-v0.1"), HW, Setting(context=8192), "sliding --window 1024 --causal")
    assert priced.speedup == 1.0 and any("matched no layer" in note for note in priced.notes)
    everything = price_model(load_model("mistral-7b-v0.1"), HW, Setting(context=8192),
                             "sliding --window 1024 --causal", "all")
    assert everything.kinds[0].flop_bound == pytest.approx(causal_sliding_pairs(8192, 4096)
                                                           / causal_sliding_pairs(8192, 1024))


def test_a_dit_override_that_does_not_fit_names_its_layers():
    spec = parse_dit({**DIT, "overrides": [{"layers": [1, 2], "pattern": "neighborhood --window 9"}]}, "toy.yaml")
    with pytest.raises(AttnsimError, match=r"layers 1-2 \(neighborhood --window 9\)"):
        price_model(spec, HW, Setting())
