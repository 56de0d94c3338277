"""One settings module, read from the environment.

Production unless told otherwise: without `ECARD_MODE` the portal runs as production and refuses
to start until every secret, key, host and service is given (one message names each missing one).
`ECARD_MODE=demo` (bin/run) and `ECARD_MODE=test` (bin/test) opt out explicitly: keys derived
from a public demo secret, local hosts, e-mail kept in the process. Every mode runs on PostgreSQL
and Redis.
"""

import base64
import hashlib
import ipaddress
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from portal import redisconn
from portal.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("ECARD_VAR_DIR", str(BASE_DIR / "var")))

MODES = ("production", "demo", "test")
MODE = env_str("ECARD_MODE", "production")
if MODE not in MODES:
    raise ImproperlyConfigured(f"ECARD_MODE must be one of {', '.join(MODES)}, not {MODE!r}")
PRODUCTION = MODE == "production"

# Every production requirement that is not met, reported together once the whole module has read them.
_missing: list[str] = []


def _required(name: str, demo_default: str) -> str:
    """A value production must be given; the demo and the tests fall back to `demo_default`."""
    if not PRODUCTION:
        return env_str(name, demo_default)
    value = env_str(name, "")
    if not value:
        _missing.append(f"{name} is not set")
    return value


_INSECURE_SECRET = "demo-insecure-secret-key-do-not-use-in-production"  # noqa: S105 (the demo and test secret; production refuses it)
SECRET_KEY = _required("SECRET_KEY", _INSECURE_SECRET)
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"])

if PRODUCTION:
    if DEBUG:
        _missing.append("DEBUG must be off")
    if SECRET_KEY and (SECRET_KEY == _INSECURE_SECRET or len(SECRET_KEY) < 50):
        _missing.append("SECRET_KEY must be a random value of at least 50 characters")
    if not ALLOWED_HOSTS:
        _missing.append("ALLOWED_HOSTS is not set")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from the portal's own static files
    "portal",
    "insurance",
    "payments",
    "backoffice",
]

MIDDLEWARE = [
    "portal.observability.requestid.RequestIdMiddleware",  # first: every log line of a request has its id
    "portal.observability.metrics.RequestMetricsMiddleware",  # times every request, partner API too
    "django.middleware.security.SecurityMiddleware",
    "portal.middleware.PartnerApiMiddleware",  # /api/v1/: only what applies to it (portal/middleware.py)
    "portal.security_headers.SecurityHeadersMiddleware",  # CSP and Permissions-Policy of the screens
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "portal.middleware.ChineseFirstMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "portal.form_encoding.FormEncodingMiddleware",  # 400 (in the chosen language) for a form body not in UTF-8
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "portal.replica.ReadYourWritesMiddleware",  # a person's non-safe request: their reads on the primary a while
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "portal.middleware.SessionTimeoutMiddleware",  # idle and absolute limits, before what redirects
    "portal.middleware.RequirePasswordChangeMiddleware",  # before MFA: enrol after choosing a password
    "portal.middleware.RequireMFAMiddleware",
]

ROOT_URLCONF = "backoffice.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.portal",
                "backoffice.context_processors.navigation",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", "")
if not DATABASE_URL:
    _missing.append("DATABASE_URL is not set (a PostgreSQL server, e.g. postgres://user@host:5432/ecard)")
    DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql"}}
