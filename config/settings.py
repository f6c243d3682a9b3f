"""Settings for the MQL CRM.

Everything comes from environment variables with safe local defaults: with none set,
the app runs on SQLite and a Celery broker that needs no server (kombu's filesystem
transport). DATABASE_URL and REDIS_URL switch to PostgreSQL and Redis.
"""

import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)
(VAR_DIR / "static").mkdir(exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# DJANGO_ENV=production: debug off and every setting `manage.py check --deploy` asks for
# (secure cookies, HSTS, SSL redirect); refuses to start without a real secret key and hosts.
DJANGO_ENV = os.environ.get("DJANGO_ENV", "development")
if DJANGO_ENV not in ("development", "production"):
    raise ImproperlyConfigured(f"DJANGO_ENV is 'development' or 'production', not {DJANGO_ENV!r}.")
PRODUCTION = DJANGO_ENV == "production"
DEBUG = env_bool("DJANGO_DEBUG", not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG cannot be on when DJANGO_ENV is production.")
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off.")
    SECRET_KEY = "insecure-local-development-key-only-for-make-run-and-tests"
if PRODUCTION and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5):
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be a random string of at least 50 characters in production.")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
if not DEBUG and ALLOWED_HOSTS == ["localhost", "127.0.0.1", "[::1]", "testserver"]:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must name the real hosts in production.")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "axes",
    "leads",
    "scoring",
    "nurturing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "leads.context_processors.roles",
            ],
            # `|person` names people the same way on every page (full name, else username).
            "builtins": ["leads.templatetags.people"],
        },
    },
]


def database_from_env() -> dict:
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
    database = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    if database["ENGINE"] == "django.db.backends.sqlite3":
        # WAL lets the web server and the Celery worker read while the other writes;
        # IMMEDIATE transactions take the write lock up front instead of failing with
        # "database is locked" half-way through. The test database is a file (not
        # :memory:) so that a real worker process can share it.
        database["CONN_MAX_AGE"] = 0
        database["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
        database["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
    elif database["ENGINE"] == "django.db.backends.postgresql":
        # No JIT compilation: this application's statements are short, and PostgreSQL
        # compiles any whose estimated cost is high — with statistics not yet gathered on a
        # freshly filled table, a 1 ms lookup spent 45 ms compiling.
        options = database.setdefault("OPTIONS", {})
        options["options"] = f"{options.get('options', '')} -c jit=off".strip()
    return database


DATABASES = {"default": database_from_env()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # Shared by every process (web, worker): throttling and locks must not live in memory.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cache_table"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username + address before the password is even checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Login brute force: after AXES_FAILURE_LIMIT wrong passwords for one username from one
# address, that pair is locked out for AXES_COOLOFF_MINUTES. Attempts are rows in the
# database (axes' database handler), so every web process on every machine counts the same.
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", 5))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("AXES_COOLOFF_MINUTES", 15)))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "leads.views.login_locked_out"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Uploaded CSV files are kept in the database (ImportJob.content), not on local disk,
# so any worker on any machine can process them.
DATA_UPLOAD_MAX_MEMORY_SIZE = 20 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 20 * 1024 * 1024
IMPORT_MAX_BYTES = int(os.environ.get("IMPORT_MAX_BYTES", 50 * 1024 * 1024))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so a bad token gets 401 with WWW-Authenticate rather than 403.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["leads.permissions.HasCrmRole"],
    # The API speaks JSON: custom attributes, event lists and nulls have no form encoding.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MQL CRM API",
    "DESCRIPTION": "Accounts, contacts, activities and bulk event ingest; scores and their explanations; the "
    "sales hand-off; scoring models (a draft's rules, preview, publish, the rescore's progress) for the MQL CRM.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Choice sets that share a field name with another: named after their model.
    "ENUM_NAME_OVERRIDES": {
        "RescoreRunReasonEnum": "scoring.models.RescoreRun.Reason",
        "VersionStatusEnum": "scoring.models.ModelVersion.Status",
        "RepReasonEnum": "leads.forms_handoff.REP_REASONS",
        "IngestStatusEnum": ["created", "duplicate", "error"],
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.openapi.add_error_responses",
    ],
}
BULK_INGEST_MAX_EVENTS = 1000

# Celery. Without REDIS_URL the broker is kombu's filesystem transport: real worker
# processes exchange messages through files under var/broker, no server needed.
BROKER_DIR = Path(os.environ.get("BROKER_DIR", VAR_DIR / "broker"))
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A task whose worker died unacknowledged is redelivered after this long.
        "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", 600)),
    }
