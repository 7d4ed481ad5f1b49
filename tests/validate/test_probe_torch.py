"""hw probe with torch: per-dtype matmul rates in a profile our own loader accepts."""
import pytest

pytest.importorskip("torch")

import yaml  # noqa: E402

from attnsim.hwmodels.profile import parse_profile, shipped_profile_paths  # noqa: E402
from attnsim.validate import probe_torch  # noqa: E402


def test_matmul_entries_cover_each_dtype_and_parse(monkeypatch):
    monkeypatch.setattr(probe_torch, "TARGET_CALL_S", 0.001)  # tiny matmuls: a unit test, not a probe
    entries = probe_torch.matmul_entries("on this machine")
    assert set(entries) == {"fp32", "bf16", "fp16"}
    assert all(e["value"] > 0 and e["source"].startswith("measured: torch") for e in entries.values())
    data = yaml.safe_load(shipped_profile_paths()["EPYC-2vCPU"].read_text())  # a probed profile
    data["matmul_flops_per_s"].update(entries)
    assert set(parse_profile(data, "probe").matmul) == {"fp32", "bf16", "fp16"}


def test_matmul_size_is_a_multiple_of_256_within_bounds(monkeypatch):
    monkeypatch.setattr(probe_torch, "TARGET_CALL_S", 1e-9)
    assert probe_torch.matmul_size("fp32") == 256
    monkeypatch.setattr(probe_torch, "TARGET_CALL_S", 1e9)
    assert probe_torch.matmul_size("fp32") == probe_torch.MAX_N