else:
    # A web thread keeps its connection for 10 minutes: each new one is a backend to start and the
    # prepared statements below to plan afresh.
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 600))}
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_URL must name a PostgreSQL server (postgres://...)")
# Lets portal/prepared.py prepare the partner API's hottest reads (Django's own cursors never
# prepare). 0 turns it off, e.g. behind a transaction-mode pooler without prepared-statement support.
if env_bool("DB_PREPARED_STATEMENTS", True):
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5
# A streaming replica for the reads that tolerate lag (portal/replica.py; docs/operations.md,
# "Replica reads"). Unset: no `replica` alias, every read on the primary.
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL", "")
# A replica further behind than this (or down) is skipped: its reads go to the primary.
ECARD_REPLICA_MAX_LAG_SECONDS = env_int("ECARD_REPLICA_MAX_LAG_SECONDS", 5)
# After a person's POST (or PUT, PATCH, DELETE), their reads stay on the primary this long.
ECARD_READ_YOUR_WRITES_SECONDS = env_int("ECARD_READ_YOUR_WRITES_SECONDS", 10)
if ECARD_REPLICA_MAX_LAG_SECONDS < 1:
    raise ImproperlyConfigured("ECARD_REPLICA_MAX_LAG_SECONDS must be at least 1")
if ECARD_READ_YOUR_WRITES_SECONDS < 1:
    raise ImproperlyConfigured("ECARD_READ_YOUR_WRITES_SECONDS must be at least 1")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = dj_database_url.parse(DATABASE_REPLICA_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 600))
    if DATABASES["replica"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_REPLICA_URL must name a PostgreSQL server (postgres://...)")
    # A replica that does not answer costs a request at most this long before the primary serves it.
    DATABASES["replica"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 2)
    # Under tests the alias is the primary's test database (the replica tests point it at a real one).
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
    DATABASE_ROUTERS = ["portal.replica.ReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "portal.User"

# --- Redis: cache, Celery broker, replay protection, rate limits ----------------
# REDIS_URL: one server (redis://[:password@]host:port/db) or the master Redis Sentinel names
# (redis+sentinel://[:password@]host:port[,host:port...]/master/db): portal/redisconn.py.
REDIS_URL = env_str("REDIS_URL", "")
if not REDIS_URL:
    _missing.append("REDIS_URL is not set (a Redis server, e.g. redis://host:6379/0)")
else:
    redisconn.sentinel_address(REDIS_URL)  # a malformed URL stops the start, saying what is wrong
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        # A list, so that Django does not split the Sentinels' "host:port,host:port" into servers.
        "LOCATION": [REDIS_URL or "redis://unset"],
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "ecard"),
        "OPTIONS": {"pool_class": "portal.redisconn.CacheConnectionPool"},
    }
}
# kombu's Redis (or Sentinel) transport, but a message that cannot be decoded is logged and dropped
# (portal/broker.py).
CELERY_BROKER_URL, CELERY_BROKER_TRANSPORT, CELERY_BROKER_TRANSPORT_OPTIONS = redisconn.celery_broker(
    REDIS_URL or "redis://unset"
)

CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "Asia/Shanghai"
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# One queue per kind of work, each consumed by its own workers (deploy/systemd/ecard-worker@.service,
# `-Q <queue>,celery`): partner deliveries never wait behind an import or a periodic scan. A task
# routed nowhere goes to Celery's default queue `celery`, which every worker also consumes.
_QUEUES = ("celery", "deliveries", "imports", "periodic")
CELERY_TASK_ROUTES = {
    "payments.tasks.deliver_event": {"queue": "deliveries"},
    "payments.tasks.deliver_due_events": {"queue": "deliveries"},
    # import queue: a citizen import's split and chunk tasks run for minutes; on their own queue
    # they never hold up the short tasks.
    "insurance.tasks.run_import": {"queue": "imports"},
    "insurance.tasks.import_chunks": {"queue": "imports"},
    "insurance.tasks.requeue_stale_imports": {"queue": "periodic"},
    "backoffice.tasks.update_dashboard_rollups": {"queue": "periodic"},
    "portal.tasks.chain_audit_events": {"queue": "periodic"},
    "portal.tasks.export_audit_checkpoint": {"queue": "periodic"},
    "insurance.tasks.expire_certificates": {"queue": "periodic"},
    "payments.tasks.expire_undecided_bindings": {"queue": "periodic"},
    "payments.tasks.purge_idempotency_records": {"queue": "periodic"},
    "payments.tasks.expire_due_settlements": {"queue": "periodic"},
    "payments.tasks.scan_risk_rules": {"queue": "periodic"},
}
# The queues, declared as Celery declares a missing one: a worker started without `-Q` (bin/stack.py,
# the tests' workers, a one-host setup) consumes every one of them.
CELERY_TASK_QUEUES = [Queue(name, Exchange(name), routing_key=name) for name in _QUEUES]
# Celery's default scheduler, touching beat's liveness file as it ticks (portal/observability/liveness.py).
CELERY_BEAT_SCHEDULER = "portal.observability.liveness:BeatScheduler"
CELERY_BEAT_SCHEDULE = {
    "update-dashboard-rollups": {
        "task": "backoffice.tasks.update_dashboard_rollups",
        "schedule": float(env_int("ECARD_ROLLUP_SECONDS", 60)),
    },
    "chain-audit-events": {
        "task": "portal.tasks.chain_audit_events",
        "schedule": float(env_int("ECARD_AUDIT_CHAIN_SECONDS", 5)),
    },
    "export-audit-checkpoint": {
        "task": "portal.tasks.export_audit_checkpoint",
        "schedule": float(env_int("ECARD_AUDIT_CHECKPOINT_SECONDS", 60)),
    },
    "deliver-due-events": {
        "task": "payments.tasks.deliver_due_events",
        "schedule": float(env_int("ECARD_DELIVERY_SWEEP_SECONDS", 5)),
    },
    "expire-certificates": {
        "task": "insurance.tasks.expire_certificates",
        "schedule": 300.0,
    },
    "expire-undecided-family-bindings": {
        "task": "payments.tasks.expire_undecided_bindings",
        "schedule": 3600.0,
    },
    "purge-idempotency-records": {
        "task": "payments.tasks.purge_idempotency_records",
        "schedule": 3600.0,
    },
    "expire-due-settlements": {
        "task": "payments.tasks.expire_due_settlements",
        "schedule": 60.0,
    },
    "scan-risk-rules": {
        "task": "payments.tasks.scan_risk_rules",
        "schedule": 600.0,
    },
    "requeue-stale-imports": {
        "task": "insurance.tasks.requeue_stale_imports",
        "schedule": float(env_int("ECARD_IMPORT_SWEEP_SECONDS", 60)),
    },
}

