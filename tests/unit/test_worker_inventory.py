"""What a worker reports about its host: GPUs through NVML when there is one, CPUs, RAM."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

import pytest

from apps.workers import inventory


def _nvml_present() -> bool:
    try:
        ctypes.CDLL(inventory.NVML_LIBRARY)
    except OSError:
        return False
    return True


def test_memory_is_read_from_meminfo_in_bytes(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(
        "MemTotal:       16384 kB\nMemFree:         1024 kB\nMemAvailable:    8192 kB\nHugePages_Total:       0\n"
    )

    assert inventory.memory(meminfo) == (16384 * 1024, 8192 * 1024)


def test_memory_is_unknown_where_meminfo_does_not_exist(tmp_path):
    assert inventory.memory(tmp_path / "absent") == (None, None)


def test_device_info_describes_this_host():
    info = inventory.device_info()

    assert info["cpu_count"] == os.cpu_count()
    assert isinstance(info["gpus"], list)
    if os.path.exists("/proc/meminfo"):
        assert 0 < info["ram_available"] <= info["ram_total"]


@pytest.mark.skipif(_nvml_present(), reason="this host has NVML")
def test_a_host_without_nvml_reports_no_gpus():
    assert inventory.gpu_inventory() == []


@pytest.mark.gpu
@pytest.mark.skipif(not _nvml_present(), reason="needs libnvidia-ml.so.1 (an NVIDIA driver)")
def test_each_gpu_is_reported_with_its_memory_and_load():
    gpus = inventory.gpu_inventory()

    assert gpus, "NVML is present but reported no GPU"
    assert [gpu["index"] for gpu in gpus] == list(range(len(gpus)))
    for gpu in gpus:
        assert gpu["name"]
        assert 0 < gpu["memory_free"] <= gpu["memory_total"]
        assert gpu["utilization"] is None or 0 <= gpu["utilization"] <= 100


# A stand-in for the NVIDIA driver's library (the edge of the outside world),
# declared as NVML's header declares it: checks the ctypes side of the contract
# (structure layouts, handles, buffer sizes) on hosts without a GPU.
FAKE_NVML = r"""
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef void *nvmlDevice_t;
static int devices[2];
static const char *names[2] = {"NVIDIA H100 80GB HBM3", "NVIDIA A10"};
int nvmlInit_v2(void) { return 0; }
int nvmlDeviceGetCount_v2(unsigned int *count) { *count = 2; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (index > 1) return 2;
    *device = &devices[index]; return 0;
}
int nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    const char *source = names[(int *)device - devices]; unsigned int i = 0;
    for (; source[i] && i + 1 < length; i++) name[i] = source[i];
    name[i] = 0; return 0;
}
int nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    int index = (int *)device - devices;
    memory->total = 85899345920ULL >> index; memory->free = 64424509440ULL >> index;
    memory->used = memory->total - memory->free; return 0;
}
int nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization) {
    if ((int *)device - devices == 1) return 3; /* NVML_ERROR_NOT_SUPPORTED */
    utilization->gpu = 37; utilization->memory = 12; return 0;
}
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to build the stand-in NVML library")
def test_nvml_answers_become_the_gpu_inventory(tmp_path):
    source, library = tmp_path / "nvml.c", tmp_path / "libnvidia-ml.so.1"
    source.write_text(FAKE_NVML)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)

    nvml = inventory.Nvml.open(str(library))

    assert nvml is not None
    assert nvml.gpus() == [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total": 85899345920, "memory_free": 64424509440,
         "utilization": 37},
        {"index": 1, "name": "NVIDIA A10", "memory_total": 42949672960, "memory_free": 32212254720,
         "utilization": None},
    ]


def test_a_missing_nvml_library_means_no_nvml(tmp_path):
    assert inventory.Nvml.open(str(tmp_path / "libnvidia-ml.so.1")) is None
