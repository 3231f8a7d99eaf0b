"""Pages about work: the task list and the live trace of one task."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.paginator import Paginator
from django.db.models.functions import Length
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from aiworkforce.http import HtmxHttpRequest
from approvals.models import ApprovalRequest, Escalation
from tasks.models import OutboxStatus, Task, TaskStatus
from tasks.selectors import (
    task_for_user,
    task_memories,
    task_requester_for,
    task_tree_for,
    tasks_visible_to,
    tree_is_live,
)
from tasks.trace import describe_step


@require_GET
def task_list(request: HtmxHttpRequest) -> HttpResponse:
    """Recent tasks of the person's teams, filterable by status."""
    status = request.GET.get("status", "")
    tasks = tasks_visible_to(request.user).order_by("-created_at")
    if status in TaskStatus.values:
        tasks = tasks.filter(status=status)
    page = Paginator(tasks, 50).get_page(request.GET.get("page"))
    template = "tasks/task_list.html"
    if request.htmx and not request.htmx.boosted:
        template += "#task-rows"
    return render(
        request,
        template,
        {"page": page, "status": status, "statuses": TaskStatus.choices},
    )


@require_GET
def task_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """One task's trace; while it is not finished the trace refreshes itself."""
    task = task_for_user(request.user, pk)
    all_steps = list(task.steps.order_by("seq"))
    steps = [{"step": step, "text": describe_step(step)} for step in all_steps]
    tree = task_tree_for(request.user, task)
    emails = list(task.emails.order_by("created_at", "pk"))
    context = {
        "task": task,
        "emails": emails,
        # Files that came with the mail the task was made from (none for other tasks).
        "attachments": list(
            task.mail_attachments.defer("content", "text")
            .annotate(stored=Length("content"))
            .order_by("pk")
        ),
        "emails_failed": sum(email.status == OutboxStatus.FAILED for email in emails),
        "requested_by": task_requester_for(request.user, task),
        "tree": tree,
        "tree_live": tree_is_live(tree) or not task.is_finished,
        "steps": steps,
        **task_memories(task, all_steps),
        "live": not task.is_finished,
        "approvals": ApprovalRequest.objects.filter(task=task).select_related("decided_by"),
        "escalations": Escalation.objects.filter(task=task).select_related("answered_by"),
        "model_settings": _model_settings(task),
    }
    template = "tasks/task_detail.html"
    if request.htmx and not request.htmx.boosted:
        template += "#trace"
    return render(request, template, context)


@require_GET
def task_attachment(request: HtmxHttpRequest, pk: int, attachment_id: int) -> HttpResponse:
    """Download a file that came with the task's mail, never shown inline (it is untrusted)."""
    task = task_for_user(request.user, pk)
    attachment = get_object_or_404(task.mail_attachments, pk=attachment_id)
    if not attachment.content:
        raise Http404(attachment.note or "This file was listed but not kept.")
    response = HttpResponse(bytes(attachment.content), content_type="application/octet-stream")
    response["Content-Disposition"] = content_disposition_header(True, attachment.filename)
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _model_settings(task: Task) -> dict | None:
    """What to check when the endpoint refused the task's requests (never the key itself)."""
    if task.status != TaskStatus.MODEL_MISCONFIGURED:
        return None
    employee = task.employee
    return {
        "model": employee.model_name or settings.DEFAULT_MODEL,
        "model_is_own": bool(employee.model_name),
        "endpoint": _without_credentials(employee.model_base_url or settings.OPENAI_BASE_URL),
        "endpoint_is_own": bool(employee.model_base_url),
    }


def _without_credentials(url: str) -> str:
    """The endpoint as people may see it: no user:password@, no query (which may hold a key)."""
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@require_GET
def task_tree_hx(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The linked requests of a task with their live status (polled while any is unfinished)."""
    task = task_for_user(request.user, pk)
    tree = task_tree_for(request.user, task)
    return render(
        request,
        "tasks/task_detail.html#tree",
        {"task": task, "tree": tree, "tree_live": tree_is_live(tree) or not task.is_finished},
    )
