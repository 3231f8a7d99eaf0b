"""Middleware of the project."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import resolve_url


class HtmxLoginRedirectMiddleware:
    """When a session expires, send htmx requests to the login page, not into the page.

    Without this a polling fragment would swap the login page's HTML into the navigation.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.headers.get("HX-Request") == "true" and response.status_code == 302:
            login = resolve_url(settings.LOGIN_URL)
            if response["Location"].startswith(login):
                redirect = HttpResponse(status=204)
                redirect["HX-Redirect"] = response["Location"]
                return redirect
        return response
