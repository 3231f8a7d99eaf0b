"""Middleware of the project."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import resolve_url

from aiworkforce.storable import storable_problem, unstorable_message


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


class RefuseUnstorableInputMiddleware:
    """Refuse form fields and query parameters PostgreSQL cannot store, with a 400 saying so.

    forms.CharField already refuses a NUL character, but views that read request.POST directly,
    the admin's search and filter parameters and other hand-read values do not: without this
    check a NUL reaches the database and the person sees a 500 (or half of a change is saved).
    Lone surrogates cannot arrive here (Django decodes form data with replacement), but are
    refused alike. Views exempt from CSRF (the signed webhooks) check their own raw body.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if getattr(view_func, "csrf_exempt", False):
            return None
        problem = _unstorable_input(request, view_kwargs)
        if problem is None:
            return None
        return HttpResponseBadRequest(problem, content_type="text/plain; charset=utf-8")


def _unstorable_input(request, view_kwargs) -> str | None:
    sources = [("query parameter", request.GET)]
    if request.method == "POST":
        sources.append(("form field", request.POST))
    for kind, data in sources:
        for name, values in data.lists():
            for value in (name, *values):
                if problem := storable_problem(value):
                    return unstorable_message(f"The {kind} “{_shown(name)}”", problem)
    if request.method == "POST":
        for name, uploaded in request.FILES.items():
            if problem := storable_problem(uploaded.name or ""):
                return unstorable_message(f"The name of the file in “{_shown(name)}”", problem)
    for name, value in view_kwargs.items():
        if isinstance(value, str) and (problem := storable_problem(value)):
            return unstorable_message(f"The address part “{name}”", problem)
    return None


def _shown(name: str) -> str:
    """A field name fit to show in a message (the name itself may be what is wrong)."""
    return name.replace("\x00", "\\0")[:60]
