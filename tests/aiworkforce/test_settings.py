"""A malformed environment value stops start-up naming the variable; production values pass --deploy."""

from __future__ import annotations

import secrets
from decimal import Decimal

import pytest

from tests.aiworkforce.helpers import manage

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "workforce.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://workforce.example.com",
}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "maybe"}, "DEBUG must be a boolean"),
        ({"Q_WORKERS": "two"}, "Q_WORKERS must be a whole number, got 'two'"),
        ({"Q_WORKERS": "0"}, "Q_WORKERS must be at least 1"),
        (
            {"EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend", "EMAIL_PORT": "smtp"},
            "EMAIL_PORT must be a whole number",
        ),
        ({"ALLOWED_HOSTS": "a.example,,b.example"}, "ALLOWED_HOSTS must be a comma-separated list"),
        (
            {"DEFAULT_PRICE_PER_MTOK_IN": "-1"},
            "DEFAULT_PRICE_PER_MTOK_IN must be a finite number of at least 0",
        ),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of"),
        ({"DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL must point at PostgreSQL"),
        ({"Q_TIMEOUT": "900", "Q_RETRY": "600"}, "Q_TIMEOUT must be lower than Q_RETRY"),
        ({"DEBUG": "false"}, "SECRET_KEY must be set when DEBUG is false"),
        ({"DEBUG": "false", "SECRET_KEY": "short"}, "SECRET_KEY is too short"),
    ],
)
def test_malformed_value_stops_startup_naming_the_variable(env, message):
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_check_deploy_is_clean_with_production_values():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_complains_in_development_mode():
    result = manage("check", "--deploy", env={"DEBUG": "true"})
    assert "security.W018" in result.stderr  # DEBUG on


def test_field_encryption_key_can_rotate_without_losing_secrets(settings):
    from cryptography.fernet import Fernet

    from aiworkforce.secrets import decrypt_secret, encrypt_secret

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEY = old
    stored = encrypt_secret("whsec_abc")
    settings.FIELD_ENCRYPTION_KEY = f"{new},{old}"
    assert decrypt_secret(stored) == "whsec_abc"


# --- an empty value means "use the default", for every type -------------------------------------
EMPTY_MEANS_DEFAULT = [
    ("env_bool", {"default": True}, True),
    ("env_bool", {"default": False}, False),
    ("env_str", {"default": "fallback"}, "fallback"),
    ("env_int", {"default": 7, "minimum": 1}, 7),
    ("env_decimal", {"default": "1.50"}, Decimal("1.50")),
    ("env_list", {"default": ["a.example"]}, ["a.example"]),
    ("env_choice", {"default": "INFO", "choices": {"INFO", "DEBUG"}}, "INFO"),
    ("env_json_retention", {"default": {"episode": 90}}, {"episode": 90}),
]


@pytest.mark.parametrize("empty", ["", "   ", "\t"])
@pytest.mark.parametrize(("reader", "kwargs", "expected"), EMPTY_MEANS_DEFAULT)
def test_an_empty_value_reads_as_the_default_for_every_type(
    monkeypatch, reader, kwargs, expected, empty
):
    from aiworkforce import env

    monkeypatch.setenv("AIW_SOME_SETTING", empty)
    assert getattr(env, reader)("AIW_SOME_SETTING", **kwargs) == expected
    monkeypatch.delenv("AIW_SOME_SETTING")
    assert getattr(env, reader)("AIW_SOME_SETTING", **kwargs) == expected


def test_empty_price_table_is_the_built_in_one(monkeypatch):
    from aiworkforce.env import env_json_prices

    monkeypatch.setenv("MODEL_PRICES", " ")
    assert env_json_prices("MODEL_PRICES") == {}


def test_empty_security_variables_keep_the_secure_production_defaults():
    """`SESSION_COOKIE_SECURE=` (say, from an env file template) must not turn HTTPS hardening off."""
    empty = {
        name: ""
        for name in (
            "SECURE_SSL_REDIRECT",
            "SESSION_COOKIE_SECURE",
            "CSRF_COOKIE_SECURE",
            "SECURE_HSTS_SECONDS",
            "SECURE_HSTS_INCLUDE_SUBDOMAINS",
            "SECURE_HSTS_PRELOAD",
            "BEHIND_TLS_PROXY",
        )
    }
    result = manage("check", "--deploy", "--fail-level", "WARNING", env={**PRODUCTION, **empty})
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_empty_debug_is_refused_rather_than_read_as_development_mode():
    """The one exception to "blank means the default": DEBUG's default is development mode."""
    result = manage("check", env={**PRODUCTION, "DEBUG": " "})
    assert result.returncode != 0
    assert "DEBUG is set but empty: set DEBUG=false in production" in result.stderr


def test_empty_var_dir_is_the_checkout_var_directory_not_the_current_one(tmp_path):
    import subprocess
    import sys

    from tests.aiworkforce.helpers import BASE_DIR, clean_env

    script = "from aiworkforce import embedded_db; print(embedded_db.VAR_DIR)"
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=clean_env(AIW_VAR_DIR=" ", PYTHONPATH=str(BASE_DIR)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(BASE_DIR / "var")


def _site_url(**env: str):
    """SITE_URL as the settings read it from this environment (a fresh interpreter)."""
    import subprocess
    import sys

    from tests.aiworkforce.helpers import BASE_DIR, clean_env

    overrides = {"SITE_URL": "", "CSRF_TRUSTED_ORIGINS": "", "ALLOWED_HOSTS": "", **env}
    return subprocess.run(
        [sys.executable, "-c", "from aiworkforce import settings; print(settings.SITE_URL)"],
        env=clean_env(PYTHONPATH=str(BASE_DIR), **overrides),
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "value",
    [
        "workforce.example.com",  # no scheme
        "ftp://workforce.example.com",
        "https://",  # no host
        "https://workforce.example.com/inbox/",  # a path
        "https://workforce.example.com?next=/",
        "https://workforce.example.com/#top",
        "https://admin:secret@workforce.example.com",
        "https://workforce.example.com:http",  # a port that is not a number
        "https://work force.example.com",
    ],
)
def test_a_malformed_site_url_stops_startup(value):
    result = _site_url(SITE_URL=value)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert (
        "SITE_URL must be the product's address" in result.stderr and repr(value) in result.stderr
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SITE_URL": "https://workforce.example.com/"}, "https://workforce.example.com"),
        ({"SITE_URL": "http://10.0.0.5:8000"}, "http://10.0.0.5:8000"),
        ({}, "http://localhost:8000"),  # development
        (
            {**PRODUCTION, "CSRF_TRUSTED_ORIGINS": "https://wf.example.com"},
            "https://wf.example.com",
        ),
        ({**PRODUCTION, "CSRF_TRUSTED_ORIGINS": ""}, "https://workforce.example.com"),
    ],
)
def test_site_url_is_the_setting_else_the_trusted_origin_else_the_allowed_host(env, expected):
    result = _site_url(**env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected
