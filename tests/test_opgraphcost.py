"""Work model of the naive multi-op runners (hwmodels.opgraphcost): features equal counts derived
by hand from each runner's torch ops; --kernel prices multi-op patterns with it; calibrate fits
it from measurements unchanged. Torch-free."""
import json

import pytest

from attnsim import Workload
from attnsim.cli import main
from attnsim.hwmodels import load_profile
from attnsim.hwmodels.calibration import write_overlay
from attnsim.hwmodels.kernelcost import FEATURES, default_coefficients, features, kernel_time_s
from attnsim.patterns import Agent, Linear, LowRank, MoBA
from attnsim.validate.calibrate import calibrate
from attnsim.validate.store import Measurement, Store
from attnsim.validate.suites import suite

HW = load_profile("EPYC-2vCPU")  # 2 threads: work terms are halved; 32 MiB L3: small ops stream from cache


def expect(call=1, tiles=0, matmul=0, narrow=0, exp=0, masked=0, compulsory=0, streamed=0):
    """Per-call totals (before the 1/2 thread share; call and tiles are not shared)."""
    out = dict.fromkeys(FEATURES, 0.0)
    out.update(call=call, tiles=tiles, matmul_flops=matmul / 2, narrow_matmul_flops=narrow / 2, exp=exp / 2,
               masked_slots=masked / 2, bytes=compulsory / 2, stream_cache_bytes=streamed / 2)
    return out


