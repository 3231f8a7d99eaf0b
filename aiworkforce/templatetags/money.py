"""{{ value|money }}: the one money format (aiworkforce.money.format_money)."""

from __future__ import annotations

from django import template

from aiworkforce.money import format_money

register = template.Library()


@register.filter
def money(value) -> str:
    return format_money(value)
