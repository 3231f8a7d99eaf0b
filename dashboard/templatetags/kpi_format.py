"""How the dashboard writes its figures: {{ value|percent }} and {{ interval|short_duration }}."""

from __future__ import annotations

from datetime import timedelta

from django import template

register = template.Library()

NO_FIGURE = "—"


@register.filter
def percent(value) -> str:
    """'12.5 %'; whole numbers from 10 % up; a dash when there was nothing to count."""
    if value is None:
        return NO_FIGURE
    value = float(value)
    if value == 0 or value >= 10:
        return f"{value:.0f} %"
    return f"{value:.1f} %"


@register.filter
def short_duration(value: timedelta | None) -> str:
    """'45 s', '12 min', '3.5 h', '2.1 days': one unit, the one a person thinks in."""
    if value is None:
        return NO_FIGURE
    seconds = value.total_seconds()
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        hours = seconds / 3600
        return f"{hours:.0f} h" if hours >= 10 else f"{hours:.1f} h"
    return f"{seconds / 86400:.1f} days"
