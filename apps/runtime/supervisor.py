"""A small process supervisor: the platform's processes under one command.

Children are restarted when they die unexpectedly (with a back-off), get a
clean stop signal when the supervisor is asked to stop, and are killed if they
do not stop in time. Every child (and the supervisor itself) asks the kernel to
send it SIGTERM when its parent dies, so no orphan outlives `make run`.

This module imports nothing but the standard library (and apps.core.logs,
which imports nothing else either): ``exec_supervisor``
replaces the calling process (``manage.py run_platform``, with Django and all
it loaded) by ``python -m`` this module, so the process that stays in the
foreground for the platform's whole life holds a few MB, not Django's ~90 MB
(and never torch's hundreds). Same pid: signals sent to ``make run`` reach it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import logging.config
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

from apps.core.logs import set_process_name

# By name: run with ``python -m``, this module's __name__ is "__main__".
logger = logging.getLogger("apps.runtime.supervisor")

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_SECONDS = 20.0
MAX_BACKOFF_SECONDS = 30.0
# prometheus_client's multi-process mode (apps.core.metrics): the directory the
# children write their values to, and the gauge modes that count live processes only.
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
LIVE_GAUGE_MODES = ("liveall", "livemin", "livemax", "livesum", "livemostrecent")


def die_with_parent() -> None:
    """Linux: get SIGTERM when the parent process exits (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        logger.warning("prctl(PR_SET_PDEATHSIG) unavailable; children may outlive a killed parent")


@dataclass
class Child:
    name: str
    argv: list[str]
    stop_signal: int = signal.SIGTERM
    # File descriptors it inherits (the listening socket the server processes share).
    pass_fds: tuple[int, ...] = ()
    process: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "argv": self.argv, "stop_signal": int(self.stop_signal),
                "pass_fds": list(self.pass_fds)}

    @classmethod
    def from_json(cls, data: dict) -> Child:
        return cls(data["name"], list(data["argv"]), signal.Signals(data["stop_signal"]),
                   tuple(data.get("pass_fds", ())))

    def start(self) -> None:
        logger.info("starting %s: %s", self.name, " ".join(self.argv))
        # stdout belongs to the supervisor's own result lines (API_KEY=… on the
        # first run); whatever a child prints there (run_worker's id) is a message.
        self.process = subprocess.Popen(
            self.argv, preexec_fn=die_with_parent, stdout=sys.stderr, pass_fds=self.pass_fds
        )
        self.started_at = time.monotonic()


def mark_process_dead(pid: int) -> None:
    """What ``prometheus_client.multiprocess.mark_process_dead`` does, in the standard
    library: remove an exited child's files of live-only gauges (its open streams),
    so a scrape stops summing them. Its counters' files stay: what it counted
    happened. (Importing prometheus_client here would add ~14 MB to the process
    that stays resident; tests/unit/test_metrics_multiprocess.py holds the two
    to the same files.)"""
    directory = os.environ.get(METRICS_DIR_VARIABLE)
    if not directory:
        return
    for mode in LIVE_GAUGE_MODES:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(directory, f"gauge_{mode}_{pid}.db"))


class Supervisor:
    def __init__(self, children: list[Child]) -> None:
        self.children = children
        self._stopping = False

    def request_stop(self, signum: int, frame) -> None:  # signal handler
        self._stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        for child in self.children:
            child.start()
        while not self._stopping:
            for child in self.children:
                self._watch(child)
            time.sleep(0.2)
        return self._stop_all()

    def _watch(self, child: Child) -> None:
        now = time.monotonic()
        if child.process is None:
            if now >= child.next_start:
                child.start()
            return
        code = child.process.poll()
        if code is None:
            return
        mark_process_dead(child.process.pid)
        # Back off when a child keeps dying right after start (bad config, port taken).
        if now - child.started_at > 60:
            child.restarts = 0
        child.restarts += 1
        delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** (child.restarts - 1))
        logger.error("%s exited with %s; restarting in %.1fs", child.name, code, delay)
        child.process = None
        child.next_start = now + delay

    def _stop_all(self) -> int:
        running = [(c, c.process) for c in self.children if c.process is not None and c.process.poll() is None]
        for child, process in running:
            logger.info("stopping %s", child.name)
            process.send_signal(child.stop_signal)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for child, process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("%s did not stop in %.0fs; killing it", child.name, STOP_TIMEOUT_SECONDS)
                process.kill()
                process.wait()
        return 0


def exec_supervisor(children: list[Child], logging_config: dict[str, Any], import_root: str) -> NoReturn:
    """Replace this process by a bare Python running ``children`` under a Supervisor.

    ``logging_config`` is settings.LOGGING: the supervisor's lines look like its
    children's (its filter and formatters, apps.core.logs, need no Django).
    ``import_root`` is the directory holding the ``apps`` package, put on the new
    process's PYTHONPATH so ``-m`` finds this module from any working directory.
    What this process printed is flushed first; its own memory is gone after
    the exec. Its children inherit the environment, that path included.
    """
    spec = json.dumps({"logging": logging_config, "children": [child.to_json() for child in children]})
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (import_root, env.get("PYTHONPATH", "")) if p)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", __name__, spec], env)


def main(argv: list[str]) -> int:
    """``python -m`` this module with the JSON written by ``exec_supervisor``."""
    spec = json.loads(argv[0])
    set_process_name("supervisor")
    logging.config.dictConfig(spec["logging"])  # settings.LOGGING, as its children have it
    die_with_parent()  # kept across exec by Linux; asked again in case it was not
    return Supervisor([Child.from_json(child) for child in spec["children"]]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
