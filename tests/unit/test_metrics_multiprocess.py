"""Multi-process metrics: what several processes count is summed; an exited process's
open streams stop counting once the supervisor marks it dead.

Real processes, each importing apps.core.metrics with PROMETHEUS_MULTIPROC_DIR
set, as the platform's children do under run_platform.
"""

from __future__ import annotations

import subprocess
import sys

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from apps.runtime.supervisor import Child, Supervisor
from tests.metrics_support import parse

COUNT = (
    "from apps.core import metrics; "
    "metrics.http_requests.labels(route='metrics', method='GET', status='200').inc(); "
    "metrics.stream_connections.inc(); "
    "print('counted', flush=True)"
)
COUNT_AND_HOLD = COUNT + "; import sys; sys.stdin.read()"  # holds its stream open until stdin closes


def _scrape(directory: str):
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return parse(generate_latest(registry).decode())


def test_processes_are_summed_and_a_dead_ones_streams_are_dropped(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    live = subprocess.Popen(
        [sys.executable, "-c", COUNT_AND_HOLD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert live.stdout.readline().strip() == "counted"
        # A supervised child that counts the same, then exits.
        exited = Child("server-2", [sys.executable, "-c", COUNT])
        exited.start()
        exited.process.wait()
        supervisor = Supervisor([exited])

        assert _scrape(str(tmp_path)).value("llmagentos_stream_connections") == 2  # not yet marked dead
        supervisor._watch(exited)  # sees the exit (and would restart it after a back-off)
        seen = _scrape(str(tmp_path))

        assert seen.value("llmagentos_stream_connections") == 1  # the live process's only
        # What the exited process counted happened: its counters stay in the sum.
        assert seen.value("llmagentos_http_requests_total", route="metrics", method="GET", status="200") == 2
    finally:
        live.communicate("")
