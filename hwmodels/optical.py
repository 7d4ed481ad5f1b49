"""Free-space 4f optical convolution (``kind: optical4f``): attention priced as 4f frames.

A 4f system computes the 2D correlation of the input modulator's frame with the kernel whose
Fourier transform the filter modulator shows, in one time of flight. Everything around that is
electronic and frame-clocked, which is where the time goes (Meech, Tsoutsouras and
Stanley-Marbell, "The Data Conversion Bottleneck in Analog Computing Accelerators", arXiv
2308.01719: on a 4f Fourier/convolution accelerator they built, data conversion limits the
speedup). Each frame is priced as named stages, in sequence (a synchronously triggered system):

- ``encode``: write the input modulator (DAC per pixel), one modulator frame period per load;
- ``load_filter``: write the Fourier-plane filter (the kernel), one filter frame period per load;
- ``propagate``: time of flight through the 4f path (~ns);
- ``detect``: camera exposure (the light source is on only then);
- ``convert``: readout through the camera's ADCs of the rows a frame fills (a full frame takes
  one detector frame period);
- ``host``: the digital remainder on the host: exponentials and the other softmax operations,
  plus reading every detected sample and recombining bit slices and sign passes.

What runs optically follows ConvShareViT (Ibadulla, Chen, Reyes-Aldasoro, arXiv 2504.11517v1,
abstract): the linear layers of the attention block become shared depthwise convolutions
(weights in the filter plane), and the model "can be employed using only the convolution
operation", so Q·Kᵀ and P·V run as correlations too; softmax stays digital (exp is not a linear
optical operation). The layout of Q·Kᵀ and P·V in the aperture is inferred (the paper's body
was not readable here): see :func:`cell_layout`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from attnsim.errors import PricingError, ProfileError

from .schema_optical import OPTICAL_FIELDS
from .targets import TargetTime

# Operands (activations and weights) are encoded at 8 bits: assumption, the usual precision of
# analog optical accelerators; a modulator with fewer bits shows them as bit slices.
OPERAND_BITS = 8
# Pseudo-negativity: a signed operand is split into its positive and negative parts, one pass
# each, and the host subtracts the results (the ConvShareViT authors' 4f simulator does this:
# github.com/riadibadulla/simulator PseudoNegativity.py). Q and K are signed (4 passes); P >= 0
# after softmax, V signed (2); a signed weight kernel on signed activations (4).
SIGN_PASSES = {"qk": 4, "pv": 2, "conv": 4}
STAGES = ("encode", "load_filter", "propagate", "detect", "convert", "host")
INFERENCE_PHASES = ("fwd", "decode")
_INTEGER_FIELDS = tuple(f for f, (family, _, _) in OPTICAL_FIELDS.items() if family in ("pixels", "bits"))

ATTENTION_NOTES = (
    "optical4f: Q·Kᵀ and P·V run as 4f correlations (ConvShareViT, arXiv 2504.11517: the model uses "
    "only convolutions); softmax (exp, max, sums, normalisation) runs on the digital host",
    "optical4f layout (inferred): head-dim maps tiled as ceil(sqrt(d))^2-pixel cells; Q·Kᵀ puts a "
    "column of query maps on the input and a row of key maps in the filter, one score per cell of the "
    "detector (rows x cols per frame); P·V puts value maps on the input and weighted deltas in the "
    "filter, each output row spanning 2c-1 cells (rows x ceil(cols/2) (query, key) pairs per frame)",
    "optical4f: dot products of every (batch, head) pack densely into cell rows and frames "
    "(optimistic); both operands are activations, so the filter is rewritten every frame",
)
MODEL_NOTES = (
    f"optical4f: operands encoded at {OPERAND_BITS} bits; a modulator with fewer bits shows bit "
    "slices, each its own frame (time-integrated slices do not add linearly in detected intensity), "
    "recombined on the host",
    "optical4f: signed operands by pseudo-negativity (positive and negative parts, one pass each)",
    "optical4f: stages in sequence per frame (load input, load filter, propagate, expose, read out); "
    "the camera reads the rows a frame fills (full width; readout time scales with rows), every pixel "
    "read through the ADC and into host memory",
    "optical4f: detector precision (bits per sample vs. the dynamic range of a d-term dot product) "
    "limits accuracy; only time and energy are modelled",
    "optical4f energy: DAC per modulator pixel written, light source while exposing, ADC per "
    "detector pixel read, host; modulator, camera and cooling static power not included",
)


@dataclass(frozen=True)
class FrameJob:
    """One kind of 4f work: its frames (bit slices and sign passes included), the modulator
    writes they need and the detector rows they read out."""

    name: str
    frames: int        # each: load, propagate, expose, read out
    input_loads: int   # input-modulator frames written
    filter_loads: int  # filter-modulator frames written
    rows_read: int     # detector pixel rows read (ROI readout of the rows a frame fills)


def _int(hw, field: str) -> int:
    return int(hw.get(field))


def tile_side(map_px: int) -> int:
    """Side of the square cell a map of ``map_px`` values is laid out in: ceil(sqrt(map_px))."""
    return math.isqrt(map_px - 1) + 1


def bit_slices(hw, plane: str) -> int:
    """Frames one ``OPERAND_BITS``-bit operand takes on the ``plane`` (modulator or filter)."""
    return -(-OPERAND_BITS // _int(hw, f"{plane}_bit_depth"))


def _cells(hw, width_px: int, height_px: int, map_px: int) -> tuple[int, int]:
    side = tile_side(map_px)
    cols, rows = width_px // side, height_px // side
    if cols == 0 or rows == 0:
        raise PricingError(f"{hw.name}: a map of {map_px} values needs a {side}x{side}-pixel cell, but the "
                           f"aperture is {width_px}x{height_px} pixels; use a profile with a larger modulator")
    return cols, rows


def _aperture(hw) -> tuple[int, int]:
    """Pixels both modulators cover (the filter must hold the second operand's maps)."""
    return (min(_int(hw, "modulator_width_pixels"), _int(hw, "filter_width_pixels")),
            min(_int(hw, "modulator_height_pixels"), _int(hw, "filter_height_pixels")))


def cell_layout(hw, op: str, dim: int) -> tuple[int, int, int]:
    """(dot products per cell row, cell rows per frame, cell side in pixels) for ``op`` ("qk"
    or "pv") on maps of ``dim`` values.

    Q·Kᵀ: query maps in a column of the input, key maps in a row of the filter; the correlation
    puts each (query, key) dot product in its own detector cell: cols per cell row. P·V: value
    maps in a row of the input, each query's probabilities as deltas in a filter row; a query's
    output row spans 2c - 1 cells for c keys (the other cells hold cross terms): ceil(cols / 2)
    (query, key) pairs per cell row."""
    cols, rows = _cells(hw, *_aperture(hw), dim)
    return (cols if op == "qk" else (cols + 1) // 2), rows, tile_side(dim)


def _packed_job(name: str, items: int, per_row: int, rows: int, side: int, passes: int) -> FrameJob:
    """``items`` outputs packed ``per_row`` to a cell row, ``rows`` cell rows to a frame; every
    frame repeated ``passes`` times (bit slices, sign parts), each writing both modulators."""
    cell_rows = -(-items // per_row)
    frames = -(-cell_rows // rows) * passes
    return FrameJob(name, frames, frames, frames, cell_rows * side * passes)


def attention_jobs(counts, hw) -> list[FrameJob]:
    """The frames of Q·Kᵀ and P·V for ``counts``: every matmul FLOP of the QK (PV) side is a
    multiply-add of a dot product of the QK (V) head dim, so any pattern or op graph maps.
    Dot products of every (batch, head) pack densely, and both operands are activations, so the
    filter is rewritten every frame."""
    check_optical_profile(hw)
    wl = counts.workload
    if wl.phase not in INFERENCE_PHASES:
        raise PricingError(f"optical4f prices inference only (phase fwd or decode), got phase {wl.phase}: "
                           "a 4f system has no backward pass; use --phase fwd")
    slices = bit_slices(hw, "modulator") * bit_slices(hw, "filter")
    jobs = []
    for op, flops, dim in (("qk", counts.flops.qk, wl.qk_head_dim), ("pv", counts.flops.pv, wl.v_head_dim)):
        dots = -(-flops // (2 * dim))
        jobs.append(_packed_job(op, dots, *cell_layout(hw, op, dim), slices * SIGN_PASSES[op]))
    return jobs


def shared_conv_job(name: str, maps: int, map_px: int, kernels: int, hw) -> FrameJob:
    """``kernels`` weight kernels, each applied to ``maps`` feature maps of ``map_px`` values:
    ConvShareViT's shared depthwise convolution (one kernel for every token's map, valid padding).
    The maps are tiled over the input modulator; each kernel's bit slices and sign parts are
    written to the filter once and every input frame runs under them."""
    check_optical_profile(hw)
    cols, rows = _cells(hw, _int(hw, "modulator_width_pixels"), _int(hw, "modulator_height_pixels"), map_px)
    filter_slices = bit_slices(hw, "filter")
    passes = bit_slices(hw, "modulator") * filter_slices * SIGN_PASSES["conv"]
    one = _packed_job(name, maps, cols, rows, tile_side(map_px), passes)
    return FrameJob(name, one.frames * kernels, one.input_loads * kernels, kernels * filter_slices * 2,
                    one.rows_read * kernels)


def _host_energy(hw, ops: int, nbytes: int, host_s: float) -> tuple[dict[str, float], str]:
    if "energy_per_vector_op_j" in hw.fields and "energy_per_dram_byte_j" in hw.fields:
        return ({"host": ops * hw.get("energy_per_vector_op_j") + nbytes * hw.get("energy_per_dram_byte_j")},
                "optical4f host energy from its per-operation energies")
    if "tdp_w" in hw.fields:
        return ({"host_board_power_bound": hw.get("tdp_w") * host_s},
                f"optical4f host energy = host board power {hw.get('tdp_w'):.0f} W x host time (upper bound)")
    return {}, "optical4f: no host energy (the profile has no tdp_w or per-operation energies)"


def price_jobs(jobs: list[FrameJob], host_exp: int, host_ops: int, hw, notes: tuple[str, ...] = ()) -> TargetTime:
    """Stage times and energies of ``jobs`` plus the host's digital work (``host_exp``
    exponentials and ``host_ops`` other vector operations besides reading the frames)."""
    check_optical_profile(hw)
    frames = sum(j.frames for j in jobs)
    inputs, filters = sum(j.input_loads for j in jobs), sum(j.filter_loads for j in jobs)
    rows_read = sum(j.rows_read for j in jobs)
    samples = rows_read * _int(hw, "detector_width_pixels")
    host_bytes = samples * -(-_int(hw, "detector_bit_depth") // 8)
    host_vector = host_ops + samples  # one operation per detected sample: recombine slices and signs
    host_s = (hw.get("launch_overhead_s") + host_exp / hw.get("exp_per_s")
              + host_vector / hw.get("vector_flops_per_s") + host_bytes / hw.get("memory_bw_bytes_per_s"))
    exposure_s = frames * hw.get("detector_exposure_s")
    breakdown = {
        "encode": inputs / hw.get("modulator_frame_rate_hz"),
        "load_filter": filters / hw.get("filter_frame_rate_hz"),
        "propagate": frames * hw.get("propagation_delay_s"),
        "detect": exposure_s,
        # rolling readout: a frame's readout time scales with the rows read (full frame: 1 / rate)
        "convert": rows_read / (_int(hw, "detector_height_pixels") * hw.get("detector_frame_rate_hz")),
        "host": host_s,
    }
    dac = hw.get("dac_energy_per_sample_j")
    host_energy, host_note = _host_energy(hw, host_exp + host_vector, host_bytes, host_s)
    energy = {
        "encode_dac": inputs * _int(hw, "modulator_width_pixels") * _int(hw, "modulator_height_pixels") * dac,
        "filter_dac": filters * _int(hw, "filter_width_pixels") * _int(hw, "filter_height_pixels") * dac,
        "light_source": hw.get("source_power_w") * exposure_s,
        "adc": samples * hw.get("adc_energy_per_sample_j"),
        **host_energy,
    }
    counts_note = (f"optical4f: {frames:,} frames ({', '.join(f'{j.name} {j.frames:,}' for j in jobs)}), "
                   f"{samples:,} detector samples")
    return TargetTime(breakdown, energy, (*notes, *MODEL_NOTES, counts_note, host_note),
                      max(breakdown, key=breakdown.get))


def price_optical(counts, hw) -> TargetTime:
    """Attention ``counts`` on a 4f system: Q·Kᵀ and P·V as correlations, softmax on the host."""
    return price_jobs(attention_jobs(counts, hw), counts.flops.exp, counts.flops.softmax_other, hw,
                      ATTENTION_NOTES)


def check_optical_profile(profile) -> None:
    """Cross-field checks of an optical4f profile (the loader checks each field alone): every
    field present and positive, whole pixel counts and bit depths, a detector covering the input
    frame, an exposure that fits in a detector frame. Raises ProfileError naming the field."""
    if profile.kind != "optical4f":
        return
    where = profile.path
    for field, (family, _, _) in OPTICAL_FIELDS.items():
        if field not in profile.fields:
            raise ProfileError(f"{where}: missing required field {field!r} for kind optical4f "
                               f"(a {{value, unit, source}} in {family})")
        if not profile.get(field) > 0:
            raise ProfileError(f"{where}: {field}.value: must be positive, got {profile.fields[field].value}")
    for field in _INTEGER_FIELDS:
        q = profile.fields[field]
        if q.value_si != int(q.value_si):
            raise ProfileError(f"{where}: {field}.value: must be a whole number of {OPTICAL_FIELDS[field][0]}, "
                               f"got {q.value} {q.unit}")
    for dim in ("width", "height"):
        det, mod = profile.get(f"detector_{dim}_pixels"), profile.get(f"modulator_{dim}_pixels")
        if det < mod:
            raise ProfileError(f"{where}: detector_{dim}_pixels ({det:g}) is smaller than modulator_{dim}_pixels "
                               f"({mod:g}): the camera must cover the whole input frame; use a larger detector "
                               "or crop the modulator to it")
    frame_s = 1 / profile.get("detector_frame_rate_hz")
    if profile.get("detector_exposure_s") > frame_s:
        raise ProfileError(f"{where}: detector_exposure_s ({profile.get('detector_exposure_s'):g} s) is longer than "
                           f"one detector frame (1/detector_frame_rate_hz = {frame_s:g} s): shorten the exposure "
                           "or lower the frame rate")