def test_causal_linear_by_hand():
    # B=1, H=2, N=8, chunk C=4 (2 chunks), D=2, Dv=3, fp32. Every product has a dim < 16: narrow.
    wl = Workload.sequence(8, heads=2, head_dim=2, v_head_dim=3, dtype="fp32")
    q = k = 2 * 8 * 2 * 4                # 128 B each
    v = o = 2 * 8 * 3 * 4                # 192 B each
    s = 2 * 2 * 4 * 4 * 4                # C x C scores of 2 heads x 2 chunks: 256 B
    kv = 2 * 2 * 2 * 3 * 4               # per-chunk D x Dv states: 96 B; the prefix sum moves 1 chunk each way
    streamed = (q + k                    # phi(q), phi(k) written
                + 2 * q + s              # intra_qk reads both, writes S
                + s + 4 * 4 + s          # masked_fill_ reads S and the C x C bool mask, writes S
                + s + o                  # S V (V's first read is compulsory), writes O_intra
                + k + v + kv             # phi(K)^T V per chunk: V read again
                + 2 * (kv // 2)          # cumsum reads and writes the first chunk's states
                + o + q + kv)            # O_intra + phi(Q) H: reads O_intra, phi(Q), H (O's write compulsory)
    flops = (2 * 2 * 2 * 4 * 4 * 2       # intra_qk: 2 heads x 2 chunks x C x C x D
             + 2 * 2 * 2 * 4 * 4 * 3     # intra_pv: ... x Dv
             + 2 * 2 * 8 * 2 * 3 * 2)    # state_update and inter: 2 heads x N x D x Dv each
    got = features(wl, Linear(chunk=4, causal=True), "naive-linear", HW)
    assert got == expect(tiles=8, narrow=flops, masked=2 * 2 * 4 * 4, compulsory=q + k + v + o, streamed=streamed)


def test_linear_decode_by_hand():
    # one new token, B=1, H=2, D=2, Dv=3, a 5-token cache: the fp32 state is read and written once
    wl = Workload.sequence(5, heads=2, head_dim=2, v_head_dim=3, dtype="fp32", phase="decode")
    q = k = 2 * 2 * 4
    v = o = 2 * 3 * 4
    state = 2 * 2 * 3 * 4
    streamed = q + k + k + (q + state)   # phi(q), phi(k) written; phi(k) read by the update; readout re-reads H
    got = features(wl, Linear(), "naive-linear", HW)
    assert got == expect(tiles=4, narrow=2 * (2 * 2 * 2 * 3), compulsory=q + k + v + o + 2 * state,
                         streamed=streamed)


def test_wide_products_count_as_matmul_flops():
    # non-causal, D = Dv = 64, N = 256: K^T V is (64 x 256) @ (256 x 64), the readout (256 x 64) @ (64 x 64)
    wl = Workload.sequence(256, heads=1, head_dim=64, dtype="fp32")
    got = features(wl, Linear(causal=False), "naive-linear", HW)
    assert got["matmul_flops"] == 2 * (2 * 256 * 64 * 64) / 2 and got["narrow_matmul_flops"] == 0


def test_lowrank_by_hand():
    # B=1, H=2, N=M=8, rank 4, D=Dv=2, fp32: one E, F for both heads, read by each head's product
    wl = Workload.sequence(8, heads=2, head_dim=2, dtype="fp32")
    qkv = 2 * 8 * 2 * 4                  # Q, K, V, O: 128 B each
    e = 4 * 8 * 4                        # E, F: 128 B each
    proj, scores = 2 * 4 * 2 * 4, 2 * 8 * 4 * 4
    streamed = (2 * (e + proj)           # the second head's read of E (F); K' (V') written
                + proj + scores          # Q K'^T: reads K', writes S
                + 2 * scores             # softmax
                + scores + proj)         # P V'
    flops = 2 * (2 * 2 * 4 * 8 * 2) + 2 * (2 * 2 * 8 * 4 * 2)
    got = features(wl, LowRank(4), "naive-lowrank", HW)
    assert got == expect(tiles=5, narrow=flops, exp=2 * 8 * 4, compulsory=4 * qkv + 2 * e, streamed=streamed)


def test_agent_by_hand():
    # B=1, H=1, N=8 queries, M=6 keys, A=2 agents, D=Dv=2, fp32
    wl = Workload.sequence(8, kv_len=6, heads=1, head_dim=2, dtype="fp32")
    q = o = 8 * 2 * 4
    k = v = 6 * 2 * 4
    agents, agg, bcast = 2 * 2 * 4, 2 * 6 * 4, 8 * 2 * 4
    streamed = (agents                   # pool
                + agents + agg           # A K^T
                + 2 * agg                # softmax
                + agg + agents           # P V -> V_A
                + q + agents + bcast     # Q A^T: Q read a second time
                + 2 * bcast              # softmax
                + bcast + agents)        # P V_A
    flops = 2 * 2 * 6 * 2 * 2 + 2 * 8 * 2 * 2 * 2
    got = features(wl, Agent(2), "naive-agent", HW)
    assert got == expect(tiles=7, narrow=flops, exp=2 * 6 + 8 * 2, compulsory=q + k + v + o, streamed=streamed)


def test_causal_moba_by_hand():
    # B=1, H=1, N=M=8, blocks of 2 (4 blocks), top-2, D=Dv=2, fp32: every query gathers 2 blocks (4 slots)
    wl = Workload.sequence(8, heads=1, head_dim=2, dtype="fp32")
    q = v = 8 * 2 * 4                # Q, K, V and O: 64 B each
    pooled, gate, ids, slots = 4 * 2 * 4, 8 * 4 * 4, 8 * 2 * 8, 8 * 4
    gathered = slots * 2 * 4             # 4 slots x D per query: 256 B of K (and of V)
    streamed = (pooled                   # mean-pool K
                + pooled + gate          # Q x pooled: reads pooled, writes the gate
                + 2 * gate + 8 * 4 * 4   # += bias (N x blocks fp32)
                + gate + 8 * 2 * 4 + ids  # topk: values and int64 ids
                + ids + 8 + ids          # + per-head row offsets
                + ids + 2 * gathered     # gather K rows: reads ids and rows, writes K_sel
                + q + gathered + slots * 4  # scores: Q read again
                + 2 * slots * 4 + slots  # masked_fill_ with the (N x slots) bool mask
                + 2 * slots * 4          # softmax
                + ids + (gathered - v) + gathered  # gather V rows (V's first read compulsory)
                + slots * 4 + gathered)  # P V_sel (O's write compulsory)
    flops = 2 * 8 * 4 * 2 + 2 * (2 * 8 * 4 * 2)  # every (query, block) gate score; 4 slots x (D + Dv)
    got = features(wl, MoBA(2, 2, causal=True), "naive-moba", HW)
    assert got == expect(tiles=11, narrow=flops, exp=slots, masked=8 * 4 + slots, compulsory=4 * q,
                         streamed=streamed)


def test_ops_beyond_half_the_llc_stream_from_dram():
    # N = M = 32768, D = Dv = 64, 256 agents: pooling moves 8 MiB of Q + 64 KiB of agents (fits in
    # half the 32 MiB L3); every score op moves a 32 MiB score matrix (does not)
    wl = Workload.sequence(32768, heads=1, head_dim=64, dtype="fp32")
    got = features(wl, Agent(256), "naive-agent", HW)
    assert got["stream_cache_bytes"] == 256 * 64 * 4 / 2 and got["stream_dram_bytes"] > 32 * 2**20


def test_refusals_name_the_flag():
    seq = Workload.sequence(64, heads=2, dtype="fp32")
    with pytest.raises(Exception, match="--kernel naive-moba prices --pattern moba, not linear"):
        features(seq, Linear(), "naive-moba", HW)
    with pytest.raises(Exception, match="--chunk must divide"):
        features(Workload.sequence(60, dtype="fp32"), Linear(chunk=16), "naive-linear", HW)
    with pytest.raises(Exception, match="forward pass only"):
        features(Workload.sequence(64, dtype="fp32", phase="bwd"), LowRank(8), "naive-lowrank", HW)
    with pytest.raises(Exception, match="GQA"):
        features(Workload.sequence(64, heads=4, kv_heads=2, dtype="fp32"), Agent(8), "naive-agent", HW)


def _predict(capsys, *args):
    code = main(["predict", "--hw", "EPYC-2vCPU", "--seq", "1024", "--dtype", "fp32", "--json", *args])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else out.err)


