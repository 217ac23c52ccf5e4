"""The process `make run` leaves in the foreground stays small.

It lives as long as the platform, so whatever it imported stays resident: the
tiny model's build (torch, transformers) happens in a child process and the
supervisor itself runs without Django. Checked on a real first run (the one
that builds the tiny model) through the kernel's view of the supervisor's pid.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.harness import Platform

pytestmark = pytest.mark.e2e

# Issue 13's bound; the supervisor measured ~14 MB here, Django alone ~90 MB, with torch ~410 MB.
MAX_RESIDENT_KB = 100 * 1024


def _resident_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.MULTILINE)
    assert match, status
    return int(match.group(1))


def test_the_supervisor_stays_under_100_mb_and_never_maps_torch(platform_env):
    platform_env["SERVER_PROCESSES"] = "2"
    platform = Platform(platform_env)
    try:
        platform.wait_ready()
        pid = platform.process.pid
        maps = Path(f"/proc/{pid}/maps").read_text()
        resident_kb = _resident_kb(pid)
        # The children it supervises (the worker serves the tiny model: torch is theirs).
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()

        assert resident_kb < MAX_RESIDENT_KB, f"the supervisor holds {resident_kb} kB"
        assert "libtorch" not in maps and "/torch/" not in maps
        assert len(children) == 4, children  # two servers, scheduler, worker: still supervising
    finally:
        assert platform.stop() == 0
