"""The environment a measurement was taken in: device, software versions, threads, clocks."""
from __future__ import annotations

import os
import platform
import subprocess


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_smi(query: str) -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def environment(device: str) -> dict:
    """What a reader needs to reproduce a measurement (torch imported: validation only)."""
    import torch

    env = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
           "platform": platform.platform(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads()}
    try:
        import natten
        env["natten"] = natten.__version__
    except ImportError:
        env["natten"] = None
    if device == "cuda":
        env.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                   capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                   driver=_nvidia_smi("driver_version"),
                   clocks_mhz=_nvidia_smi("clocks.sm,clocks.mem"),
                   power_limit_w=_nvidia_smi("power.limit"))
    return env
