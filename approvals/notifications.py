"""Who hears about an approval request, and the emails they get (rendered for a person)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from aiworkforce.audit import redact
from approvals.models import ApprovalKind, ApprovalRequest, ApprovalStatus, NotificationMode
from employees.models import TeamRole

SUBJECT_PREFIX = "[AI Workforce]"
NOTIFIED_ROLES = (TeamRole.APPROVER, TeamRole.MANAGER)
_BODY_CHARS = 2000


def absolute_url(path: str) -> str:
    """A link for a mail: read outside the product, so with SITE_URL's scheme and host."""
    return settings.SITE_URL + path


def _with_mode(users: QuerySet, mode: str) -> QuerySet:
    if mode == NotificationMode.IMMEDIATE:  # the default, also for people without a row
        return users.filter(
            Q(notification_preference__isnull=True)
            | Q(notification_preference__mode=NotificationMode.IMMEDIATE)
        )
    return users.filter(notification_preference__mode=mode)


def approval_recipients(approval: ApprovalRequest, *, mode: str) -> QuerySet:
    """The team's approvers and managers and the employee's manager who chose this mode."""
    employee = approval.employee
    users = (
        get_user_model()
        .objects.filter(
            Q(
                team_memberships__team=employee.team_id,
                team_memberships__role__in=NOTIFIED_ROLES,
            )
            | Q(pk=employee.manager_id),
            is_active=True,
        )
        .exclude(email="")
    )
    return _with_mode(users, mode).distinct().order_by("pk")


def approvals_new_for(user, *, since, until) -> QuerySet[ApprovalRequest]:
    """Pending requests created in (since, until] that this person is told about."""
    approvals = ApprovalRequest.objects.filter(
        Q(
            employee__team__memberships__user=user,
            employee__team__memberships__role__in=NOTIFIED_ROLES,
        )
        | Q(employee__manager=user),
        status=ApprovalStatus.PENDING,
        created_at__lte=until,
    )
    if since is not None:
        approvals = approvals.filter(created_at__gt=since)
    ids = approvals.values("pk")  # the joins above may repeat a row
    return (
        ApprovalRequest.objects.filter(pk__in=ids)
        .select_related("employee__team", "task")
        .order_by("created_at", "pk")
    )


def _headline(approval: ApprovalRequest) -> str:
    if approval.kind == ApprovalKind.BUDGET_RAISE:
        return f"{approval.employee.name} asks for a budget raise"
    return f"{approval.employee.name} wants to {approval.tool_name}"


def _safe_url(url: str) -> str:
    """The URL without credentials, and without the values of secret-looking parameters."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
    except ValueError:
        return "(an invalid URL)"
    pairs = redact(dict(parse_qsl(parts.query, keep_blank_values=True)))
    query = urlencode(list(pairs.items()), safe="[]")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _indented(text: str) -> list[str]:
    if len(text) > _BODY_CHARS:
        text = text[:_BODY_CHARS] + " […]"
    return ["    " + line for line in text.splitlines() or [""]]


def describe_action(approval: ApprovalRequest) -> list[str]:
    """The proposed action as a person reads it; secrets are never shown."""
    arguments = approval.arguments or {}
    if approval.kind == ApprovalKind.BUDGET_RAISE:
        return [
            f"Budget: {arguments.get('scope', '?')}",
            f"Current limit: {arguments.get('current', '?')}",
            f"Requested limit: {arguments.get('requested', '?')}",
        ]
    if approval.tool_name == "send_email":
        return [
            "Send an email",
            f"  To: {', '.join(arguments.get('to', []))}",
            f"  Subject: {arguments.get('subject', '')}",
            "  Body:",
            *_indented(arguments.get("body", "")),
        ]
    if approval.tool_name == "http_request":
        lines = [f"HTTP {arguments.get('method', '?')} {_safe_url(arguments.get('url', ''))}"]
        if arguments.get("headers"):  # names only: header values often carry credentials
            lines.append(f"  Headers: {', '.join(sorted(arguments['headers']))}")
        if arguments.get("body"):  # bodies often carry tokens: shown in the inbox, not in mail
            lines.append(f"  Body: {len(arguments['body'])} characters (see the inbox)")
        return lines
    return [
        f"{approval.tool_name} with:",
        *_indented(json.dumps(redact(arguments), indent=2, ensure_ascii=False)),
    ]


def _deadline(approval: ApprovalRequest) -> str:
    if approval.deadline is None:
        return "no deadline"
    local = timezone.localtime(approval.deadline)
    return f"{local:%Y-%m-%d %H:%M %Z} (if nobody decides by then, it expires and is not done)"


def approval_email(approval: ApprovalRequest) -> tuple[str, str]:
    """Subject and body of the immediate notification about one request."""
    employee = approval.employee
    subject = f"{SUBJECT_PREFIX} {_headline(approval)} — approve or reject"
    lines = [
        f"{employee.name} (@{employee.handle}, team {employee.team.name}) asks for your approval "
        f"on task #{approval.task_id}: {approval.task.title}",
        "",
        "Proposed:",
        *("  " + line for line in describe_action(approval)),
        "",
        *([f"Why: {approval.reason}"] if approval.reason.strip() else []),
        f"Risk: {approval.get_risk_display()}",
        f"Decide by: {_deadline(approval)}",
        "",
        "Approve or reject it in your inbox: "
        + absolute_url(f"{reverse('approvals:inbox')}#approval-{approval.pk}"),
    ]
    return subject, "\n".join(lines) + "\n"


def digest_email(approvals: Iterable[ApprovalRequest]) -> tuple[str, str]:
    """Subject and body of one digest listing several requests."""
    approvals = list(approvals)
    count = len(approvals)
    noun = "request waits" if count == 1 else "requests wait"
    subject = f"{SUBJECT_PREFIX} {count} approval {noun} for you"
    lines = [f"{count} new approval {noun} for your decision:", ""]
    for approval in approvals:
        lines += [
            f"Request #{approval.pk}: {_headline(approval)} (task #{approval.task_id}, "
            f"{approval.get_risk_display()} risk)",
            *("    " + line for line in describe_action(approval)),
            *([f"    Why: {approval.reason}"] if approval.reason.strip() else []),
            f"    Decide by: {_deadline(approval)}",
            "",
        ]
    lines.append(
        f"Approve or reject them in your inbox: {absolute_url(reverse('approvals:inbox'))}"
    )
    return subject, "\n".join(lines) + "\n"
