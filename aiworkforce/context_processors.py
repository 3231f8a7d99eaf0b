"""Values every page's shell needs."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def product(request: HttpRequest) -> dict:
    return {
        "product_name": settings.PRODUCT_NAME,
        "offline_mode": not settings.OPENAI_API_KEY,
        "allow_signup": settings.ALLOW_SIGNUP,
    }
