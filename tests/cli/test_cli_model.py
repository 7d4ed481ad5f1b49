"""``attnsim model``: JSON contract, the table, exit code 2 with one line for bad input."""
import json
import subprocess
import sys

import pytest

from attnsim.cli import main
from attnsim.modelcfg import shipped_models


def run(capsys, *argv):
    code = main(["model", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_every_shipped_config_prices_to_json(capsys, name):
    llm = load_family(name) == "llm"
    code, out, _ = run(capsys, name, *(["--context", "4096"] if llm else []), "--json")
    assert code == 0
    d = json.loads(out)
    assert d["layers"] == sum(k["count"] for k in d["kinds"]) and d["predictions"] <= len(d["kinds"])
    assert d["total_s"] == pytest.approx(sum(k["time_s_total"] for k in d["kinds"]))
    assert all(k["time_s_total"] == pytest.approx(k["count"] * k["time_s_each"]) for k in d["kinds"])
    assert d["assumptions"][0].startswith("attention only")


def load_family(name):
    from attnsim.modelcfg import load_model
    return load_model(name).family


def test_substitution_json_and_table(capsys):
    args = ("gemma-2-9b", "--context", "8192", "--substitute", "sliding --window 1024 --causal")
    code, out, _ = run(capsys, *args, "--json")
    d = json.loads(out)
    assert code == 0 and d["substitute"] == "sliding --window 1024 --causal"
    subbed = [k for k in d["kinds"] if "substitute" in k]
    assert [k["attention"] for k in subbed] == ["full"] and subbed[0]["count"] == 21
    assert d["speedup"] == pytest.approx(d["total_s"] / d["substituted_total_s"])
    code, out, _ = run(capsys, *args, "--substitute-layers", "all")
    assert code == 0 and "Model attention time" in out and "speedup" in out and "FLOP" in out


def test_decode_and_tokens(capsys):
    code, out, _ = run(capsys, "deepseek-v3", "--context", "32768", "--phase", "decode", "--json")
    assert code == 0 and json.loads(out)["kinds"][0]["workload"]["q_len"] == 1
    code, out, _ = run(capsys, "flux.1-dev-1024", "--tokens", "32x32", "--json")
    assert code == 0 and json.loads(out)["kinds"][0]["workload"]["q_len"] == 1024


@pytest.mark.parametrize("argv, message", [
    (["no-such-model"], "no shipped model"),
    (["llama-3.1-8b"], "give --context"),
    (["llama-3.1-8b", "--context", "64", "--substitute", "slide --window 8"], "not a pattern name"),
    (["llama-3.1-8b", "--context", "1024", "--substitute", "sliding --window 4096 --causal"], "layers 0-31"),
    (["flux.1-dev-1024", "--tokens", "0x4"], "--tokens"),
    (["flux.1-dev-1024", "--phase", "decode"], "no KV cache"),
    (["llama-3.1-8b", "--context", "64", "--substitute-layers", "some"], "--substitute-layers"),
    (["llama-3.1-8b", "--context", "64", "--hw", "NoSuchGPU"], "NoSuchGPU"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_config_missing_a_key_names_it(capsys, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64}))
    code, _, err = run(capsys, str(path), "--context", "64")
    assert code == 2 and "missing required key 'num_attention_heads'" in err


def test_model_command_does_not_import_torch():
    code = ("import sys; from attnsim.cli.model import model; import attnsim.models; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
