"""Interconnect profiles: shipped values match their sources' arithmetic, the loader is strict."""
import pytest

from attnsim.errors import ProfileError
from attnsim.hwmodels.interconnect import (list_interconnects, load_interconnect, load_interconnect_file,
                                           shipped_interconnect_paths)

GB = 1e9
SHIPPED = ("NVLink3", "NVLink4", "NVLink5", "PCIe4-x16", "PCIe5-x16", "IB-HDR", "IB-NDR", "RoCE-100GbE",
           "RoCE-400GbE")
VALID = """schema_version: 1
kind: interconnect
name: Test-Link
description: a link for tests
bandwidth_bytes_per_s: {value: 100, unit: GB/s, source: "test"}
latency_s: {value: 2, unit: us, source: "test"}
"""


def test_every_link_the_task_names_ships_with_a_source_per_field():
    assert set(SHIPPED) <= set(shipped_interconnect_paths())
    for link in list_interconnects():
        assert link.name == shipped_interconnect_paths()[link.name].stem
        assert link.bandwidth_bytes_per_s > 0 and link.latency_s > 0
        assert all(src.strip() for src in link.sources().values()), link.name


@pytest.mark.parametrize("name,peak", [
    ("NVLink3", 600 * GB / 2),           # 600 GB/s total, both directions
    ("NVLink4", 900 * GB / 2),
    ("NVLink5", 1800 * GB / 2),
    ("IB-HDR", 200e9 / 8),               # 200 Gb/s per port
    ("IB-NDR", 400e9 / 8),
    ("RoCE-100GbE", 100e9 / 8),
    ("RoCE-400GbE", 400e9 / 8),
])
def test_peak_bandwidths_follow_the_datasheet_figures(name, peak):
    assert load_interconnect(name).fields["bandwidth_bytes_per_s"].value_si == pytest.approx(peak)


@pytest.mark.parametrize("name,gt_per_s", [("PCIe4-x16", 16e9), ("PCIe5-x16", 32e9)])
def test_pcie_bandwidth_is_lanes_times_rate_after_128b130b_encoding(name, gt_per_s):
    per_direction = 16 * gt_per_s * 128 / 130 / 8
    assert load_interconnect(name).bandwidth_bytes_per_s == pytest.approx(per_direction, rel=2e-3)


def test_latency_is_nccls_ring_simple_base_plus_hardware_latency():
    base = 8.4e-6  # NCCL tuning.cc baseLat Ring/Simple; hwLat Ring/Simple: NVLink 3.4, PCI 5.7, NET 9.6 us
    for name, hw_lat in (("NVLink4", 3.4e-6), ("PCIe4-x16", 5.7e-6), ("IB-NDR", 9.6e-6)):
        assert load_interconnect(name).latency_s == pytest.approx(base + hw_lat)


def test_achievable_fraction_scales_the_peak_and_transfer_time_adds_latency():
    a100 = load_interconnect("nvlink3")  # names are case-insensitive
    assert a100.bandwidth_bytes_per_s == pytest.approx(300 * GB * 235 / 300, rel=1e-3)
    ndr = load_interconnect("IB-NDR")
    assert ndr.transfer_s(50 * GB) == pytest.approx(1.0 + 18e-6)
    assert ndr.transfer_s(0) == 0.0


def _write(tmp_path, text):
    path = tmp_path / "link.yaml"
    path.write_text(text)
    return path


def test_a_valid_file_loads_by_path(tmp_path):
    link = load_interconnect(str(_write(tmp_path, VALID)))
    assert (link.name, link.bandwidth_bytes_per_s, link.latency_s) == ("Test-Link", 100 * GB, 2e-6)


@pytest.mark.parametrize("edit,words", [
    (lambda t: t + "jitter_s: {value: 1, unit: us, source: x}\n", ["unknown field 'jitter_s'", "allowed"]),
    (lambda t: t.replace("latency_s: {value: 2, unit: us, source: \"test\"}\n", ""), ["missing", "latency_s"]),
    (lambda t: t.replace("value: 100", "value: 0"), ["bandwidth_bytes_per_s.value", "positive"]),
    (lambda t: t.replace("value: 100", "value: -3"), ["bandwidth_bytes_per_s.value", "positive"]),
    (lambda t: t.replace("unit: GB/s", "unit: GB"), ["bandwidth_bytes_per_s.unit", "B/s"]),
    (lambda t: t.replace(', source: "test"}', "}", 1), ["bandwidth_bytes_per_s", "missing 'source'"]),
    (lambda t: t.replace("kind: interconnect", "kind: gpu"), ["kind must be 'interconnect'"]),
    (lambda t: t.replace("schema_version: 1", "schema_version: 2"), ["schema_version"]),
    (lambda t: t + "achievable_fraction: {value: 120, unit: '%', source: x}\n", ["achievable_fraction", "at most 1"]),
    (lambda t: t + "latency_s: {value: 3, unit: us, source: x}\n", ["duplicate key 'latency_s'"]),
    (lambda t: t + "  - [unclosed\n", ["invalid YAML"]),
])
def test_bad_files_are_refused_naming_file_and_field(tmp_path, edit, words):
    path = _write(tmp_path, edit(VALID))
    with pytest.raises(ProfileError) as err:
        load_interconnect_file(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message


def test_unknown_name_names_the_flag_and_the_choices():
    with pytest.raises(ProfileError, match=r"^--inter 'IB-XDR': no such interconnect; .*IB-NDR"):
        load_interconnect("IB-XDR", "--inter")