# --- Authentication --------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # MLPS level 3 (portal/passwords.py): at most 128 characters, none invisible; three kinds of
    # characters; none of the last five passwords again.
    {"NAME": "portal.passwords.PasswordCharactersValidator", "OPTIONS": {"max_length": 128}},
    {"NAME": "portal.passwords.CharacterClassesValidator", "OPTIONS": {"min_classes": 3}},
    {"NAME": "portal.passwords.PasswordHistoryValidator", "OPTIONS": {"count": 5}},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "email", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_ADAPTER = "portal.adapters.PortalAccountAdapter"
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_SESSION_REMEMBER = False
# --- Sign-in controls (portal/signin.py, portal/middleware.py) ---
# The client's address behind the deployment's own reverse proxies: how many of them append to
# X-Forwarded-For (portal.actors.client_ip; allauth's rate limits ask the same function). 0: REMOTE_ADDR.
ECARD_TRUSTED_PROXY_COUNT = env_int("ECARD_TRUSTED_PROXY_COUNT", 0)
ALLAUTH_TRUSTED_PROXY_COUNT = ECARD_TRUSTED_PROXY_COUNT
# Failed sign-ins lock the account they name (known or not), not the address they come from.
ECARD_SIGN_IN_MAX_FAILURES = env_int("ECARD_SIGN_IN_MAX_FAILURES", 5)
ECARD_SIGN_IN_LOCK_MINUTES = env_int("ECARD_SIGN_IN_LOCK_MINUTES", 15)
# Per client address, failures in 5 minutes: high, since one office's staff may share an address.
ECARD_SIGN_IN_FAILURES_PER_IP = env_int("ECARD_SIGN_IN_FAILURES_PER_IP", 30)
# A session unused this long is signed out; SESSION_COOKIE_AGE stays the absolute limit.
ECARD_IDLE_TIMEOUT_MINUTES = env_int("ECARD_IDLE_TIMEOUT_MINUTES", 30)
for _name in (
    "ECARD_SIGN_IN_MAX_FAILURES",
    "ECARD_SIGN_IN_LOCK_MINUTES",
    "ECARD_SIGN_IN_FAILURES_PER_IP",
    "ECARD_IDLE_TIMEOUT_MINUTES",
):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1")
if ECARD_TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured("ECARD_TRUSTED_PROXY_COUNT must be 0 or more")
ACCOUNT_RATE_LIMITS = {
    "login": "60/m/ip",
    "login_failed": f"{ECARD_SIGN_IN_FAILURES_PER_IP}/5m/ip",
}
# A reset request for an address no account has sends nothing (and answers as for a known one).
ACCOUNT_EMAIL_UNKNOWN_ACCOUNTS = False
# The sign-in box says it takes a username or an e-mail address; TOTP set-up keeps the secret
# being scanned when the page is opened again (portal/signin_forms.py).
ACCOUNT_FORMS = {"login": "portal.signin_forms.LoginForm"}
MFA_FORMS = {"activate_totp": "portal.signin_forms.ActivateTOTPForm"}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "e-card portal"
SESSION_COOKIE_AGE = 8 * 3600
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False

