"""A malformed environment value stops start-up naming the variable; production values pass --deploy."""

from __future__ import annotations

import secrets

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