def test_predict_prices_multiop_patterns_with_their_kernel(capsys, monkeypatch, tmp_path):
    # without an overlay (the shipped one calibrates naive-linear): the profile's peaks
    monkeypatch.setattr("attnsim.hwmodels.calibration.overlay_path", lambda profile: tmp_path / "absent.yaml")
    code, got = _predict(capsys, "--pattern", "linear", "--chunk", "64", "--kernel", "naive-linear")
    assert code == 0
    feats = features(Workload.sequence(1024, dtype="fp32"), Linear(chunk=64), "naive-linear", HW)
    assert got["time_s"]["predicted"] == pytest.approx(kernel_time_s(feats, default_coefficients(HW, "fp32")))
    assert any("naive-linear work model, uncalibrated" in a for a in got["assumptions"])
    code, err = _predict(capsys, "--pattern", "lowrank", "--rank", "64", "--kernel", "flex")
    assert code == 2 and "use --kernel naive-lowrank" in err
    code, err = _predict(capsys, "--pattern", "linear", "--kernel", "naive-moba")
    assert code == 2 and "prices --pattern moba, not linear" in err
    code, err = _predict(capsys, "--pattern", "causal", "--kernel", "cudnn")
    assert code == 2 and "naive-agent" in err  # the list of kernels names the naive ones


def test_default_kernel_fits_the_pattern(tmp_path, monkeypatch, capsys):
    """The shipped overlay calibrates flex: multi-op patterns must not be priced with it (their
    usual kernel is the naive runner); an overlay with naive-moba prices MoBA without --kernel."""
    code, got = _predict(capsys, "--pattern", "moba", "--block-size", "128", "--top-k", "2", "--causal")
    assert code == 0 and not any("flex work model" in a for a in got["assumptions"])
    coeffs = {**default_coefficients(HW, "fp32"), "tiles": 1e-5}
    out = tmp_path / "EPYC-2vCPU.yaml"
    write_overlay(HW, {"naive-moba": {"coefficients": coeffs, "train": {"n": 9, "mape": 0.01},
                                      "test": {"n": 4, "mape": 0.02, "max_err": 0.03}}}, {"db": "x"}, out)
    monkeypatch.setattr("attnsim.hwmodels.calibration.overlay_path",
                        lambda profile: out if profile.name == HW.name else tmp_path / "absent.yaml")
    code, got = _predict(capsys, "--pattern", "moba", "--block-size", "128", "--top-k", "2", "--causal")
    feats = features(Workload.sequence(1024, dtype="fp32"), MoBA(128, 2, causal=True), "naive-moba", HW)
    assert code == 0 and got["time_s"]["predicted"] == pytest.approx(kernel_time_s(feats, coeffs))


def test_calibrate_fits_the_naive_kernels_from_measurements(tmp_path):
    """Synthetic 'measurements' of the multiop suite under known coefficients: calibrate recovers
    every naive kernel's times exactly (same features, same fit as the fused kernels)."""
    base = default_coefficients(HW, "fp32")
    truth = {**base, "tiles": 8e-6, "narrow_matmul_flops": 3 * base["narrow_matmul_flops"],
             "stream_cache_bytes": 2e-11, "masked_slots": 1e-9}
    with Store(tmp_path / "s.sqlite") as s:
        run = s.start_run("multiop", "cpu", {"cpu_model": "synthetic", "torch": None, "torch_threads": 2})
        for cfg in suite("multiop"):
            wl, p = cfg.build()
            kernel = cfg.runners[0]
            if not kernel.startswith("naive-"):
                continue
            t = kernel_time_s(features(wl, p, kernel, HW), truth)
            s.add(run, Measurement(cfg.name, cfg.family, kernel, p.describe(),
                                   json.dumps({"pattern": cfg.pattern, "workload": cfg.workload}),
                                   json.dumps(cfg.workload, sort_keys=True), HW.name, t, 0.0, t, 5))
        kernels, _ = calibrate(s, HW)
    assert set(kernels) == {"naive-linear", "naive-lowrank", "naive-agent", "naive-moba"}
    # one fit for the four (the same torch ops on the same machine), errors reported per kernel
    assert len({tuple(k["coefficients"].values()) for k in kernels.values()}) == 1
    assert all(k["fitted_with"] == sorted(kernels) for k in kernels.values())
    for k in kernels.values():  # held out: features collinear on the train rows may trade off a little
        assert k["train"]["mape"] < 1e-6 and k["test"]["mape"] < 1e-3

