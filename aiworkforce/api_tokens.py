"""Personal API tokens: made and revoked by their owner, checked on every MCP request.

A token is `aiw_` and 43 URL-safe characters (256 random bits). Only its SHA-256 is stored, so
the table cannot be replayed; a lookup by that hash is the check (a guess of the secret learns
nothing from timing, because the attacker cannot steer the hash), and the stored hash is compared
again with `hmac.compare_digest`. The secret is returned once, to be shown once; it never reaches
a log or the audit trail (only the token's name and prefix do).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from aiworkforce.audit import Actor, audit_log
from aiworkforce.models import ApiToken
from aiworkforce.storable import validate_storable

TOKEN_PREFIX = "aiw_"  # noqa: S105 - a marker, not a secret
PREFIX_LENGTH = len(TOKEN_PREFIX) + 8  # what lists show: "aiw_" and the first 8 characters
MAX_ACTIVE_TOKENS = 25  # per person; more means tokens are being made and forgotten
# last_used_at is written at most this often per token: a busy client costs no write per call.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_MAX_PLAINTEXT = 200  # anything longer is not ours, and is not even hashed


def _digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def api_token_create(*, user, name: str) -> tuple[ApiToken, str]:
    """Make a token for `user`; returns it and its secret, which is never available again."""
    name = (name or "").strip()
    if not name:
        raise ValidationError("Name the token after where you will use it, e.g. 'Laptop IDE'.")
    if len(name) > 100:
        raise ValidationError("Keep the name to 100 characters.")
    validate_storable(name, what="The name")
    if ApiToken.objects.filter(user=user, revoked_at__isnull=True).count() >= MAX_ACTIVE_TOKENS:
        raise ValidationError(
            f"You already have {MAX_ACTIVE_TOKENS} active tokens; revoke the ones you no "
            "longer use first."
        )
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name, prefix=plaintext[:PREFIX_LENGTH], token_hash=_digest(plaintext)
        )
        audit_log(
            action="api_token.created",
            actor=Actor.for_user(user),
            subject=token,
            data={"name": name, "prefix": token.prefix},
        )
    return token, plaintext


def api_token_revoke(*, token: ApiToken, user) -> bool:
    """Revoke a token (its owner, or a superuser in the back office). False if it already was."""
    now = timezone.now()
    with transaction.atomic():
        won = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
        if won:
            audit_log(
                action="api_token.revoked",
                actor=Actor.for_user(user),
                subject=token,
                data={"name": token.name, "prefix": token.prefix, "owner": token.user_id},
            )
    token.refresh_from_db(fields=["revoked_at"])
    return bool(won)


def api_token_authenticate(plaintext: str):
    """The active user a token belongs to, or None: unknown, revoked, or the user inactive."""
    if not plaintext or len(plaintext) > _MAX_PLAINTEXT or not plaintext.startswith(TOKEN_PREFIX):
        return None
    try:
        digest = _digest(plaintext)
    except UnicodeEncodeError:  # a lone surrogate: not a token of ours
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(token_hash=digest, revoked_at__isnull=True)
        .first()
    )
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    if not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or token.last_used_at < now - LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
    return token.user


# --- reads --------------------------------------------------------------------------------------


def api_tokens_of(user) -> QuerySet[ApiToken]:
    """A person's tokens, active first, newest first."""
    return ApiToken.objects.filter(user=user).order_by(
        F("revoked_at").desc(nulls_first=True), "-created_at", "-id"
    )


def api_token_for_user(user, pk: int) -> ApiToken:
    """One of the person's own tokens; 404 for anyone else's, as for one that does not exist."""
    token = ApiToken.objects.filter(user=user, pk=pk).first()
    if token is None:
        raise Http404("No such token.")
    return token
