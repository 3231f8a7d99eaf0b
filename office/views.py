"""The live office floor at /office/: every desk's state, refreshed without reload."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import render
from django.template.loader import get_template
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from aiworkforce.http import HtmxHttpRequest
from office.selectors import Desk, Floor, FloorTeam, office_floor_for

# How often an open (visible) floor asks for its desks again.
POLL_SECONDS = 3
# Rendered desks kept per process (about 1 kB each), keyed by the desk itself.
DESK_CACHE_SIZE = 5000
_rendered_desks: dict[Desk, str] = {}


@require_GET
def office_floor(request: HtmxHttpRequest) -> HttpResponse:
    """The desks of the person's teams; htmx polls this URL for the #floor fragment alone."""
    floor = office_floor_for(request.user, now=timezone.now())
    context = {"floor": floor, "teams": _rendered(floor), "poll_seconds": POLL_SECONDS}
    template = "office/floor.html"
    if request.htmx and not request.htmx.boosted:
        template += "#floor"
    response = render(request, template, context)
    # One URL, two bodies: a cache (or the back button) must not serve one for the other.
    patch_vary_headers(response, ("HX-Request",))
    return response


def _rendered(floor: Floor) -> list[tuple[FloorTeam, list[str]]]:
    """Each team with its desks' HTML.

    Rendering 1,000 desks through the template was most of a refresh (`bench office`), and
    from one refresh to the next most desks are unchanged. A desk is a value holding all it
    shows, and its HTML depends on nothing else (no user, no request), so each distinct desk
    is rendered once per process and found again by equality. Not in DEBUG, where templates
    are edited while the server runs.
    """
    template = None
    cache = {} if settings.DEBUG else _rendered_desks
    if len(cache) > DESK_CACHE_SIZE:
        cache.clear()
    teams = []
    for team in floor.teams:
        desks = []
        for desk in team.desks:
            html = cache.get(desk)
            if html is None:
                template = template or get_template("office/floor.html#desk")
                html = cache[desk] = template.render({"desk": desk})
            desks.append(html)
        teams.append((team, desks))
    return teams
