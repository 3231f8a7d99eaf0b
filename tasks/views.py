"""Pages about work: the task list and the live trace of one task."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.paginator import Paginator
from django.db.models.functions import Length
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET
from django_htmx.http import trigger_client_event

from aiworkforce.http import HtmxHttpRequest
from aiworkforce.pagination import SEARCH_COUNT_CAP, SearchPaginator
from approvals.models import ApprovalRequest, ApprovalStatus, Escalation
from approvals.selectors import approvals_for
from employees.selectors import employees_visible_to, teams_visible_to
from tasks.forms import TaskFilterForm
from tasks.models import OutboxStatus, Task, TaskStatus
from tasks.selectors import (
    search_count_at_most,
    task_assigners,
    task_for_user,
    task_is_live,
    task_list_rows,
    task_memories,
    task_tree_for,
    tasks_listed_for,
    tree_is_live,
    working_hours_resume,
)
from tasks.trace import trace_items

PAGE_SIZE = 50
FILTER_NAMES = ("q", "employee", "team", "status", "source", "created_from", "created_to")


@require_GET
def task_list(request: HtmxHttpRequest) -> HttpResponse:
    """The tasks of the person's teams: search and filters swap the list, which keeps itself
    up to date; delegated tasks are nested under the task that delegated them."""
    form = TaskFilterForm(
        request.GET or None,
        teams=teams_visible_to(request.user).order_by("name"),
        employees=employees_visible_to(request.user)
        .select_related(None)
        .only("pk", "name", "handle")
        .order_by("name"),
    )
    filters = form.filters()
    listed = tasks_listed_for(request.user, filters)
    paginator = (
        SearchPaginator(
            listed,
            PAGE_SIZE,
            count_at_most=lambda cap: search_count_at_most(listed, cap),
            wanted_page=request.GET.get("page"),
        )
        if filters.query
        else Paginator(listed, PAGE_SIZE)
    )
    page = paginator.get_page(request.GET.get("page"))
    context = {
        "form": form,
        "page": page,
        "rows": task_list_rows(request.user, list(page.object_list), nested=not filters.narrowed),
        "problems": form.problems() if form.is_bound else [],
        "filtered": filters.narrowed,
        "count_capped": filters.query and page.paginator.count > page.paginator.cap,
        "count_cap": SEARCH_COUNT_CAP,
        "query_string": _filters_only(request.GET).urlencode(),
    }
    template = "tasks/task_list.html"
    if request.htmx and not request.htmx.boosted:
        template += "#task-rows"
    return render(request, template, context)


def _filters_only(params: QueryDict) -> QueryDict:
    kept = QueryDict(mutable=True)
    for name in FILTER_NAMES:
        if params.get(name):
            kept[name] = params[name]
    return kept


@require_GET
def task_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """One task's trace; it refreshes itself while the task is at work, not while it waits."""
    task = task_for_user(request.user, pk)
    template = "tasks/task_detail.html"
    if request.htmx and not request.htmx.boosted:
        template += "#trace"
    return render(request, template, _detail_context(request, task))


def _detail_context(request: HtmxHttpRequest, task: Task) -> dict:
    all_steps = list(task.steps.order_by("seq"))
    escalations = list(
        Escalation.objects.filter(task=task).select_related("answered_by").order_by("pk")
    )
    approvals = list(
        ApprovalRequest.objects.filter(task=task)
        .select_related("employee__team", "task", "decided_by")
        .order_by("pk")
    )
    # Pending requests the person may decide are shown as their inbox card, with its buttons.
    decidable = set(
        approvals_for(request.user)
        .filter(task=task, status=ApprovalStatus.PENDING)
        .values_list("pk", flat=True)
    )
    steps = trace_items(all_steps, escalation_ids={e.pk for e in escalations})
    failed = [item for item in steps if item["failed"]]
    tree = task_tree_for(request.user, task)
    emails = list(task.emails.order_by("created_at", "pk"))
    live = task_is_live(task)
    return {
        "task": task,
        "outcome": _outcome(task, failed),
        "failed_steps": failed,
        "emails": emails,
        # Files that came with the mail the task was made from (none for other tasks).
        "attachments": list(
            task.mail_attachments.defer("content", "text")
            .annotate(stored=Length("content"))
            .order_by("pk")
        ),
        "emails_failed": sum(email.status == OutboxStatus.FAILED for email in emails),
        "assigned_by": task_assigners(request.user, [task])[task.pk],
        "tree": tree,
        "tree_live": live or tree_is_live(tree),
        "steps": steps,
        **task_memories(task, all_steps),
        "live": live,
        "resumes": working_hours_resume(task) if task.status == TaskStatus.WAITING_HOURS else "",
        "approvals": [
            {"approval": approval, "decidable": approval.pk in decidable} for approval in approvals
        ],
        "escalations": escalations,
        "model_settings": _model_settings(task),
    }


def _outcome(task: Task, failed: list[dict]) -> dict:
    """The status as the page shows it: a done task with a failed step is not plain "Done"."""
    if task.status == TaskStatus.DONE and failed:
        return {"label": "Done with errors", "css": "done_with_errors"}
    return {"label": task.get_status_display(), "css": task.status}


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
    """The linked requests of a task with their live status (polled while any is at work).

    The page says which status it shows (`shown`): when the task's own status has changed,
    the trace (which does not poll while the task waits) is told to refresh.
    """
    task = task_for_user(request.user, pk)
    tree = task_tree_for(request.user, task)
    response = render(
        request,
        "tasks/task_detail.html#tree",
        {"task": task, "tree": tree, "tree_live": task_is_live(task) or tree_is_live(tree)},
    )
    if request.GET.get("shown") not in (None, task.status):
        trigger_client_event(response, "task-changed")
    return response
