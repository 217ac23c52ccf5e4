"""The platform's Prometheus series that processes count as events happen.

Any app may increment these (this module imports only prometheus_client); GET
/metrics (``llmagentos.metrics``) writes them out with the gauges read from the
database at scrape time (``apps.scheduler.metrics``), which are not here: a
figure such as a queue's depth is the database's, not any one process's.

Multi-process mode: the platform runs several processes (ASGI servers, the
scheduler, workers), each counting its own events. With
``PROMETHEUS_MULTIPROC_DIR`` set *before prometheus_client is first imported*,
every process writes its values to files in that directory, and a scrape sums
them (``prometheus_client.multiprocess.MultiProcessCollector``). ``make run``
(``manage.py run_platform``) sets it to ``DATA_DIR/metrics`` and empties it at
start; a distributed deployment sets it per host (docs/operators.md,
"Metrics"). Unset (tests, a lone ``manage.py`` command), each process keeps its
values in memory and /metrics shows that process's own.

Labels hold names an operator chose (model names, tenant slugs, URL routes,
error codes), never a task id, a key or anything a tenant wrote: the number of
series stays bounded and the output reveals no content.
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# No *_created series beside each counter and histogram: multi-process mode
# writes none, and a single process should answer the same series.
disable_created_metrics()

PREFIX = "llmagentos"
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The directory the processes write their values to; None: this process keeps its own.

    Read from the environment as prometheus_client read it when first imported
    (it is not a Django setting: it must exist before Django starts)."""
    return os.environ.get(MULTIPROC_DIR_VARIABLE) or None

# Seconds. Queue waits range from milliseconds (an idle platform) to many minutes
# (a batch backlog); first tokens from tens of milliseconds (echo) to a minute (a
# large model loading); whole tasks from a second to half an hour.
QUEUE_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800)
FIRST_TOKEN_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

tasks_submitted = Counter(
    f"{PREFIX}_tasks_submitted", "Tasks admitted (a workflow's nodes each count)", ["model", "tenant"]
)
tasks_finished = Counter(
    f"{PREFIX}_tasks_finished",
    "Tasks that reached a terminal state, by outcome (succeeded, failed, cancelled)",
    ["model", "tenant", "outcome"],
)
task_suspensions = Counter(
    f"{PREFIX}_task_suspensions",
    "Running generations suspended and queued again with their progress, by reason (preempted, time_slice)",
    ["model", "reason"],
)
tokens_in = Counter(f"{PREFIX}_tokens_in", "Prompt tokens of ended tasks, as charged", ["model", "tenant"])
tokens_out = Counter(f"{PREFIX}_tokens_out", "Completion tokens of ended tasks, as charged", ["model", "tenant"])
queue_wait = Histogram(
    f"{PREFIX}_queue_wait_seconds",
    "From ready (queued) to a worker's claim, per attempt",
    ["model"],
    buckets=QUEUE_WAIT_BUCKETS,
)
time_to_first_token = Histogram(
    f"{PREFIX}_time_to_first_token_seconds",
    "From ready (queued) to the attempt's first generated text",
    ["model"],
    buckets=FIRST_TOKEN_BUCKETS,
)
task_duration = Histogram(
    f"{PREFIX}_task_duration_seconds",
    "Total time of a task that ran: from its submission to its end",
    ["model"],
    buckets=DURATION_BUCKETS,
)
admission_rejections = Counter(
    f"{PREFIX}_admission_rejections",
    "Tasks refused at admission (or at a workflow node's release), by the error code answered",
    ["reason"],
)
http_requests = Counter(
    f"{PREFIX}_http_requests",
    "HTTP requests answered, by URL route (the pattern, not the path), method and status",
    ["route", "method", "status"],
)
# Summed over the live server processes: a process that died holds no connection
# (the supervisor removes its file, as prometheus_client's mark_process_dead does).
stream_connections = Gauge(
    f"{PREFIX}_stream_connections",
    "WebSocket task streams open now",
    multiprocess_mode="livesum",
)
