"""Values every page's shell needs."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject


def product(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    inbox_count = 0
    if user is not None and user.is_authenticated:
        from approvals.selectors import pending_count_for

        # Counted only if a template shows the badge: fragments and swaps never pay for it.
        inbox_count = SimpleLazyObject(lambda: pending_count_for(user))
    return {
        "inbox_count": inbox_count,
        "product_name": settings.PRODUCT_NAME,
        "offline_mode": not settings.OPENAI_API_KEY,
        "allow_signup": settings.ALLOW_SIGNUP,
    }
