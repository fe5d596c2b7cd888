"""All settings, read from the environment (django-environ) with embedded defaults.

With nothing set, the project runs on SQLite and Celery's filesystem transport under
``var/`` so that ``make run`` needs no servers. Production sets ``DATABASE_URL``
(PostgreSQL) and ``CELERY_BROKER_URL`` (Redis).
"""

import base64
import hashlib
import ipaddress
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

VAR_DIR.mkdir(exist_ok=True)  # local state: SQLite, the filesystem broker, beat's schedule

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set unless DEBUG is on.")
    SECRET_KEY = "django-insecure-development-only-key"  # noqa: S105 - DEBUG only

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "clientflow_webhooks",
    "endpoints",
    "deliveries",
]

MIDDLEWARE = [
    # /healthz, /readyz and /metrics, answered before the host check and the HTTPS redirect.
    "clientflow_webhooks.operations.OperationsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "clientflow_webhooks.middleware.RejectNulMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a lockout into its response.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # Rate-limits logins against guessing (django-axes), then the ordinary check.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
# Locks the pair: one person guessing cannot lock everyone out of an account.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_TEMPLATE = "registration/locked.html"
AXES_RESET_ON_SUCCESS = True

# HTTPS in production: redirect, secure cookies, HSTS. Behind a proxy that terminates
# TLS, set SECURE_PROXY_SSL_HEADER_ENABLED so Django trusts its X-Forwarded-Proto.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
if env.bool("SECURE_PROXY_SSL_HEADER_ENABLED", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Behind that proxy every client would share its address: axes takes the client's
    # from X-Forwarded-For, as set by the one proxy in front.
    AXES_IPWARE_PROXY_COUNT = env.int("AXES_PROXY_COUNT", default=1)
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]
SESSION_COOKIE_HTTPONLY = True

ROOT_URLCONF = "clientflow_webhooks.urls"
WSGI_APPLICATION = "clientflow_webhooks.wsgi.application"

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
                "clientflow_webhooks.views.workspaces",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one SQLite file in development: WAL and a busy
    # timeout keep them from failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;",
        }
    )
    if not DATABASES["default"]["NAME"].startswith(":memory:"):
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
# Persistent connections: a worker thread keeps its own for many deliveries (see
# CELERY_DB_REUSE_MAX); a connection that failed is replaced before the next request or task.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=300))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# PostgreSQL prepares the statements every publish and every drain runs, once per
# connection (clientflow_webhooks.db). PgBouncer in session mode (docs/scaling.md) keeps
# them; transaction mode would need PgBouncer 1.21+ with max_prepared_statements.
WEBHOOKS_PREPARED_STATEMENTS = env.bool("WEBHOOKS_PREPARED_STATEMENTS", default=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"  # collectstatic's output
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve static files straight from the apps without collectstatic in development.
WHITENOISE_USE_FINDERS = DEBUG

# One JSON object a line in production (for a log pipeline), readable lines in development;
# lines about a delivery carry its ids, workspace, attempt and outcome (clientflow_webhooks.logs).
LOG_FORMAT = env("LOG_FORMAT", default="text" if DEBUG else "json")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured("LOG_FORMAT must be json or text.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "clientflow_webhooks.logs.JsonFormatter"},
        "text": {"()": "clientflow_webhooks.logs.ReadableFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}


# --- API ---------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first, so that an anonymous request gets 401 with WWW-Authenticate.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # \u-escaped JSON: whatever a client sends can be echoed in an error without failing.
    "UNICODE_JSON": False,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "clientflow_webhooks.api.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ClientFlow Webhooks API",
    "DESCRIPTION": "Settings → Webhooks: endpoints, their signing secrets, test events and deliveries.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1/(workspaces/\{slug\}/)?",
    "COMPONENT_SPLIT_REQUEST": True,
    # No CDN: the docs page's assets come from drf-spectacular-sidecar.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# --- Celery ------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),  # its default is ./control
        "store_processed": False,
        # The filesystem transport polls; once a second would add up to a second per attempt.
        "polling_interval": 0.2,
    }
else:
    # A countdown message is held unacknowledged by the worker until it is due; the
    # visibility timeout must be longer than any countdown or Redis re-delivers it.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
# Wake-up marks that keep one queued message per endpoint must be seen by every web
# and worker process: kept in the broker's Redis, or in files under var/ in development.
_REDIS_BROKER = CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
if (
    not _REDIS_BROKER
    and not CELERY_BROKER_URL.startswith("filesystem://")
    and not env("WEBHOOKS_CACHE_URL", default="")
):
    # With a RabbitMQ broker, a per-machine default would leave marks no worker clears.
    raise ImproperlyConfigured("Set WEBHOOKS_CACHE_URL to a Redis that every web and worker process shares.")
CACHES = {
    "default": env.cache("CACHE_URL", default="locmemcache://"),
    "deliveries": env.cache(
        "WEBHOOKS_CACHE_URL", default=CELERY_BROKER_URL if _REDIS_BROKER else f"filecache://{VAR_DIR / 'cache'}"
    ),
}
if CACHES["deliveries"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    CACHES["deliveries"]["BACKEND"] = "clientflow_webhooks.cache.RedisCache"
CACHES["deliveries"].setdefault("KEY_PREFIX", "webhooks")
if CACHES["deliveries"]["BACKEND"].endswith("FileBasedCache"):
    # Development: the file cache would otherwise cull entries above 300.
    CACHES["deliveries"].setdefault("OPTIONS", {}).setdefault("MAX_ENTRIES", 100_000)
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", default="webhooks")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# At-least-once: a message is acknowledged after the task ran, and re-delivered when
# the worker running it is lost. The database stays the source of truth regardless.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fix-up would close every database connection before and after each
# task, a new connection per message; clientflow_webhooks.celery applies CONN_MAX_AGE and
# the health checks instead.
CELERY_DB_REUSE_MAX = 2**62
CELERY_BEAT_SCHEDULE_FILENAME = env("CELERY_BEAT_SCHEDULE_FILENAME", default=str(VAR_DIR / "celerybeat-schedule"))

# --- Webhooks ----------------------------------------------------------------
# Seconds one attempt may take in all: connect, TLS, request and response.
WEBHOOKS_TIMEOUT = env.float("WEBHOOKS_TIMEOUT", default=10.0)
# Seconds to wait after each transient failure; one retry per entry.
WEBHOOKS_RETRY_DELAYS = [float(d) for d in env.list("WEBHOOKS_RETRY_DELAYS", default=["1", "2", "4"])]
# A CA file trusted for deliveries in addition to the default store. Never a way to
# turn verification off.
WEBHOOKS_CA_BUNDLE = env("WEBHOOKS_CA_BUNDLE", default="") or None
# Private networks deliveries may reach anyway (CIDRs; empty in production). Development
# and the tests set loopback; everything else must be a public address (SSRF guard).
WEBHOOKS_ALLOWED_PRIVATE_NETWORKS = env.list("WEBHOOKS_ALLOWED_PRIVATE_NETWORKS", default=[])
# Keys that encrypt signing secrets at rest (Fernet keys, newest first; rotate by adding a
# new key in front, then `manage.py reencrypt_secrets`). Required in production;
# development derives one from SECRET_KEY, and `manage.py check` says so.
WEBHOOKS_ENCRYPTION_KEYS = env.list("WEBHOOKS_ENCRYPTION_KEYS", default=[])
WEBHOOKS_ENCRYPTION_KEYS_DERIVED = not WEBHOOKS_ENCRYPTION_KEYS
if WEBHOOKS_ENCRYPTION_KEYS_DERIVED:
    if not DEBUG:
        raise ImproperlyConfigured("WEBHOOKS_ENCRYPTION_KEYS must be set unless DEBUG is on.")
    WEBHOOKS_ENCRYPTION_KEYS = [
        base64.urlsafe_b64encode(
            hashlib.sha256(b"clientflow-webhooks-secrets:" + SECRET_KEY.encode()).digest()
        ).decode()
    ]
# How many test events one user may send, e.g. "10/minute" (DRF throttle syntax).
WEBHOOKS_TEST_EVENT_RATE = env("WEBHOOKS_TEST_EVENT_RATE", default="10/minute")
# Bounds on what customers and ClientFlow code may hand us.
WEBHOOKS_MAX_PAYLOAD_BYTES = env.int("WEBHOOKS_MAX_PAYLOAD_BYTES", default=256 * 1024)
WEBHOOKS_MAX_ENDPOINTS_PER_WORKSPACE = env.int("WEBHOOKS_MAX_ENDPOINTS_PER_WORKSPACE", default=50)
# Check each event's data against its type's JSON Schema (endpoints/event_types.py) when
# it is published: on in development and tests, where a wrong payload is a bug to fix;
# off in production, where it would cost every publish for what the tests already proved.
WEBHOOKS_VALIDATE_EVENT_DATA = env.bool("WEBHOOKS_VALIDATE_EVENT_DATA", default=DEBUG)
# How much of a response body is read and kept.
WEBHOOKS_RESPONSE_BODY_LIMIT = 4096
# How often beat looks for due deliveries whose broker message was lost, and how long
# a due delivery waits for its own message before the sweeper sends another.
WEBHOOKS_SWEEP_INTERVAL = env.float("WEBHOOKS_SWEEP_INTERVAL", default=5.0)
WEBHOOKS_SWEEP_GRACE = env.float("WEBHOOKS_SWEEP_GRACE", default=10.0)
WEBHOOKS_SWEEP_BATCH = env.int("WEBHOOKS_SWEEP_BATCH", default=500)

for _name in ("WEBHOOKS_TIMEOUT", "WEBHOOKS_SWEEP_INTERVAL"):
    if globals()[_name] <= 0:
        raise ImproperlyConfigured(f"{_name} must be a positive number of seconds.")
if any(delay < 0 for delay in WEBHOOKS_RETRY_DELAYS):
    raise ImproperlyConfigured("WEBHOOKS_RETRY_DELAYS must be non-negative seconds.")

CELERY_BEAT_SCHEDULE = {
    "deliveries-sweep": {
        "task": "deliveries.tasks.sweep_due_deliveries",
        "schedule": timedelta(seconds=WEBHOOKS_SWEEP_INTERVAL),
    },
}
# A worker drains one endpoint's due deliveries at a time: it claims them in batches of
# WEBHOOKS_BATCH_SIZE and starts no new attempt after WEBHOOKS_DRAIN_SECONDS, so that a
# busy endpoint yields its worker slot to the others (docs/performance.md).
WEBHOOKS_BATCH_SIZE = env.int("WEBHOOKS_BATCH_SIZE", default=50)
WEBHOOKS_DRAIN_SECONDS = env.float("WEBHOOKS_DRAIN_SECONDS", default=1.0)
# How many workers may deliver to one endpoint at once (PostgreSQL only): one customer's
# outage holds at most this many worker slots.
WEBHOOKS_ENDPOINT_CONCURRENCY = env.int("WEBHOOKS_ENDPOINT_CONCURRENCY", default=2)
# A drain whose endpoint was drained within the last second waits this long for the next
# publish before it lets go (Redis mark store only): a publish then rings it instead of
# sending a message, and is delivered in milliseconds. At most WEBHOOKS_LINGER_THREADS
# threads of a worker process wait so at once; 0 turns lingering off.
WEBHOOKS_LINGER_SECONDS = env.float("WEBHOOKS_LINGER_SECONDS", default=0.25)
WEBHOOKS_LINGER_THREADS = env.int("WEBHOOKS_LINGER_THREADS", default=8)
# Above this many endpoints, a publish hands the wake-up messages to the workers.
WEBHOOKS_FANOUT_CHUNK = env.int("WEBHOOKS_FANOUT_CHUNK", default=200)
for _name in ("WEBHOOKS_BATCH_SIZE", "WEBHOOKS_ENDPOINT_CONCURRENCY", "WEBHOOKS_FANOUT_CHUNK"):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1.")
# How long a claimed batch is reserved for the worker sending it: longer than the drain
# plus one attempt's deadline, so that only a lost worker lets the lease run out.
WEBHOOKS_LEASE_SECONDS = WEBHOOKS_DRAIN_SECONDS + WEBHOOKS_TIMEOUT + env.float("WEBHOOKS_LEASE_MARGIN", default=10.0)
# A task drains for at most WEBHOOKS_DRAIN_SECONDS plus one attempt; the limits sit well
# above that. Celery enforces them only in the prefork pool; with threads, the drain
# budget and the per-attempt deadline are what bound a task.
CELERY_TASK_SOFT_TIME_LIMIT = int(5 * WEBHOOKS_LEASE_SECONDS)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 30
if CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", float("inf")) <= CELERY_TASK_TIME_LIMIT:
    CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = CELERY_TASK_TIME_LIMIT + 60

# --- Operations (docs/operations.md) -------------------------------------------
# /metrics answers a scraper that presents `Authorization: Bearer <WEBHOOKS_METRICS_TOKEN>`
# or connects from WEBHOOKS_METRICS_ALLOWED_NETWORKS (CIDRs, judged on the address the web
# process sees). With neither set, it answers loopback in development and nobody in production.
WEBHOOKS_METRICS_TOKEN = env("WEBHOOKS_METRICS_TOKEN", default="")
WEBHOOKS_METRICS_ALLOWED_NETWORKS = env.list("WEBHOOKS_METRICS_ALLOWED_NETWORKS", default=[])
try:
    METRICS_NETWORKS = tuple(ipaddress.ip_network(n.strip(), strict=False) for n in WEBHOOKS_METRICS_ALLOWED_NETWORKS)
except ValueError as _exc:
    raise ImproperlyConfigured(f"WEBHOOKS_METRICS_ALLOWED_NETWORKS: {_exc}") from None
if WEBHOOKS_METRICS_TOKEN and len(WEBHOOKS_METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("WEBHOOKS_METRICS_TOKEN must be at least 16 characters.")
# prometheus-client's multiprocess mode: every web and worker process of a machine writes
# its counters under this directory and /metrics adds them up. It must be emptied before
# the processes start (`make run` and the tests do; see docs/operations.md). It is read
# from the environment by prometheus-client itself, when it is first imported.
PROMETHEUS_MULTIPROC_DIR = env("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR:
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)

# An enabled endpoint whose deliveries have all ended as dead letters for this many days,
# at least WEBHOOKS_AUTO_DISABLE_MIN_DEAD_LETTERS of them, is disabled (0 turns it off).
WEBHOOKS_AUTO_DISABLE_DAYS = env.float("WEBHOOKS_AUTO_DISABLE_DAYS", default=5.0)
WEBHOOKS_AUTO_DISABLE_MIN_DEAD_LETTERS = env.int("WEBHOOKS_AUTO_DISABLE_MIN_DEAD_LETTERS", default=10)
# Retention: succeeded (and cancelled) deliveries, with their attempts, are deleted this many
# days after they ended; dead letters after WEBHOOKS_DEAD_LETTER_RETENTION_DAYS (a replayed
# one that succeeds is an ordinary succeeded delivery from then on); events once older than
# WEBHOOKS_RETENTION_DAYS and needed by no delivery.
WEBHOOKS_RETENTION_DAYS = env.float("WEBHOOKS_RETENTION_DAYS", default=30.0)
WEBHOOKS_DEAD_LETTER_RETENTION_DAYS = env.float("WEBHOOKS_DEAD_LETTER_RETENTION_DAYS", default=90.0)
if WEBHOOKS_AUTO_DISABLE_DAYS < 0:
    raise ImproperlyConfigured("WEBHOOKS_AUTO_DISABLE_DAYS must be 0 (off) or a positive number of days.")
if WEBHOOKS_AUTO_DISABLE_MIN_DEAD_LETTERS < 1:
    raise ImproperlyConfigured("WEBHOOKS_AUTO_DISABLE_MIN_DEAD_LETTERS must be at least 1.")
for _name in ("WEBHOOKS_RETENTION_DAYS", "WEBHOOKS_DEAD_LETTER_RETENTION_DAYS"):
    if globals()[_name] <= 0:
        raise ImproperlyConfigured(f"{_name} must be a positive number of days.")

# Emails to workspace owners and admins (dead letters, auto-disable): the console in
# development, an SMTP server in production, e.g. EMAIL_URL=smtp+tls://user:pass@host:587.
vars().update(env.email_url("EMAIL_URL", default="consolemail://" if DEBUG else "smtp://localhost:25"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="ClientFlow Webhooks <webhooks@localhost>")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
# Where people reach the pages, for the links in those emails (no trailing slash).
WEBHOOKS_SITE_URL = env("WEBHOOKS_SITE_URL", default="http://127.0.0.1:8000" if DEBUG else "").rstrip("/")

CELERY_BEAT_SCHEDULE.update(
    {
        "endpoints-auto-disable": {
            "task": "deliveries.tasks.auto_disable_endpoints",
            "schedule": timedelta(minutes=10),
        },
        "deliveries-retention": {
            "task": "deliveries.tasks.apply_retention",
            "schedule": timedelta(hours=1),
        },
    }
)
