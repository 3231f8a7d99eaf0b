"""The personal API tokens page (reached from Security): list, make (shown once), revoke."""

from __future__ import annotations

from allauth.account.decorators import reauthentication_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from aiworkforce.api_tokens import (
    api_token_create,
    api_token_for_user,
    api_token_revoke,
    api_tokens_of,
)
from aiworkforce.http import HtmxHttpRequest


def _page(request: HtmxHttpRequest, *, template: str = "aiworkforce/api_tokens.html", **extra):
    context = {
        "tokens": list(api_tokens_of(request.user)),
        "mcp_url": request.build_absolute_uri(reverse("mcp_server:endpoint")),
        **extra,
    }
    return render(request, template, context)


@require_GET
@never_cache
# Asked when the page opens (as GitHub's "sudo mode" does), so that the form's POST finds the
# password freshly confirmed: asked at the POST, allauth would send the person back to it as a GET.
@reauthentication_required(app="allauth.mfa")
def api_tokens(request: HtmxHttpRequest) -> HttpResponse:
    """The person's tokens and a form to make one."""
    return _page(request)


@require_POST
@never_cache  # the response carries the secret: no cache may keep it
# A token can act without the second factor, so making one asks for the password again (as
# allauth's own MFA pages do, under the same MFA_REAUTHENTICATION_REQUIRED setting).
@reauthentication_required(app="allauth.mfa")
def api_token_create_view(request: HtmxHttpRequest) -> HttpResponse:
    """Make a token and show its secret, this once, with how to configure an MCP client."""
    try:
        token, plaintext = api_token_create(user=request.user, name=request.POST.get("name", ""))
    except ValidationError as exc:
        return _page(request, error=" ".join(exc.messages), name=request.POST.get("name", ""))
    return _page(request, created=token, plaintext=plaintext)


@require_POST
def api_token_revoke_hx(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Revoke one of the person's own tokens (anyone else's is a 404); clients using it stop."""
    token = api_token_for_user(request.user, pk)
    api_token_revoke(token=token, user=request.user)
    if not request.htmx:
        return redirect("mcp_server:tokens")
    return render(request, "aiworkforce/api_tokens.html#token-row", {"token": token})
