"""What this host offers a worker: GPUs (through NVML), CPUs and memory.

NVML is reached with ctypes on ``libnvidia-ml.so.1`` (installed with the
NVIDIA driver) rather than through ``pynvml``, so a CPU-only host needs no
extra package and a GPU host needs nothing beyond its driver. No library, no
driver or no device: the host simply reports no GPUs. No Django here.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

NVML_LIBRARY = "libnvidia-ml.so.1"
NVML_SUCCESS = 0
NVML_DEVICE_NAME_BUFFER_SIZE = 96  # NVML_DEVICE_NAME_V2_BUFFER_SIZE


class _NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class _NvmlUtilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


class Nvml:
    """The few NVML queries a worker reports; initialised once per process."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self._lib = library

    @classmethod
    def open(cls, path: str = NVML_LIBRARY) -> Nvml | None:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            return None  # no NVIDIA driver on this host
        try:
            initialised = library.nvmlInit_v2() == NVML_SUCCESS
        except AttributeError:  # a driver too old for the _v2 entry points (before 2013)
            initialised = False
        if not initialised:
            logger.warning("%s is present but NVML did not initialise; reporting no GPUs", NVML_LIBRARY)
            return None
        return cls(library)

    def gpus(self) -> list[dict[str, Any]]:
        count = ctypes.c_uint()
        if self._lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) != NVML_SUCCESS:
            return []
        return [gpu for index in range(count.value) if (gpu := self._gpu(index)) is not None]

    def _gpu(self, index: int) -> dict[str, Any] | None:
        handle = ctypes.c_void_p()
        if self._lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(handle)) != NVML_SUCCESS:
            return None  # e.g. a device the driver cannot talk to; skip it, report the rest
        name = ctypes.create_string_buffer(NVML_DEVICE_NAME_BUFFER_SIZE)
        memory = _NvmlMemory()
        utilization = _NvmlUtilization()
        named = self._lib.nvmlDeviceGetName(handle, name, ctypes.c_uint(NVML_DEVICE_NAME_BUFFER_SIZE))
        measured = self._lib.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory))
        # Not every device reports utilisation (MIG instances, some vGPUs): None then.
        utilised = self._lib.nvmlDeviceGetUtilizationRates(handle, ctypes.byref(utilization))
        return {
            "index": index,
            "name": name.value.decode(errors="replace") if named == NVML_SUCCESS else "",
            "memory_total": memory.total if measured == NVML_SUCCESS else None,
            "memory_free": memory.free if measured == NVML_SUCCESS else None,
            "utilization": utilization.gpu if utilised == NVML_SUCCESS else None,
        }


_nvml: Nvml | None = None
_nvml_opened = False
_nvml_lock = threading.Lock()


def _process_nvml() -> Nvml | None:
    global _nvml, _nvml_opened
    with _nvml_lock:
        if not _nvml_opened:
            _nvml = Nvml.open()
            _nvml_opened = True
        return _nvml


def gpu_inventory() -> list[dict[str, Any]]:
    """``[{index, name, memory_total, memory_free, utilization}]``; [] without NVML."""
    nvml = _process_nvml()
    return nvml.gpus() if nvml is not None else []


def memory(meminfo: Path = Path("/proc/meminfo")) -> tuple[int | None, int | None]:
    """(total, available) RAM in bytes; (None, None) where /proc/meminfo does not exist."""
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None, None
    values: dict[str, int] = {}
    for line in lines:
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[key] = int(fields[0]) * 1024  # the kernel writes kB
    return values.get("MemTotal"), values.get("MemAvailable")


def device_info() -> dict[str, Any]:
    """The worker's ``device_info``: refreshed at every heartbeat (free memory and load change)."""
    ram_total, ram_available = memory()
    return {
        "gpus": gpu_inventory(),
        "cpu_count": os.cpu_count(),
        "ram_total": ram_total,
        "ram_available": ram_available,
    }