# --- Internationalisation --------------------------------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
# Dates and grouped numbers per language (templates use the format names, never "Y-m-d").
FORMAT_MODULE_PATH = ["portal.formats"]

# --- Static files ----------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# WhiteNoise serves from the finders too (no collectstatic for the demo) but wants the folder to exist.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(VAR_DIR / "media")},
    },
    # collectstatic's output is public and served by nginx, another user: not the uploads' 0600/0700.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage",
        "OPTIONS": {"file_permissions_mode": 0o644, "directory_permissions_mode": 0o755},
    },
}

# --- REST framework (partner API) ------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "payments.api.problems.exception_handler",
}
# The partner contract's body limit (413 payload_too_large); screens' uploads are files, not counted here.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
SPECTACULAR_SETTINGS = {
    "TITLE": "e-card portal partner API",
    "VERSION": "1",
    "DESCRIPTION": (
        "The partner API of the e-card (医保电子凭证) portal. The contract is the partner guide's "
        "PARTNER_API.md (docs/partner-guide.md links it): signed requests (`ECARD-ED25519`), signed "
        "responses and webhooks (`Ecard-*` headers), RFC 9457 problem+json errors with a stable `code`, "
        "cursor pagination, idempotency keys. Where this schema and the contract differ, the contract wins."
    ),
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Certificates, linkages, bindings... each have a `state`: name the certificate's choice set.
    "ENUM_NAME_OVERRIDES": {
        "CertificateStateEnum": ["pending_activation", "active", "suspended", "revoked", "expired"],
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "payments.api.openapi.add_problem_responses",
    ],
    # Every docs asset is served by the portal (government networks have no CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"validatorUrl": None, "deepLinking": True, "supportedSubmitMethods": []},
}

# --- Security headers ------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
# Other sites learn nothing of the portal's addresses (a citizen's page id, a search's filters).
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


# --- Keys for personal data, audit chain and the portal's signing keys -----
def _derived(purpose: str) -> bytes:
    return hashlib.sha256(f"{SECRET_KEY}:{purpose}".encode()).digest()


def _versioned_keys(name: str, purpose: str) -> dict[int, bytes]:
    """Parse "1:<base64 32 bytes>,2:<...>"; the highest version is current."""
    raw = env_str(name, "")
    if not raw:
        if PRODUCTION:
            _missing.append(f"{name} is not set")
        return {1: _derived(purpose)}
    keys: dict[int, bytes] = {}
    for item in raw.split(","):
        try:
            version_text, key_text = item.strip().split(":", 1)
            key = base64.b64decode(key_text, validate=True)
            version = int(version_text)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: each item must be <version>:<base64 key>") from exc
        if len(key) != 32:
            raise ImproperlyConfigured(f"{name}: key version {version} must be 32 bytes")
        keys[version] = key
    return keys


ECARD_FIELD_ENCRYPTION_KEYS = _versioned_keys("ECARD_FIELD_ENCRYPTION_KEYS", "field-encryption")
ECARD_BLIND_INDEX_KEYS = _versioned_keys("ECARD_BLIND_INDEX_KEYS", "blind-index")
# One key: the chain is verified from its first row, so rotating it means re-chaining.
ECARD_AUDIT_HMAC_KEY = _versioned_keys("ECARD_AUDIT_HMAC_KEY", "audit-chain")[1]
ECARD_SIGNING_KEY_ENCRYPTION_KEYS = _versioned_keys("ECARD_SIGNING_KEY_ENCRYPTION_KEYS", "signing-key-encryption")
# The audit chain's signed checkpoints (portal/audit_checkpoint.py), kept outside the database so that
# a database superuser cannot cut the chain's newest rows unseen: Ed25519 private keys as 32-byte
# seeds, "1:<base64>,2:..." (the highest version signs; keep older ones to verify older checkpoints),
# and the file beat writes them to, on storage the database's administrators cannot write.
ECARD_AUDIT_CHECKPOINT_KEYS = _versioned_keys("ECARD_AUDIT_CHECKPOINT_KEYS", "audit-checkpoint")
ECARD_AUDIT_CHECKPOINT_PATH = env_str("ECARD_AUDIT_CHECKPOINT_PATH", str(VAR_DIR / "audit" / "checkpoint.json"))

