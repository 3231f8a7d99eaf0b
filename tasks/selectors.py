"""Reads of tasks, scoped to what a person may see: the tasks of their teams' employees."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from employees.models import TeamMembership
from tasks.models import Task


def tasks_visible_to(user) -> QuerySet[Task]:
    qs = Task.objects.select_related("employee", "employee__team")
    if user.is_superuser:
        return qs
    return qs.filter(employee__team__in=TeamMembership.objects.filter(user=user).values("team"))


def task_for_user(user, pk: int) -> Task:
    """The task if the person may see it; 404 otherwise (never 403, which would confirm it exists)."""
    task = tasks_visible_to(user).filter(pk=pk).first()
    if task is None:
        raise Http404("No such task.")
    return task
