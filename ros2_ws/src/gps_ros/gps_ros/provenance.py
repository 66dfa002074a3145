"""What produced a run: code version, library versions, thread settings, CPU.

A learning result follows small numerical differences (the thread count of the S-step, the CPU's
kernels) through the coupling of GPS's stages, so a figure must be traceable to what produced it.
Each session of a run (its start and every resume, which may run on another machine) appends one
record to the run's ``environment.json`` (:meth:`gps_ros.experiment.Experiment.record_environment`),
and ``gps-ros eval`` prints the training's record beside the score with its own.

What is bit-reproducible: the same code, libraries, machine and thread settings give identical
runs (every random draw is seeded by run seed, iteration, condition and trial).  Another thread
count or CPU gives a run from the same distribution, not the same bits.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Dict, Optional

#: the libraries whose versions change a run's numbers
LIBRARIES = ("gps_ros", "numpy", "scipy", "torch", "pybullet", "pin", "gpytorch")
#: the environment variables that set BLAS / OpenMP thread counts
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: SIMD extensions whose presence changes which float kernels run
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", "asimd", "sve")


def code_version() -> str:
    """``git describe --always --dirty --tags`` of the checkout the package runs from, else the
    installed package's version (``gps_ros 0.1.0``)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "describe", "--always", "--dirty", "--tags"],
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return f"git {out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return f"gps_ros {_version('gps_ros') or 'unknown'}"


def _version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu() -> Dict:
    """CPU model, logical cores and the SIMD flags present (Linux /proc/cpuinfo; else the
    platform's processor string)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model") and model in ("", platform.machine()):
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "logical_cores": os.cpu_count(),
            "simd": [f for f in SIMD_FLAGS if f in flags]}


def threads() -> Dict:
    """torch's intra-op threads (where torch is loaded), the thread variables set, and the BLAS
    libraries' thread counts (where threadpoolctl is installed)."""
    out: Dict = {v: os.environ[v] for v in THREAD_VARIABLES if v in os.environ}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = torch.get_num_threads()
    try:
        from threadpoolctl import threadpool_info

        out["blas"] = [{"library": i.get("internal_api"), "threads": i.get("num_threads")}
                       for i in threadpool_info() if i.get("user_api") == "blas"]
    except ImportError:
        pass
    return out


def environment() -> Dict:
    """One record of this process: code, libraries, Python, platform, CPU, threads, time."""
    return {"code": code_version(),
            "libraries": {n: v for n in LIBRARIES if (v := _version(n)) is not None},
            "python": platform.python_version(), "platform": platform.platform(),
            "cpu": cpu(), "threads": threads(),
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def summary(record: Dict) -> str:
    """One line of a record: code, torch / numpy / pybullet, threads, CPU."""
    lib = record.get("libraries", {})
    th = record.get("threads", {})
    parts = [record.get("code", "?")]
    parts += [f"{n} {lib[n]}" for n in ("torch", "numpy", "pybullet") if n in lib]
    t = [f"torch {th['torch']}"] if "torch" in th else []
    t += [f"{k}={v}" for k, v in th.items() if k in THREAD_VARIABLES]
    parts.append("threads: " + (", ".join(t) if t else "defaults"))
    c = record.get("cpu", {})
    parts.append(f"{c.get('model', '?')} x{c.get('logical_cores', '?')} "
                 f"[{' '.join(c.get('simd', []))}]")
    return "; ".join(parts)