# --- Partner deliveries ----------------------------------------------------
ECARD_WEBHOOK_TIMEOUT_SECONDS = env_int("ECARD_WEBHOOK_TIMEOUT_SECONDS", 10)
# How long a claimed delivery is leased to one worker before another may take it over.
ECARD_DELIVERY_LEASE_SECONDS = env_int("ECARD_DELIVERY_LEASE_SECONDS", 30)
# Production sends webhooks over https to public addresses only, checked when a URL is set and when
# each delivery connects (payments/delivery/addresses.py); the demo and the tests also use http
# and loopback (the sandbox receiver, the tests' receivers).
ECARD_WEBHOOK_PUBLIC_ONLY = env_bool("ECARD_WEBHOOK_PUBLIC_ONLY", MODE == "production")
# Seconds before each retry of a failed delivery (PARTNER_API.md "Webhooks"); tests shorten it.
_retry_schedule = env_list("ECARD_DELIVERY_RETRY_SCHEDULE", [])
if _retry_schedule and not all(item.isdigit() for item in _retry_schedule):
    raise ImproperlyConfigured("ECARD_DELIVERY_RETRY_SCHEDULE must be comma-separated whole seconds")
ECARD_DELIVERY_RETRY_SCHEDULE = [int(item) for item in _retry_schedule] or [
    15,
    15,
    30,
    180,
    600,
    1200,
    1800,
    1800,
    1800,
    3600,
    10800,
    10800,
    10800,
    21600,
    21600,
]
# Events claimed at once by one sweep (and delivered concurrently by as many threads).
ECARD_DELIVERY_BATCH_SIZE = env_int("ECARD_DELIVERY_BATCH_SIZE", 32)
# Uploads (citizen imports, stored encrypted until their job ends): readable by the
# portal's own user only.
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700
# Citizen imports (insurance/imports/): rows per chunk (a background import's file is cut
# into chunks, each claimed by any import worker and committed in one transaction), the upload
# cap, and how long a running job or chunk may be silent before it is handed to another worker.
ECARD_IMPORT_CHUNK_ROWS = env_int("ECARD_IMPORT_CHUNK_ROWS", 5000)
ECARD_IMPORT_MAX_BYTES = env_int("ECARD_IMPORT_MAX_BYTES", 50 * 1024 * 1024)
ECARD_IMPORT_STALE_SECONDS = env_int("ECARD_IMPORT_STALE_SECONDS", 120)
# An XLSX file is a zip: what it may unpack to, checked from the zip's directory before it is
# parsed (insurance/imports/reading.py). openpyxl holds every part but the sheets whole in
# memory, sharedStrings.xml first; a sheet is streamed. A million-row register fits.
ECARD_IMPORT_XLSX_MAX_UNCOMPRESSED = env_int("ECARD_IMPORT_XLSX_MAX_UNCOMPRESSED", 1024 * 1024 * 1024)
ECARD_IMPORT_XLSX_MAX_SHARED_STRINGS = env_int("ECARD_IMPORT_XLSX_MAX_SHARED_STRINGS", 64 * 1024 * 1024)
ECARD_IMPORT_XLSX_MAX_PART = env_int("ECARD_IMPORT_XLSX_MAX_PART", 8 * 1024 * 1024)  # styles, workbook, theme...
ECARD_IMPORT_XLSX_MAX_RATIO = env_int("ECARD_IMPORT_XLSX_MAX_RATIO", 100)  # unpacked / packed, per part
ECARD_IMPORT_XLSX_MAX_MEMBERS = env_int("ECARD_IMPORT_XLSX_MAX_MEMBERS", 200)
ECARD_IMPORT_XLSX_MAX_ROWS = env_int("ECARD_IMPORT_XLSX_MAX_ROWS", 1_048_576)  # a sheet's own maximum
# The largest personal-account balance an import row may set (fen; 1,000,000 yuan by default).
ECARD_IMPORT_MAX_BALANCE_FEN = env_int("ECARD_IMPORT_MAX_BALANCE_FEN", 100_000_000)
# Base URL the portal itself is reached at (the demo's sandbox partners post here).
ECARD_PUBLIC_BASE_URL = env_str("ECARD_PUBLIC_BASE_URL", "http://127.0.0.1:8000")
# The demo partners' webhook receiver served by the portal itself; off in production.
ECARD_SANDBOX_ENABLED = env_bool("ECARD_SANDBOX_ENABLED", not PRODUCTION)
# Separation of duties (DESIGN §2): a national operator reads the audit log only where the
# deployment explicitly allows one account both duties, and the account was made an auditor too.
ECARD_ALLOW_OPERATOR_AUDITOR = env_bool("ECARD_ALLOW_OPERATOR_AUDITOR", False)

