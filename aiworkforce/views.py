"""Project-wide views."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


@require_GET
@login_not_required
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and monitors: the app answers and reaches its database."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


@never_cache
@login_not_required
def admin_login(request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
    """The back office's login page, which takes no password: every sign-in goes through allauth.

    Django's own admin login form would authenticate a password alone, skipping the MFA stage
    (and would let a signed-in person become a staff user that way). Anonymous visitors go to
    allauth's login with `next`; staff go on; anyone else is told whose session this is.
    """
    next_url = request.GET.get(REDIRECT_FIELD_NAME, "")
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = reverse("admin:index")
    if not request.user.is_authenticated:
        return redirect_to_login(next_url)
    if admin.site.has_permission(request):
        return HttpResponseRedirect(next_url)
    query = QueryDict(mutable=True)
    query[REDIRECT_FIELD_NAME] = next_url
    login_url = f"{reverse('account_login')}?{query.urlencode(safe='/')}"
    return render(
        request, "aiworkforce/back_office_closed.html", {"login_url": login_url}, status=403
    )
