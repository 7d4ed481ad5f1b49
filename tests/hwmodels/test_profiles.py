"""Shipped profiles load strictly; every malformed profile is refused naming the field."""
from pathlib import Path

import pytest
import yaml

from attnsim.errors import PricingError, ProfileError
from attnsim.hwmodels import list_profiles, load_profile, load_profile_file
from attnsim.hwmodels.profile import shipped_profile_paths

REQUIRED_DEVICES = {"H100-SXM", "H100-PCIe", "H200", "B200", "A100-SXM4-80GB", "L40S",
                    "RTX-4090", "MI300X"}


def test_required_devices_ship_and_names_match_files():
    paths = shipped_profile_paths()
    assert REQUIRED_DEVICES <= set(paths)
    for profile in list_profiles():
        assert Path(profile.path).stem == profile.name
    assert any(p.kind == "cpu" for p in list_profiles())


@pytest.mark.parametrize("profile", list_profiles(), ids=lambda p: p.name)
def test_every_number_has_a_source_and_is_positive(profile):
    quantities = list(profile.matmul.values()) + list(profile.fields.values())
    for q in quantities:
        assert q.source.strip() and q.value_si > 0


@pytest.mark.parametrize("profile", [p for p in list_profiles() if p.kind == "gpu"], ids=lambda p: p.name)
def test_gpu_tensor_peaks_dwarf_exp_and_vector_rates(profile):
    # Sanity against mixed-up units: tensor bf16/fp16 > FP32 vector (RTX 4090: only 2x) >> exp.
    half = profile.matmul.get("bf16") or profile.matmul["fp16"]
    assert half.value_si > profile.get("vector_flops_per_s") > 2 * profile.get("exp_per_s")


def test_a100_refuses_fp8():
    with pytest.raises(PricingError, match=r"A100-SXM4-80GB .*fp8.*--dtype"):
        load_profile("A100-SXM4-80GB").matmul_peak("fp8")


def test_lookup_is_case_insensitive_and_unknown_names_list_choices():
    assert load_profile("h100-sxm").name == "H100-SXM"
    with pytest.raises(ProfileError, match="no such profile.*H100-SXM"):
        load_profile("H100-SMX")


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "dev.yaml"
    path.write_text(text)
    return path


GOOD = Path(shipped_profile_paths()["H100-SXM"]).read_text()


@pytest.mark.parametrize("mutate,match", [
    (lambda t: t + "l2_bytes: {value: 1, unit: MiB, source: x}\n", r"duplicate key 'l2_bytes'"),
    (lambda t: t + "memory_bw_byte_per_s: {value: 1, unit: TB/s, source: x}\n",
     r"unknown field 'memory_bw_byte_per_s'"),
    (lambda t: t.replace(', source: "NVIDIA H100 datasheet, H100 SXM column: GPU memory bandwidth 3.35 TB/s"', ""),
     r"memory_bw_bytes_per_s: missing 'source'"),
    (lambda t: t.replace("value: 3.35, unit: TB/s, ", "value: 3.35, "), r"memory_bw_bytes_per_s: missing 'unit'"),
    (lambda t: t.replace("value: 3.35, unit: TB/s", "value: 3.35, unit: GB"),
     r"memory_bw_bytes_per_s.unit: 'GB' is not a B/s unit \(GB is a bytes unit\)"),
    (lambda t: t.replace("value: 3.35, unit: TB/s", "value: 0, unit: TB/s"),
     r"memory_bw_bytes_per_s.value: must be positive"),
    (lambda t: t.replace("value: 3.35, unit: TB/s", "value: -3.35, unit: TB/s"),
     r"memory_bw_bytes_per_s.value: must be positive"),
    (lambda t: t.replace("kind: gpu", "kind: tpu"), r"kind must be one of"),
    (lambda t: t.replace("schema_version: 1", "schema_version: 2"), r"schema_version must be 1"),
    (lambda t: t.replace("  fp8:", "  int4:"), r"matmul_flops_per_s.int4: unknown dtype"),
    (lambda t: "\n".join(l for l in t.splitlines() if not l.startswith("exp_per_s")),
     r"missing required field 'exp_per_s'"),
    (lambda t: t + "  bad: [unclosed\n", r"invalid YAML"),
])
def test_bad_profiles_are_refused_with_the_field(tmp_path, mutate, match):
    text = mutate(GOOD)
    assert text != GOOD
    with pytest.raises(ProfileError, match=match) as err:
        load_profile_file(_write(tmp_path, text))
    assert str(tmp_path / "dev.yaml") in str(err.value)
    assert "\n" not in str(err.value)


def test_round_trip_of_a_shipped_profile_is_accepted(tmp_path):
    data = yaml.safe_load(GOOD)
    path = _write(tmp_path, yaml.safe_dump(data))
    assert load_profile_file(path).get("memory_bw_bytes_per_s") == pytest.approx(3.35e12)
