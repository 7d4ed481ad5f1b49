"""``attnsim tiles``: counts equal count_tiles, --png writes a PNG, bad input is one line, exit 2."""
import json

import pytest

from attnsim import Workload
from attnsim.cli import main
from attnsim.patterns import Neighborhood, Sliding
from attnsim.tiles import Tiling, TilingRequest, count_tiles

GNA = ["--pattern", "neighborhood", "--tokens", "30x48x80", "--window", "18x24x24", "--stride", "16x8x8",
       "--q-tile", "2x8x8", "--kv-tile", "2x8x8", "--policy", "range"]
SWA = ["--pattern", "sliding", "--seq", "8192", "--window", "1000", "--causal",
       "--q-tile", "128", "--kv-tile", "64", "--policy", "block-sparse"]


def run(capsys, *argv):
    code = main(["tiles", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv,wl,pattern,tiling", [
    (GNA, Workload.on_grid((30, 48, 80)), Neighborhood((18, 24, 24), stride=(16, 8, 8)),
     Tiling((2, 8, 8), (2, 8, 8), "range")),
    (SWA, Workload.sequence(8192), Sliding(1000, causal=True), Tiling((128,), (64,), "block-sparse")),
])
def test_json_counts_equal_count_tiles(capsys, argv, wl, pattern, tiling):
    code, out, _ = run(capsys, *argv, "--json")
    assert code == 0
    d = json.loads(out)
    expected = count_tiles(wl, pattern, tiling).to_dict()
    assert {k: d[k] for k in expected} == expected
    assert d["pattern"] == pattern.describe() and d["png"] is None
    assert len(d["dims"]) == len(tiling.q_tile)


def test_without_tile_flags_a_grid_gets_flat_blocks_and_draws(capsys, tmp_path):
    # No device is named, so the default is FlexAttention's 1D blocks of the flattened grid.
    png = tmp_path / "flat.png"
    code, out, _ = run(capsys, "--pattern", "neighborhood", "--tokens", "8x12x16", "--window", "3x5x5",
                       "--png", str(png), "--json")
    assert code == 0
    d = json.loads(out)
    wl, pattern = Workload.on_grid((8, 12, 16)), Neighborhood((3, 5, 5))
    expected = count_tiles(wl, pattern, TilingRequest().resolve(wl, pattern)).to_dict()
    assert {k: d[k] for k in expected} == expected and d["flattened"] and len(d["dims"]) == 1
    assert png.read_bytes().startswith(b"\x89PNG")


def test_json_reports_the_per_dimension_grid(capsys):
    code, out, _ = run(capsys, "--pattern", "neighborhood", "--tokens", "30x48", "--window", "7x9",
                       "--dilation", "2x3", "--q-tile", "8x8", "--policy", "range", "--json")
    assert code == 0
    assert json.loads(out)["dims"] == [
        {"q_extent": 30, "kv_extent": 30, "groups": 2, "q_tiles_per_group": 2, "kv_tiles_per_group": 2},
        {"q_extent": 48, "kv_extent": 48, "groups": 3, "q_tiles_per_group": 2, "kv_tiles_per_group": 2}]


@pytest.mark.parametrize("argv", [GNA, SWA], ids=["3d", "1d"])
def test_png_is_written(capsys, tmp_path, argv):
    png = tmp_path / "map.png"
    code, out, _ = run(capsys, *argv, "--png", str(png), "--json")
    assert code == 0 and json.loads(out)["png"] == str(png)
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [p.name for p in tmp_path.iterdir()] == ["map.png"]


def test_table_for_people(capsys):
    code, out, _ = run(capsys, *GNA)
    assert code == 0
    assert "72,900" in out and "range policy" in out and "Tile grid per dimension" in out


@pytest.mark.parametrize("extra,field", [
    (["--png", "{tmp}/missing/map.png"], "does not exist"),
    (["--png", "{tmp}"], "cannot write"),  # a directory, not a file
    (["--q-tile", "16", "--kv-tile", "16"], "too large"),
    (["--q-tile", "4x4"], "q_tile"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, extra, field):
    argv = ["--pattern", "causal", "--seq", "100000", "--q-tile", "128", "--png", str(tmp_path / "map.png")]
    code, out, err = run(capsys, *argv, *(a.format(tmp=tmp_path) for a in extra))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnsim: error:") and field in lines[0]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("hw,q_tile,policy", [("H100-SXM", "4x4x8", "range"), ("B200", "8x4x8", "range"),
                                              ("A100-SXM4-80GB", "4x4x4", "range"), ("MI300X", "128", "block-sparse")])
def test_hw_supplies_the_fused_kernel_tiles(capsys, hw, q_tile, policy):
    # NATTEN's default forward tiles per architecture (profile section natten_tiles); a device
    # without NATTEN kernels runs FlexAttention blocks of the flattened grid.
    code, out, _ = run(capsys, "--hw", hw, "--pattern", "neighborhood", "--tokens", "30x48x80",
                       "--window", "18x24x24", "--json")
    assert code == 0
    d = json.loads(out)
    assert (d["q_tile"], d["policy"]) == (q_tile, policy)
