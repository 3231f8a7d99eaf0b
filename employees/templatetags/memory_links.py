"""`{{ employee|memory_url }}` and `{{ team|memory_url }}`: the link to their memory page."""

from __future__ import annotations

from django import template
from django.urls import reverse

from employees.models import Employee, Team

register = template.Library()


@register.filter
def memory_url(owner: Employee | Team) -> str:
    if isinstance(owner, Employee):
        return reverse("memory:page", args=[f"employees/{owner.handle}"])
    if isinstance(owner, Team):
        return reverse("memory:page", args=[f"teams/{owner.pk}"])
    return ""
