"""CLI wiring of the non-GPU targets: speedup --case convsharevit, sweep-optical, and the loader's
cross-field check of optical profiles."""
import json

import yaml

from attnsim.cli import main
from attnsim.hwmodels.profile import shipped_profile_paths


def test_speedup_case_convsharevit_json(capsys):
    assert main(["speedup", "--case", "convsharevit", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    block = out["optical"]["scopes"]["block"]
    assert block["bound_by"] in block["breakdown_s"] and out["claim"]["value"] == 3.04
    assert out["speedup"]["block"] == out["gpu"]["scopes"]["block"]["time_s"] / block["time_s"]


def test_speedup_case_overrides_only_given_flags(capsys):
    assert main(["speedup", "--case", "convsharevit", "--seq", "65", "--hw", "Optical4f-DMD", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["setting"]["seq"] == 65 and out["setting"]["heads"] == 12 and out["optical"]["hw"] == "Optical4f-DMD"


def test_unknown_target_case_is_one_line(capsys):
    assert main(["speedup", "--case", "flash-moba"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--case 'flash-moba'" in err


def test_sweep_optical_finds_the_projection_crossover(capsys):
    assert main(["sweep-optical", "--frame-rates", "60,1e7", "--resolutions", "1920x1080", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rates = [p["frame_rate_hz"] for p in out["speedup"]["projections"][0]["points"]]
    assert rates == [60.0, 1e7] and set(out["crossover_hz"]) == {"projections", "core", "block"}
    assert main(["sweep-optical", "--resolutions", "1920"]) == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_hw_check_refuses_a_detector_smaller_than_the_modulator(tmp_path, capsys):
    data = yaml.safe_load(shipped_profile_paths()["Optical4f-LCoS"].read_text())
    width = next(k for k in data if k.startswith("detector") and "width" in k)
    data[width]["value"] = 10
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert main(["hw", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and width in err