# --- E-mail (allauth's password resets; Django's error mails to ADMINS) ------
if PRODUCTION:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = _required("EMAIL_HOST", "")
    DEFAULT_FROM_EMAIL = _required("DEFAULT_FROM_EMAIL", "")
else:  # the demo prints mails to its log; the test runner keeps them in memory
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    EMAIL_HOST = "localhost"
    DEFAULT_FROM_EMAIL = "e-card portal <noreply@ecard.invalid>"
EMAIL_PORT = env_int("EMAIL_PORT", 465)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", EMAIL_PORT == 465)
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", not EMAIL_USE_SSL and EMAIL_PORT == 587)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Health, metrics and logs (portal/observability/, docs/operations.md) ---
# Console log lines as JSON (one object per line, with the request id) or plain text.
LOG_FORMAT = env_str("LOG_FORMAT", "json" if PRODUCTION else "plain")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, not {LOG_FORMAT!r}")
# Who may read /metrics: clients from these networks (the address as ECARD_TRUSTED_PROXY_COUNT
# reads it), or anyone sending `Authorization: Bearer <ECARD_METRICS_TOKEN>` (empty: no token).
ECARD_METRICS_ALLOWED_CIDRS = env_list("ECARD_METRICS_ALLOWED_CIDRS", ["127.0.0.1/32", "::1/128"])
try:
    for _cidr in ECARD_METRICS_ALLOWED_CIDRS:
        ipaddress.ip_network(_cidr, strict=False)
except ValueError as _exc:
    raise ImproperlyConfigured(f"ECARD_METRICS_ALLOWED_CIDRS: {_exc}") from _exc
ECARD_METRICS_TOKEN = env_str("ECARD_METRICS_TOKEN", "")
# A Celery worker on a host of its own serves its metrics here (0: off; see docs/operations.md).
ECARD_WORKER_METRICS_PORT = env_int("ECARD_WORKER_METRICS_PORT", 0)
ECARD_WORKER_METRICS_ADDR = env_str("ECARD_WORKER_METRICS_ADDR", "127.0.0.1")
# Workers and beat touch these files while they work; `manage.py celery_alive` checks their age.
ECARD_LIVENESS_INTERVAL_SECONDS = env_int("ECARD_LIVENESS_INTERVAL_SECONDS", 10)
if ECARD_LIVENESS_INTERVAL_SECONDS < 1:
    raise ImproperlyConfigured("ECARD_LIVENESS_INTERVAL_SECONDS must be at least 1")
ECARD_WORKER_LIVENESS_FILE = env_str("ECARD_WORKER_LIVENESS_FILE", str(VAR_DIR / "run" / "celery-worker.alive"))
ECARD_BEAT_LIVENESS_FILE = env_str("ECARD_BEAT_LIVENESS_FILE", str(VAR_DIR / "run" / "celery-beat.alive"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "portal.observability.logjson.JsonFormatter"},
    },
    "filters": {
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
        "client_error_without_traceback": {"()": "portal.logs.ClientErrorWithoutTraceback"},
        "request_id": {"()": "portal.observability.requestid.RequestIdFilter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]},
        "mail_admins": {
            "level": "ERROR",
            "filters": ["require_debug_false"],
            "class": "django.utils.log.AdminEmailHandler",
        },
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # HTTP clients log request lines; delivery attempts are recorded in the database instead.
        **{name: {"level": "WARNING"} for name in ("httpx", "httpcore", "urllib3")},
        # Django's own console handler (DEBUG only) printed each line a second time beside root's.
        "django": {"handlers": ["mail_admins"], "level": "INFO", "propagate": True},
        "django.request": {"filters": ["client_error_without_traceback"]},
    },
}

if _missing:
    raise ImproperlyConfigured(
        f"The portal cannot start in {MODE} mode:\n"
        + "".join(f"  - {item}\n" for item in _missing)
        + "Set them in the environment (docs/operations.md lists each), or run the demo with `make run`."
    )
