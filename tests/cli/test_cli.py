"""The CLI: JSON contract, exit codes, one-line errors, torch stays out."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from attnsim.cli import main

HUNYUAN = ["--pattern", "neighborhood", "--tokens", "30x48x80", "--heads", "24", "--window", "18x24x24"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_json_has_the_documented_keys(capsys):
    code, out, _ = run(capsys, "predict", "--hw", "H100-SXM", *HUNYUAN, "--json")
    assert code == 0
    d = json.loads(out)
    for key in ("attended_pairs",):
        assert isinstance(d["counts"][key], int)
    for key in ("qk", "pv", "matmul", "exp"):
        assert isinstance(d["counts"]["flops"][key], int)
    assert d["counts"]["flops"]["matmul"] == d["counts"]["flops"]["qk"] + d["counts"]["flops"]["pv"]
    assert d["counts"]["bytes"]["compulsory"] > 0
    assert d["time_s"]["predicted"] >= d["time_s"]["roofline"] > 0
    assert d["bound_by"] in d["time_s"]["roofs"]
    assert set(d["speedup_vs_dense"]) >= {"flop", "roofline", "predicted"}
    assert all(isinstance(a, str) for a in d["assumptions"]) and d["assumptions"]
    assert d["counts"]["attended_pairs"] == 24 * 30 * 48 * 80 * 18 * 24 * 24
    tiles = d["tiles"]
    for key in ("q_tile", "kv_tile", "policy", "total", "full", "partial", "empty", "visited"):
        assert key in tiles
    assert tiles["total"] == tiles["full"] + tiles["partial"] + tiles["empty"]
    assert d["counts"]["flops"]["executed"] >= d["counts"]["flops"]["matmul"]
    assert d["speedup_vs_dense"]["tile"] <= d["speedup_vs_dense"]["flop"]


def test_gna_tile_flags(capsys):
    code, out, _ = run(capsys, "predict", *HUNYUAN, "--stride", "16x8x8", "--q-tile", "2x8x8",
                       "--kv-tile", "2x8x8", "--policy", "range", "--json")
    d = json.loads(out)
    assert code == 0
    assert (d["tiles"]["q_tile"], d["tiles"]["policy"], d["tiles"]["partial"]) == ("2x8x8", "range", 0)
    assert d["speedup_vs_dense"]["tile"] == pytest.approx(100 / 9)


def test_predict_table_for_people(capsys):
    code, out, _ = run(capsys, "predict", "--hw", "H100-SXM", *HUNYUAN)
    assert code == 0
    assert "binds" in out and "Speedup vs dense" in out and "11.11x" in out


def test_speedup_table_covers_profiles_and_explains_missing_dtypes(capsys):
    code, out, _ = run(capsys, "speedup", "--pattern", "causal", "--seq", "8192", "--dtype", "fp8", "--json")
    rows = json.loads(out)
    assert code == 0
    by_name = {r["hw"]["name"]: r for r in rows}
    assert "fp8" in by_name["A100-SXM4-80GB"]["error"]
    assert by_name["H100-SXM"]["speedup_vs_dense"]["flop"] == pytest.approx(2 * 8192 / 8193)


def test_hw_list_json_is_a_list_of_named_kinds(capsys):
    code, out, _ = run(capsys, "hw", "list", "--json")
    rows = json.loads(out)
    assert code == 0 and isinstance(rows, list)
    assert {"H100-SXM", "MI300X"} <= {r["name"] for r in rows}
    assert {r["kind"] for r in rows} <= {"gpu", "cpu", "systolic", "optical4f"}


def test_hw_show_lists_sources(capsys):
    code, out, _ = run(capsys, "hw", "show", "H100-SXM", "--json")
    assert code == 0
    assert "whitepaper" in json.loads(out)["sources"]["matmul_flops_per_s.bf16"]


@pytest.mark.parametrize("argv,field", [
    (["predict", "--pattern", "neighborhood", "--tokens", "30x48x80", "--window", "18x64x24"], "window[1]=64"),
    (["predict", "--seq", "1024", "--heads", "32", "--kv-heads", "5"], "kv_heads=5"),
    (["predict", "--seq", "0"], "q_len"),
    (["predict", "--seq", "1024", "--batch", "0"], "batch"),
    (["predict", "--tokens", "30x0x80"], "--tokens"),
    (["predict", "--seq", "1024", "--head-dim", "-1"], "qk_head_dim"),
    (["predict", "--hw", "A100-SXM4-80GB", "--seq", "1024", "--dtype", "fp8"], "fp8"),
    (["predict", "--pattern", "sliding", "--seq", "1024", "--window", "4096"], "window=4096"),
    (["predict", "--pattern", "sliding", "--seq", "1024"], "--window"),
    (["predict", "--hw", "H999", "--seq", "1024"], "--hw"),
    (["predict"], "--seq"),
    (["predict", "--seq", "abc"], "--seq"),
    (["predict", "--seq", "64", "--pattern", "nope"], "--pattern"),
    (["hw", "check", "/nonexistent.yaml"], "cannot read"),
    (HUNYUAN + ["--q-tile", "4x4"], "q_tile"),
    (HUNYUAN + ["--stride", "32x1x1"], "stride[0]=32"),
    (HUNYUAN + ["--causal", "1x2x0"], "--causal"),
    (HUNYUAN + ["--policy", "sideways"], "--policy"),
    (HUNYUAN + ["--q-tile", "0x8x8"], "--q-tile"),
    (HUNYUAN + ["--q-tile", "2x8x8", "--kv-tile", "8x8"], "same rank"),
    (HUNYUAN + ["--dilation", "2x1x1", "--window", "18x24x24"], "dilation[0]=2"),
    (HUNYUAN + ["--q-tile", "128", "--policy", "range"], "policy range needs box tiles"),
    (["predict", "--seq", "64", "--pattern", "causal", "--stride", "2"], "--stride"),
    (["predict", "--seq", "64", "--pattern", "mla", "--head-dim", "192", "--window", "5"], "--window"),
    (["predict", "--seq", "64", "--pattern", "dense", "--kv-lora-rank", "8"], "--kv-lora-rank"),
    (["predict", "--seq", "64", "--pattern", "mla", "--head-dim", "64"], "--rope-dim"),
    (["predict", "--seq", "4096", "--pattern", "moba", "--block-size", "512"], "--top-k"),
    (["predict", "--seq", "4096", "--pattern", "moba", "--block-size", "512", "--top-k", "2", "--q-tile", "128"],
     "--q-tile"),
    (["predict", "--seq", "4096", "--pattern", "moba", "--block-size", "512", "--top-k", "9"], "--top-k 9"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, field):
    code, out, err = run(capsys, *(argv if argv[0] in ("predict", "hw") else ["predict", *argv]))
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnsim: error:") and field in lines[0]


def test_hw_check_names_file_and_field(capsys, tmp_path):
    bad = tmp_path / "gpu.yaml"
    bad.write_text("schema_version: 1\nname: x\nkind: gpu\nmatmul_flops_per_s: {bf16: {value: 1, unit: TFLOP/s}}\n")
    code, _, err = run(capsys, "hw", "check", str(bad))
    assert code == 2 and str(bad) in err and "matmul_flops_per_s.bf16: missing 'source'" in err


def test_probe_writes_a_profile_that_checks(capsys, tmp_path):
    out = tmp_path / "me.yaml"
    code, _, _ = run(capsys, "hw", "probe", "--out", str(out), "--name", "me")
    assert code == 0
    code, text, _ = run(capsys, "hw", "check", str(out))
    assert code == 0 and "ok: me (cpu)" in text
    assert not list(tmp_path.glob("*.tmp"))


def test_import_and_cli_do_not_import_torch():
    code = ("import sys, attnsim, attnsim.cli, attnsim.hwmodels; "
            "from attnsim.cli import main; main(['predict', '--seq', '256', '--json']); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_console_script_end_to_end():
    script = Path(sys.executable).with_name("attnsim")  # installed beside this interpreter
    proc = subprocess.run([str(script), "predict", "--seq", "4096", "--pattern", "causal", "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["counts"]["pairs_per_head"] == 4096 * 4097 // 2


def test_mla_decode_json(capsys):
    code, out, _ = run(capsys, "predict", "--hw", "H200", "--pattern", "mla", "--phase", "decode", "--seq", "4096",
                       "--batch", "8", "--heads", "128", "--head-dim", "192", "--v-head-dim", "128", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["pattern"].startswith("mla(kv_lora_rank=512, rope_dim=64")
    assert set(d["counts"]["flops"]["by_op"]) == {"q_absorb", "qk_latent", "pv_latent", "v_up"}
    assert d["counts"]["bytes"]["by_tensor"]["c_kv"] == 8 * 4096 * 512 * 2


def test_moba_against_a_causal_baseline(capsys):
    argv = ["predict", "--pattern", "moba", "--seq", "65536", "--block-size", "4096", "--top-k", "3", "--causal",
            "--json"]
    bounds = {}
    for baseline in ("dense", "causal"):
        code, out, _ = run(capsys, *argv, "--baseline", baseline)
        assert code == 0
        d = json.loads(out)
        assert d["baseline"] == baseline and d["tiles"] is None and d["speedup_vs_dense"]["tile"] is None
        bounds[baseline] = d["speedup_vs_dense"]["flop"]
    # the causal baseline keeps about half the pairs of dense: half the bound
    assert bounds["causal"] == pytest.approx(bounds["dense"] * (65536 + 1) / (2 * 65536))
