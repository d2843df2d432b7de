"""The environment a profiling record was measured in (spec section 3: provenance).

Every record carries: CPU model, its reference frequency [Hz] (used to turn seconds into
cycles), the thread count, library versions, the date and the 1-minute load average (other
processes share the CPU; a high load inflates times).
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import glob
import os
import platform
import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "blas_threads",
    "cpu_frequency_hz",
    "cpu_model",
    "environment",
    "limit_blas_threads",
    "load_avg_1m",
    "thread_count",
    "tune_allocator",
]

_SYSFS_CPU0 = Path("/sys/devices/system/cpu/cpu0/cpufreq")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (``model name``), else :func:`platform.processor`."""
    text = _read(Path("/proc/cpuinfo")) or ""
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    if m:
        return m.group(1).strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_frequency_hz() -> tuple[float | None, str]:
    """Reference CPU frequency [Hz] and where it was read.

    Order: sysfs ``base_frequency``, sysfs ``cpuinfo_max_freq`` (kHz), the nominal
    ``@ x.xxGHz`` in the model name, /proc/cpuinfo ``cpu MHz`` (the current clock, which on a
    virtual machine is the host's nominal one). ``(None, "unavailable")`` if none is readable.
    """
    for name in ("base_frequency", "cpuinfo_max_freq"):
        raw = _read(_SYSFS_CPU0 / name)
        if raw and raw.strip().isdigit():
            return float(raw.strip()) * 1e3, f"sysfs:{name}"
    model = cpu_model()
    m = re.search(r"@\s*([0-9.]+)\s*GHz", model)
    if m:
        return float(m.group(1)) * 1e9, "model name"
    text = _read(Path("/proc/cpuinfo")) or ""
    mhz = [float(v) for v in re.findall(r"^cpu MHz\s*:\s*([0-9.]+)", text, re.MULTILINE)]
    if mhz:
        return max(mhz) * 1e6, "/proc/cpuinfo cpu MHz"
    return None, "unavailable"


_BLAS: list[Any] = []


def _openblas() -> Any:
    """numpy's bundled OpenBLAS (``scipy_openblas``) through ctypes, or None if not found."""
    if not _BLAS:
        lib = None
        import numpy

        here = Path(numpy.__file__).resolve().parent
        for path in sorted(glob.glob(str(here.parent / "numpy.libs" / "*openblas*.so*"))):
            try:
                cand = ctypes.CDLL(path)
                cand.scipy_openblas_get_num_threads64_.restype = ctypes.c_int
                cand.scipy_openblas_set_num_threads64_.argtypes = [ctypes.c_int]
                lib = cand
                break
            except (OSError, AttributeError):
                continue
        _BLAS.append(lib)
    return _BLAS[0]


def blas_threads() -> int | None:
    """Threads numpy's OpenBLAS uses now (None if it cannot be queried)."""
    lib = _openblas()
    return None if lib is None else int(lib.scipy_openblas_get_num_threads64_())


@contextmanager
def limit_blas_threads(n: int) -> Iterator[int | None]:
    """Run the block with numpy's OpenBLAS limited to ``n`` threads; restores the old count.

    Yields the thread count in effect (None if numpy's BLAS is not a controllable OpenBLAS).
    """
    lib = _openblas()
    if lib is None:
        yield None
        return
    old = int(lib.scipy_openblas_get_num_threads64_())
    lib.scipy_openblas_set_num_threads64_(int(n))
    try:
        yield int(lib.scipy_openblas_get_num_threads64_())
    finally:
        lib.scipy_openblas_set_num_threads64_(old)


#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
#: What :func:`tune_allocator` set in this process (empty: not tuned).
_ALLOCATOR: dict[str, int] = {}


def tune_allocator(
    mmap_threshold_bytes: int = 1 << 30,
    trim_threshold_bytes: int = (1 << 31) - 1,
    top_pad_bytes: int = 256 << 20,
) -> dict[str, int]:
    """Keep freed heap memory in this process (glibc ``mallopt``); returns what was set.

    The server kernel and SEAL allocate and free tens of MB per projection block. By default
    glibc serves blocks above 32 MiB with ``mmap`` and returns them (and the top of the heap)
    to the OS on ``free``, so the next block faults every page in again (zeroed by the
    kernel; on a virtual machine each first touch is an expensive, load-dependent exit).
    Measured at N=8192 (128 x 512 block, this 2-core KVM machine): 1.2-3.4 s of a 3 s
    projection was system time, and the per-MAC cost varied 30 % between repetitions;
    with the heap kept, the kernel is ~1.5x faster and repetitions agree within a few %.
    Raising the mmap threshold and the trim threshold keeps that memory in the heap (RSS stays
    at its peak: a server's working set). Process-wide and permanent; called by the profiling
    entry points and the projection server. A no-op returning ``{}`` where the C library is
    not glibc. Idempotent.
    """
    if _ALLOCATOR:
        return dict(_ALLOCATOR)
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    wanted = {
        "mmap_threshold_bytes": (_M_MMAP_THRESHOLD, mmap_threshold_bytes),
        "trim_threshold_bytes": (_M_TRIM_THRESHOLD, trim_threshold_bytes),
        "top_pad_bytes": (_M_TOP_PAD, top_pad_bytes),
    }
    for key, (param, value) in wanted.items():
        if mallopt(param, int(min(value, (1 << 31) - 1))) == 1:
            _ALLOCATOR[key] = int(value)
    return dict(_ALLOCATOR)


def thread_count() -> int:
    """Threads the numeric kernels use: numpy's OpenBLAS thread count if readable, else the
    BLAS/OpenMP environment limit, else the usable CPUs. (SEAL runs single-threaded.)"""
    n = blas_threads()
    if n is not None and n > 0:
        return n
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        v = os.environ.get(var, "")
        if v.isdigit() and int(v) > 0:
            return int(v)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def load_avg_1m() -> float | None:
    """The 1-minute load average, or None where the OS does not report it."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):  # pragma: no cover - not Unix
        return None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, Any]:
    """The record columns describing this machine now (see :data:`RECORD_COLUMNS`).

    Keys: ``cpu_model``, ``cpu_freq_hz``, ``cpu_freq_source``, ``threads``,
    ``tenseal_version``, ``numpy_version``, ``python_version``, ``date`` (UTC, ISO 8601),
    ``load_avg_1m``, ``allocator`` (``"heap kept"`` after :func:`tune_allocator`, else
    ``"default"``).
    """
    freq, source = cpu_frequency_hz()
    return {
        "cpu_model": cpu_model(),
        "cpu_freq_hz": freq,
        "cpu_freq_source": source,
        "threads": thread_count(),
        "tenseal_version": _version("tenseal"),
        "numpy_version": _version("numpy"),
        "python_version": platform.python_version(),
        "date": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        "load_avg_1m": load_avg_1m(),
        "allocator": "heap kept" if _ALLOCATOR else "default",
    }
