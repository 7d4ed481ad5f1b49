"""Profile fields of ``kind: optical4f`` (free-space 4f optical convolution): field -> (unit
family, kinds that require it, kinds that may have it). Read by attnsim.hwmodels.schema.

A 4f system: an input modulator (SLM or DMD) shows the data, a lens Fourier-transforms it, a
Fourier-plane filter modulator multiplies it by the kernel's transform, a second lens transforms
back and a camera detects the correlation. The cost model is attnsim.hwmodels.optical; the
cross-field checks (detector at least as large as the modulator, whole pixel counts) are
``attnsim.hwmodels.optical.check_optical_profile``.
"""
from __future__ import annotations

_OPTICAL = {"optical4f"}


def _required(family: str) -> tuple[str, set[str], set[str]]:
    return (family, _OPTICAL, _OPTICAL)


OPTICAL_FIELDS: dict[str, tuple[str, set[str], set[str]]] = {
    # Input modulator (encode): pixels, frame rate at its native bit depth, bit depth.
    "modulator_width_pixels": _required("pixels"),
    "modulator_height_pixels": _required("pixels"),
    "modulator_frame_rate_hz": _required("Hz"),
    "modulator_bit_depth": _required("bits"),
    # Fourier-plane filter modulator (load weights / filters).
    "filter_width_pixels": _required("pixels"),
    "filter_height_pixels": _required("pixels"),
    "filter_frame_rate_hz": _required("Hz"),
    "filter_bit_depth": _required("bits"),
    # Digital-to-analog conversion of every modulator pixel written.
    "dac_energy_per_sample_j": _required("J"),
    # Propagate: time of flight through the 4f path (4 focal lengths); light source power.
    "propagation_delay_s": _required("s"),
    "source_power_w": _required("W"),
    # Detect: camera / photodiode array; exposure per frame, full-frame readout at the frame rate.
    "detector_width_pixels": _required("pixels"),
    "detector_height_pixels": _required("pixels"),
    "detector_frame_rate_hz": _required("Hz"),
    "detector_bit_depth": _required("bits"),
    "detector_exposure_s": _required("s"),
    # Convert: analog-to-digital conversion of every detector pixel read.
    "adc_energy_per_sample_j": _required("J"),
}