else:
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes the database connection before and after every task unless
# this is set; then it closes it only every this many tasks, and config.celery closes it
# as Django would after a request: past CONN_MAX_AGE or broken. A new PostgreSQL connection
# per task cost a 5,000-contact rescore chunk 40 ms of its 100 (connecting, cold caches).
CELERY_DB_REUSE_MAX = 1000
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Full rescores: contacts per chunk, and how long a claimed chunk may go without
# finishing before another worker takes it over (its first worker presumed dead). On
# PostgreSQL, at a million contacts on 2 workers, a rule change took 8.7–9.4 s in chunks of
# 20,000, 9.8–10.0 s in chunks of 10,000, 11.0–11.3 s in chunks of 5,000 and 9.6–9.9 s in
# chunks of 50,000 (the last chunks leave a worker idle); a chunk of 20,000 takes about half
# a second there. Elsewhere the engine scores a chunk in Python, about 0.3 ms a contact: a
# chunk of 5,000 keeps the progress bar moving.
_POSTGRESQL = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
RESCORE_CHUNK_SIZE = int(os.environ.get("RESCORE_CHUNK_SIZE", 20000 if _POSTGRESQL else 5000))
RESCORE_CLAIM_TIMEOUT = int(os.environ.get("RESCORE_CLAIM_TIMEOUT", 300))
# Scores after new data: a drain task rescores up to this many requested contacts per
# transaction; while one drain waits in the queue no other is queued (the flag below, in
# the shared cache, expires after this many seconds in case the broker lost the task).
RESCORE_DRAIN_BATCH = int(os.environ.get("RESCORE_DRAIN_BATCH", 500))
RESCORE_DRAIN_FLAG_SECONDS = int(os.environ.get("RESCORE_DRAIN_FLAG_SECONDS", 10))

# Hand-off: how new MQLs find a rep ("round_robin": account owner, territory rules, then
# round-robin; "off": they wait unassigned for a rep to claim), and the hand-off SLA.
MQL_ROUTING = os.environ.get("MQL_ROUTING", "round_robin")
SLA_REMINDER_HOURS = int(os.environ.get("SLA_REMINDER_HOURS", 24))
SLA_EXPIRY_DAYS = int(os.environ.get("SLA_EXPIRY_DAYS", 5))
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000")

# Funnel reports: the value of a won deal (the expected value of open MQLs is this times each
# MQL's chance to convert; the report page can try another value) and the currency it is in.
DEFAULT_DEAL_VALUE = Decimal(os.environ.get("DEFAULT_DEAL_VALUE", "10000"))
REPORT_CURRENCY = os.environ.get("REPORT_CURRENCY", "EUR").upper()

CELERY_BEAT_SCHEDULE = {
    "outbox-send": {"task": "nurturing.tasks.outbox_send", "schedule": 60.0},
    "nurture-enrol": {"task": "nurturing.tasks.nurture_enrol", "schedule": 60.0},
    "nurture-advance": {"task": "nurturing.tasks.nurture_advance", "schedule": 60.0},
    "mql-sla": {"task": "leads.tasks.mql_sla_check", "schedule": 600.0},
    "handoff-sweep": {"task": "leads.tasks.handoff_sweep", "schedule": 60.0},
    "rescore-sweep": {"task": "scoring.tasks.rescore_sweep", "schedule": 60.0},
    "scores-refresh": {"task": "scoring.tasks.scores_refresh", "schedule": 3600.0},
}

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = str(VAR_DIR / "sent-mail")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", 25))
# Seconds an SMTP socket operation may block: a hung server must not hold the outbox's lease.
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", 30))
# How long a worker's claim on a batch of outbox rows lasts; rows still "sending" after
# that are presumed abandoned by a dead worker and queued again (the outbox beat task).
OUTBOX_LEASE_SECONDS = int(os.environ.get("OUTBOX_LEASE_SECONDS", 300))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Marketing <marketing@example.com>")
# Marketing email: the sender's postal address shown in every footer (anti-spam law), how long
# unsubscribe and tracking links stay valid, and the shared secret that signs bounce and
# complaint reports from the mail provider (unset: such reports are refused).
COMPANY_POSTAL_ADDRESS = os.environ.get(
    "COMPANY_POSTAL_ADDRESS", "MQL CRM Inc., 1 Example Street, 10115 Berlin, Germany"
)
EMAIL_LINK_MAX_AGE_DAYS = int(os.environ.get("EMAIL_LINK_MAX_AGE_DAYS", 365))
EMAIL_FEEDBACK_SECRET = os.environ.get("EMAIL_FEEDBACK_SECRET", "")

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", 31536000))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # Django's loggers print once, through our handler, not a second time through Django's own.
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
        # django-axes logs every login at INFO; lockouts are WARNING.
        "axes": {"level": "WARNING"},
    },
}

# Model suggestions never learn from these profile fields: ones that sales fills in after
# talking to a lead would teach the model the outcome itself (the demo's "budget confirmed").
SCORING_TUNING_EXCLUDED_FIELDS = [
    field.strip()
    for field in os.environ.get("SCORING_TUNING_EXCLUDED_FIELDS", "attribute.budget_confirmed").split(",")
    if field.strip()
]
