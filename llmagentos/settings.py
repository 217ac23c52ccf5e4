"""Settings, read from the environment only.

Nothing set: the embedded mode (SQLite under DATA_DIR, SqliteHuey, in-process
everything). DATABASE_URL=postgres://… and REDIS_URL=redis://…: the distributed
mode (PostgreSQL, PriorityRedisHuey). LLMAGENTOS_PROFILE picks "local" (the
default, what ``make run`` uses) or "production" (HTTPS-only, refuses to start
without real secrets).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from pathlib import Path

import dj_database_url
import redis
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from huey import PriorityRedisHuey, SqliteHuey

from llmagentos import env
from llmagentos.local_secrets import load_secret, refuse_weak_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env.string("DATA_DIR") or BASE_DIR / "var").resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

PROFILE = env.choice("LLMAGENTOS_PROFILE", "local", ("local", "production"))

SECRET_KEY = load_secret(
    env_var="SECRET_KEY",
    profile=PROFILE,
    data_dir=DATA_DIR,
    filename="secret_key",
    generate=lambda: secrets.token_urlsafe(50),
)
if PROFILE == "production":
    refuse_weak_secret_key(SECRET_KEY)
# Comma-separated Fernet keys; the first encrypts, all decrypt (key rotation).
MASTER_KEYS = [
    key.strip()
    for key in load_secret(
        env_var="MASTER_KEYS",
        profile=PROFILE,
        data_dir=DATA_DIR,
        filename="master_keys",
        generate=lambda: Fernet.generate_key().decode(),
    ).split(",")
    if key.strip()
]
for _key in MASTER_KEYS:
    try:
        Fernet(_key.encode())
    except ValueError:
        # A secret: the message names the variable and the form, never the value.
        raise env.malformed(
            "MASTER_KEYS", None, "comma-separated Fernet keys (32 url-safe base64-encoded bytes each)"
        ) from None

DEBUG = env.boolean("DEBUG") and PROFILE == "local"

HOST = env.string("HOST", "127.0.0.1")
PORT = env.integer("PORT", 8000, minimum=1, expected="a TCP port number")  # where `make run` serves
# ASGI server processes `make run` starts on that port (one listening socket,
# shared): one per core this process may use, at most 4 (each holds ~100 MB).
SERVER_PROCESSES = env.integer(
    "SERVER_PROCESSES",
    min(4, env.usable_cores()),
    minimum=1,
    expected="a number of processes",
)
if PROFILE == "production":
    # Only the names the operator gives: a loopback or test name must not
    # answer for a public service (a request with a forged Host would).
    ALLOWED_HOSTS = env.comma_list("ALLOWED_HOSTS")
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS must be set in the production profile: the comma-separated host names "
            "the service answers to (refusing to start without it)"
        )
else:
    ALLOWED_HOSTS = sorted(
        {HOST, "127.0.0.1", "localhost", "[::1]", "testserver"} | set(env.comma_list("ALLOWED_HOSTS"))
    )
CSRF_TRUSTED_ORIGINS = env.comma_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "axes",
    "huey.contrib.djhuey",
    "channels",
    "apps.security",
    "apps.tenants",
    "apps.catalog",
    "apps.tasks",
    "apps.workers",
    "apps.webhooks",
    "apps.scheduler",
    "apps.streaming",
    "apps.runtime",
    "apps.gateway",
    "apps.dashboard",
]

MIDDLEWARE = [
    # Outermost: counts every answer, those of the middleware below included.
    "llmagentos.metrics_middleware.RequestMetricsMiddleware",
    "llmagentos.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "llmagentos.middleware.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Who acts and from where, for the audit log (apps.tenants.audit.record).
    "apps.tenants.audit.AuditRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last (django-axes): turns a locked-out login into the lockout page. It is
    # sync- and async-capable, so it keeps an async chain async.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "llmagentos.urls"
ASGI_APPLICATION = "llmagentos.asgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
DATABASE_URL = env.string("DATABASE_URL")
# Bounds on waiting for PostgreSQL (connecting; a free pooled connection).
DB_CONNECT_TIMEOUT_SECONDS = env.integer("DB_CONNECT_TIMEOUT_SECONDS", 3, minimum=1, expected=env.SECONDS)
DB_POOL_TIMEOUT_SECONDS = env.seconds("DB_POOL_TIMEOUT_SECONDS", 5)
if DATABASE_URL:
    DB_CONN_MAX_AGE = env.whole_seconds("DB_CONN_MAX_AGE", 0)
    # Connections per process kept in a pool (PostgreSQL; 0: none). A worker's
    # slot threads give theirs back while a generation streams
    # (apps.runtime.execution), so a worker with hundreds of slots needs a few
    # connections, not one per slot. Django's pool needs CONN_MAX_AGE 0.
    DB_POOL_MAX_SIZE = env.integer("DB_POOL_MAX_SIZE", 16, minimum=0, expected="a number of connections")
    _database = env.parsed(
        "DATABASE_URL",
        lambda url: dj_database_url.parse(url, conn_max_age=DB_CONN_MAX_AGE),
        "a database URL such as postgres://user:password@host:5432/name",
    )
    assert _database is not None  # DATABASE_URL is set
    DATABASES = {"default": _database}
    if DATABASES["default"]["ENGINE"].endswith("postgresql"):
        # A database that is down or cut off answers a request with 503 within
        # these bounds (llmagentos.api_errors), never a hang: a refused
        # connection fails at once; an unreachable host within the connect
        # timeout; a connection cut mid-query within tcp_user_timeout (libpq).
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            connect_timeout=DB_CONNECT_TIMEOUT_SECONDS,
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
            tcp_user_timeout=DB_CONNECT_TIMEOUT_SECONDS * 1000,
        )
    # Server-side binding, so that psycopg prepares a statement a connection has run
    # DB_PREPARE_THRESHOLD times: PostgreSQL then skips parsing and planning it, which
    # is most of its CPU on the hot path's short statements. Behind a pooler in
    # transaction mode (PgBouncer < 1.21), a prepared statement may be missing on the
    # next transaction's server connection: set DB_PREPARE_THRESHOLD=0 there.
    DB_PREPARE_THRESHOLD = env.integer(
        "DB_PREPARE_THRESHOLD", 5, minimum=0, expected="a number of executions (0: never prepare)"
    )
    if DATABASES["default"]["ENGINE"].endswith("postgresql") and DB_PREPARE_THRESHOLD > 0:
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            server_side_binding=True, prepare_threshold=DB_PREPARE_THRESHOLD
        )
    if DATABASES["default"]["ENGINE"].endswith("postgresql") and DB_POOL_MAX_SIZE > 0 and DB_CONN_MAX_AGE == 0:
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": DB_POOL_MAX_SIZE,
            # Waiting longer for a connection is an error (503 on the API), not a
            # hang: while the database is down the pool has none to give.
            "timeout": DB_POOL_TIMEOUT_SECONDS,
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "llmagentos.sqlite3"),
            # Kept open (a file, not a server): reopening registers ~30 SQL
            # functions and runs the PRAGMAs, per request and per task.
            "CONN_MAX_AGE": None,
            "OPTIONS": {
                # WAL lets the server read while the consumer writes; IMMEDIATE
                # takes the write lock at BEGIN so concurrent writers queue on
                # the busy timeout instead of failing with "database is locked".
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
            # The tests' database is a file too, as in production: Django's default
            # for SQLite (a shared-cache in-memory database) locks whole tables,
            # and a reader meeting a writer's lock fails at once ("database table
            # is locked") instead of waiting the busy timeout as a file's does.
            "TEST": {"NAME": str(DATA_DIR / "test.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Queue (Huey) ------------------------------------------------------------
REDIS_SCHEMES = ("redis", "rediss", "unix")
REDIS_URL = env.url("REDIS_URL", REDIS_SCHEMES, "redis://host:6379/0")
HUEY_NAME = env.string("HUEY_NAME", "llmagentos")
# Every Redis client of the platform (Huey's queues, wake-ups, the stream log,
# rate limits) connects and reads within these bounds: Redis down or cut off
# is an error (503 on the API; a retry in the background loops), never a hang.
# The socket timeout exceeds every blocking read the platform makes (Huey's
# 1 s BRPOP, the stream hub's short XREAD blocks).
REDIS_CLIENT_OPTIONS = {
    "socket_connect_timeout": env.seconds("REDIS_CONNECT_TIMEOUT_SECONDS", 2),
    "socket_timeout": env.seconds("REDIS_SOCKET_TIMEOUT_SECONDS", 5),
    "socket_keepalive": True,
}
if REDIS_URL:
    HUEY = PriorityRedisHuey(
        HUEY_NAME, results=False, connection_pool=redis.ConnectionPool.from_url(REDIS_URL, **REDIS_CLIENT_OPTIONS)
    )
else:
    HUEY = SqliteHuey(HUEY_NAME, filename=str(DATA_DIR / "huey.sqlite3"), results=False)

# --- Admission (apps.scheduler.admission) -------------------------------------------
# Rate-limit buckets live in Redis when there is one (a Lua script keeps them
# atomic across API processes), else in the database (a conditional UPDATE).
RATE_LIMIT_REDIS_URL = env.url("RATE_LIMIT_REDIS_URL", REDIS_SCHEMES, "redis://host:6379/0", default=REDIS_URL)
# Retry-After of a "queue_full" refusal: a guess, since how soon a slot frees
# depends on the tenant's running tasks.
QUEUE_FULL_RETRY_AFTER_SECONDS = env.whole_seconds("QUEUE_FULL_RETRY_AFTER_SECONDS", 10)
# Reservations of tasks that ended without being settled (a process died between
# the two) are settled by a periodic sweep once they are this old.
SETTLEMENT_SWEEP_AFTER_SECONDS = env.whole_seconds("SETTLEMENT_SWEEP_AFTER_SECONDS", 60)

# --- Auth ----------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out login before any password is checked (django-axes).
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row
# Password logins (the admin's) are throttled by django-axes: after
# LOGIN_FAILURE_LIMIT failures for one username from one address, that pair is
# refused, the right password too, until LOGIN_LOCKOUT_MINUTES have passed
# without another try. Other users and addresses are unaffected. API keys and
# operator tokens never go through django.contrib.auth.authenticate(), so this
# never touches them. Operators unlock early in the admin (Axes: access
# attempts) or with `manage.py axes_reset_username NAME`.
AXES_FAILURE_LIMIT = env.integer("LOGIN_FAILURE_LIMIT", 5, minimum=1, expected="a number of failed logins")
LOGIN_LOCKOUT_MINUTES = env.integer("LOGIN_LOCKOUT_MINUTES", 15, minimum=1, expected="a number of minutes")
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True  # a successful login clears that pair's failures
AXES_LOCKOUT_CALLABLE = "llmagentos.login_lockout.lockout_response"

# --- API -------------------------------------------------------------------------
# Request bodies: one larger than this is refused with 413 before it is read
# (llmagentos.body_limit, in front of Django), and Django's own cap agrees.
MAX_REQUEST_BODY_BYTES = env.integer(
    "MAX_REQUEST_BODY_BYTES", 10 * 1024 * 1024, minimum=1, expected="a number of bytes"
)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
# JSON bodies nested deeper than this are refused with 400 (apps.core.parsers).
MAX_JSON_DEPTH = env.integer("MAX_JSON_DEPTH", 64, minimum=1, expected="a number of levels")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.tenants.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["apps.tenants.permissions.HasActiveTenantKey"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.JSONParser"],  # DRF's, with MAX_JSON_DEPTH
    "EXCEPTION_HANDLER": "llmagentos.api_errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "apps.core.openapi.ContractAutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LLMAgentOS API",
    "DESCRIPTION": "Submit LLM tasks, follow them and read their results.",
    "VERSION": "1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # The path converters of apps.core.converters.
    "PATH_CONVERTER_OVERRIDES": {"id": uuid.UUID, "name": str, "name_path": str},
    # The credentials an API client presents; the admin's session is the browser's.
    "AUTHENTICATION_WHITELIST": [
        "apps.tenants.authentication.ApiKeyAuthentication",
        "apps.security.authentication.OperatorTokenAuthentication",
    ],
    # One name per choice set used by several fields (else the names collide).
    "ENUM_NAME_OVERRIDES": {
        "TaskStateEnum": "apps.tasks.models.TaskState",
        "PriorityEnum": "apps.tenants.models.PriorityClass",
        "BudgetPeriodEnum": "apps.tenants.models.BudgetPeriod",
        "WorkerStateEnum": "apps.workers.models.WorkerState",
        "RoleEnum": "apps.tenants.roles.Role",
        "ScopeEnum": "apps.tenants.roles.Scope",
    },
}

# --- Plugins (model adapters) ------------------------------------------------------
# Whether model adapters may reach remote servers on loopback, private,
# link-local or other non-public addresses (apps.catalog.adapters.resolve_upstream).
# Local profile: yes (a vLLM beside `make run`). Production: no, unless set: a
# base_url is then refused at registration and at each connection, so a model's
# configuration cannot reach the platform's own network.
ALLOW_PRIVATE_UPSTREAMS = env.boolean("ALLOW_PRIVATE_UPSTREAMS", PROFILE == "local")
DEFAULT_PLUGINS = "plugins.echo,plugins.transformers,plugins.openai_compatible,plugins.vllm"
LLMAGENTOS_PLUGINS = env.comma_list("LLMAGENTOS_PLUGINS", DEFAULT_PLUGINS)
# Each plugin's settings, by plugin name: a JSON object in LLMAGENTOS_PLUGINS_CONFIG.
# Default: the transformers adapter uses one torch thread, which is ~5x faster
# for small models on a 2-core host than torch's default (measured; docs/plugins.md).
PLUGINS_CONFIG: dict[str, dict] = env.json_value(
    "LLMAGENTOS_PLUGINS_CONFIG",
    '{"transformers": {"cpu_threads": 1}}',
    valid=lambda value: isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()),
    expected='a JSON object of objects, by plugin name, such as {"transformers": {"cpu_threads": 1}}',
)

# --- Task execution ---------------------------------------------------------------
# Failover (docs/operations.md "Leases and failover", with the measurement behind the
# defaults): each worker renews the leases of all its running tasks together every
# TASK_LEASE_RENEW_SECONDS (two queries, whatever their number); a task whose lease
# (TASK_LEASE_SECONDS from the last renewal) has run out is re-queued by the
# scheduler's reaper, which looks every TASK_LEASE_RENEW_SECONDS: a dead worker's
# tasks run again within TASK_LEASE_SECONDS + TASK_LEASE_RENEW_SECONDS of its last
# renewal. A worker restarting under its name gives its old tasks back at once.
TASK_LEASE_SECONDS = env.whole_seconds("TASK_LEASE_SECONDS", 5)
TASK_LEASE_RENEW_SECONDS = env.seconds("TASK_LEASE_RENEW_SECONDS", 1.0)
if not 0 < TASK_LEASE_RENEW_SECONDS * 2 <= TASK_LEASE_SECONDS:
    # One missed renewal (a slow query, a blip) must not cost a task its lease.
    raise ImproperlyConfigured(
        f"TASK_LEASE_RENEW_SECONDS={TASK_LEASE_RENEW_SECONDS}: expected more than 0 and at most half "
        f"of TASK_LEASE_SECONDS={TASK_LEASE_SECONDS}"
    )
TASK_MAX_ATTEMPTS = env.integer("TASK_MAX_ATTEMPTS", 3, minimum=1, expected="a number of attempts")
# A queued task not claimed this long after dispatch is handed to Huey again
# (the database is the source of truth; a lost queue message must not strand it).
DISPATCH_STALE_SECONDS = env.whole_seconds("DISPATCH_STALE_SECONDS", 300)
# The leading scheduler compares the dispatched tasks in the database with the
# queues' contents this often and puts back, in order, those whose message is
# gone (Redis restarted or flushed): apps.scheduler.dispatch.requeue_lost_messages.
QUEUE_RECONCILE_SECONDS = env.seconds("QUEUE_RECONCILE_SECONDS", 5)
WORKER_NAME = env.string("WORKER_NAME")
# Slots of the worker `make run` starts (run_worker --slots).
WORKER_THREADS = env.integer("WORKER_THREADS", 4, minimum=1, expected="a number of slots")
# The dispatcher's round when nothing wakes it (a safety net: submissions and
# ends wake it, apps.scheduler.wakeup), and how long a queued task waits
# before it competes one priority class higher (docs/scheduling.md).
SCHEDULER_TICK_SECONDS = env.seconds("SCHEDULER_TICK_SECONDS", 1.0)
SCHEDULER_AGING_SECONDS = env.seconds("SCHEDULER_AGING_SECONDS", 300)
# Tokens (at weight 1) of work a tenant returning from idleness may have served
# ahead of the backlogged tenants of its class (policy.FairScheduler's
# idle_credit; docs/scheduling.md): a quiet tenant's burst starts at once.
# Replica scaling thresholds (apps.scheduler.autoscale.ScalingRules; docs/scheduling.md "Replicas").
# Only the ones set here; ScalingRules checks their ranges.
REPLICA_SCALING = {
    name: value
    for name, value in {
        "up_queue_per_slot": env.number("REPLICA_UP_QUEUE_PER_SLOT", None, expected="a number of tasks per slot"),
        "up_after_seconds": env.number("REPLICA_UP_AFTER_SECONDS", None, minimum=0, expected=env.SECONDS),
        "down_utilisation": env.number("REPLICA_DOWN_UTILISATION", None, expected="a fraction of slots in use, 0 to 1"),
        "down_after_seconds": env.number("REPLICA_DOWN_AFTER_SECONDS", None, minimum=0, expected=env.SECONDS),
        "cooldown_seconds": env.number("REPLICA_COOLDOWN_SECONDS", None, minimum=0, expected=env.SECONDS),
    }.items()
    if value is not None
}
SCHEDULER_IDLE_CREDIT_TOKENS = env.number(
    "SCHEDULER_IDLE_CREDIT_TOKENS", 50000, minimum=0, expected="a number of tokens"
)
# Preemption and time slicing (docs/scheduling.md, apps.tasks.suspension). A task that
# outranks a running generation and finds no free slot has the lowest-ranked one
# suspended at its next token boundary (adapters that can suspend only); it resumes
# later where it stopped. Thrash guards: a generation runs at least
# PREEMPT_MIN_RUN_SECONDS before it may be preempted, and is preempted at most
# PREEMPT_MAX_PER_TASK times.
PREEMPTION_ENABLED = env.boolean("PREEMPTION_ENABLED", True)
PREEMPT_MIN_RUN_SECONDS = env.number("PREEMPT_MIN_RUN_SECONDS", 0.5, minimum=0, expected="a number of seconds")
PREEMPT_MAX_PER_TASK = env.integer("PREEMPT_MAX_PER_TASK", 3, minimum=0, expected="a number of preemptions")
# Tokens a generation runs before it gives its slot to a waiting task of its class or
# above (round robin); a model's time_slice_tokens overrides it. 0: no time slicing
# (the default: each slice's suspend and resume cost more than it gives where waits are short).
TIME_SLICE_TOKENS = env.integer("TIME_SLICE_TOKENS", 0, minimum=0, expected="a number of tokens")
# run_worker heartbeats this often; a running worker silent for WORKER_LOST_SECONDS shows as lost.
WORKER_HEARTBEAT_SECONDS = env.seconds("WORKER_HEARTBEAT_SECONDS", 5)
WORKER_LOST_SECONDS = env.seconds("WORKER_LOST_SECONDS", 30)
# A worker lost (or stopped) this long leaves the live views (the admin's worker list
# by default, GET /api/v1/ops/workers without ?history=true); its row stays for history.
LOST_WORKER_RETENTION_SECONDS = env.seconds("LOST_WORKER_RETENTION_SECONDS", 600)
# A queued task whose model version no active worker can hold (its placement error)
# fails model_unplaceable once the version has been unplaceable this long, unless a
# worker that can hold it appears meanwhile (apps.scheduler.jobs).
UNPLACEABLE_TIMEOUT_SECONDS = env.seconds("UNPLACEABLE_TIMEOUT_SECONDS", 300)
# How long a placement run's integer program may take (apps.scheduler.placement_program;
# docs/scheduling.md): past it, the solver's best plan if it beats first-fit decreasing, else FFD's.
PLACEMENT_SOLVER_TIME_LIMIT_SECONDS = env.seconds("PLACEMENT_SOLVER_TIME_LIMIT_SECONDS", 2.0)

# --- Webhooks (apps.webhooks; docs/api.md "Webhooks") ---------------------------------
# Whether callback URLs may be on loopback, private, link-local or other non-public
# addresses (checked as ALLOW_PRIVATE_UPSTREAMS is, at submission and at each
# delivery). Local profile: yes (a receiver beside `make run`). Production: no.
WEBHOOKS_ALLOW_PRIVATE = env.boolean("WEBHOOKS_ALLOW_PRIVATE", PROFILE == "local")
# Attempts per delivery before it is marked failed (an operator may retry it).
WEBHOOK_MAX_ATTEMPTS = env.integer("WEBHOOK_MAX_ATTEMPTS", 10, minimum=1, expected="a number of attempts")
# The wait after the first failed attempt; it doubles after each one, up to
# WEBHOOK_BACKOFF_MAX_SECONDS, each wait jittered down by up to half. Defaults: ~1.5 h of tries.
WEBHOOK_BACKOFF_SECONDS = env.seconds("WEBHOOK_BACKOFF_SECONDS", 10)
WEBHOOK_BACKOFF_MAX_SECONDS = env.seconds("WEBHOOK_BACKOFF_MAX_SECONDS", 3600)
# One attempt's bound (connect, send, read the answer).
WEBHOOK_TIMEOUT_SECONDS = env.seconds("WEBHOOK_TIMEOUT_SECONDS", 10)
# The delivery loop's look when nothing wakes it (a safety net: an ended task wakes it).
WEBHOOK_TICK_SECONDS = env.seconds("WEBHOOK_TICK_SECONDS", 5)

# --- Streaming ------------------------------------------------------------------------
# Chunks arriving faster than this are joined into one stream message.
STREAM_COALESCE_SECONDS = env.seconds("STREAM_COALESCE_SECONDS", 0.02)
STREAM_TTL_SECONDS = env.whole_seconds("STREAM_TTL_SECONDS", 86400)  # Redis stream log lifetime
STREAM_TOKEN_SECONDS = 300
# WebSocket streams one tenant may have open at once, over all server processes
# (apps.streaming.open_streams); one more is closed with code 4429.
MAX_STREAMS_PER_TENANT = env.integer("MAX_STREAMS_PER_TENANT", 100, minimum=1, expected="a number of streams")
# Browser origins (besides the server's own host) allowed to open streams; "*" for any.
STREAM_ALLOWED_ORIGINS = env.comma_list("STREAM_ALLOWED_ORIGINS")

# --- Metrics (GET /metrics, llmagentos.metrics) -----------------------------------------
# The bearer token a Prometheus server scrapes with; empty: staff sessions only.
# The output reveals usage (tokens by tenant), hence no anonymous access.
METRICS_TOKEN = env.string("METRICS_TOKEN")

# --- Static files ------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# run_platform collects static files; finders serve them when DEBUG is on.
WHITENOISE_USE_FINDERS = DEBUG

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# The names logging accepts (it refuses other spellings, "info" included, only when configured).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL", "NOTSET")
LOG_LEVEL = env.choice("LOG_LEVEL", "INFO", LOG_LEVELS)
# "text" for people; "json" (one object per line) for log shippers (apps.core.logs).
LOG_FORMAT = env.choice("LOG_FORMAT", "text", ("text", "json"))
# One configuration for every process: the server, scheduler and worker
# processes apply it when Django starts, and run_platform hands it to its
# supervisor (standard library only: so is apps.core.logs). Every line gets
# the time, level, logger, process, request id and task id on the handler.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "apps.core.logs.ContextFilter"}},
    "formatters": {
        "text": {"()": "apps.core.logs.TextFormatter"},
        "json": {"()": "apps.core.logs.JsonFormatter"},
    },
    "handlers": {"stderr": {"class": "logging.StreamHandler", "filters": ["context"], "formatter": LOG_FORMAT}},
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        # Huey narrates each job it runs at INFO ("Executing …", "… executed in"):
        # the platform's own lines say what happened to a task. A handler of its
        # own here also keeps run_huey from adding its differently formatted one.
        "huey": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        # django-axes says "BEGIN" at every start and narrates each login at INFO;
        # its warnings (a failed login, a lockout) are what an operator needs.
        "axes": {"level": "WARNING"},
    },
}

# --- Profile: production hardening ------------------------------------------------------
if PROFILE == "production":
    SECURE_SSL_REDIRECT = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
