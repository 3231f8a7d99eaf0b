"""The approval inbox and the escalation desk (HTMX): people decide what employees may do."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse, QueryDict
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve
from django.views.decorators.http import require_GET, require_POST

from aiworkforce.http import HtmxHttpRequest
from aiworkforce.pagination import SEARCH_COUNT_CAP, SearchPaginator
from aiworkforce.storable import json_loads_bounded
from approvals import selectors
from approvals.forms import EmailEditForm, InboxFilterForm
from approvals.models import ApprovalKind, ApprovalStatus
from approvals.services import DecisionConflict, approval_decide, escalation_answer

PAGE_SIZE = 25


def _search_paginator(request: HtmxHttpRequest, filters: dict, wanted_page=1) -> SearchPaginator:
    search = selectors.pending_search_for(request.user, **_selected(filters))
    return SearchPaginator(
        search.rows, PAGE_SIZE, count_at_most=search.count_at_most, wanted_page=wanted_page
    )


def _filters_only(params: QueryDict) -> QueryDict:
    kept = QueryDict(mutable=True)
    for name in ("q", "team", "employee", "risk", "kind"):
        if params.get(name):
            kept[name] = params[name]
    return kept


def _client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "")


def _filters(request: HtmxHttpRequest, params: QueryDict) -> tuple[InboxFilterForm, dict, list]:
    """The inbox's filter form, its valid filters (none when invalid), the person's teams."""
    teams = list(selectors.teams_deciding_for(request.user))
    employees = list(selectors.employees_deciding_for(request.user).only("pk", "name"))
    form = InboxFilterForm(params or None, teams=teams, employees=employees)
    return form, (form.cleaned_data if form.is_valid() else {}), teams


def _selected(filters: dict) -> dict:
    return {
        "team": filters.get("team"),
        "employee": filters.get("employee"),
        "risk": filters.get("risk", ""),
        "kind": filters.get("kind", ""),
        "query": (filters.get("q") or "").strip(),
    }


def _pending(request: HtmxHttpRequest, filters: dict):
    return selectors.approvals_pending_for(request.user, **_selected(filters))


def _desk_page(request: HtmxHttpRequest) -> str:
    """The desk page the htmx request comes from: "inbox", "escalations", or "" (elsewhere)."""
    path = urlsplit(request.htmx.current_url_abs_path or "").path
    try:
        match = resolve(path)
    except Resolver404:
        return ""
    return match.url_name if match.url_name in ("inbox", "escalations") else ""


def _narrowed(filters: dict) -> bool:
    return any(filters.get(name) for name in ("team", "employee", "risk", "kind", "q"))


def _desk(request: HtmxHttpRequest, *, pending: int | None = None) -> dict[str, int]:
    """The desk's counts; `pending`, when the caller counted all pending requests already."""
    if pending is None:
        return selectors.desk_counts(request.user)
    return {
        "approvals": pending,
        "escalations": selectors.escalations_open_for(request.user).count(),
    }


def _with_counts(
    request: HtmxHttpRequest,
    response: HttpResponse,
    *,
    list_count: bool = True,
    pending: int | None = None,
) -> HttpResponse:
    """Append the counters a decision changes, swapped out of band (STYLE rule 13): the
    navigation badge, and where the person decided, the desk's counts and the list's."""
    if not request.htmx:
        return response
    desk = _desk(request, pending=pending)
    page = _desk_page(request)
    context = {"oob": True, "desk": desk, "desk_page": page, "inbox_count": sum(desk.values())}
    parts = [render_to_string("base.html#inbox-badge", context, request)]
    if page:
        parts.append(render_to_string("approvals/_desk_counts.html", context, request))
    if page == "inbox" and list_count:
        _, filters, _ = _filters(request, _filters_only(request.POST))
        narrowed = _narrowed(filters)
        if not narrowed:
            context["list_count"] = desk["approvals"]
        elif _selected(filters)["query"]:
            paginator = _search_paginator(request, filters)
            context["list_count"], context["count_capped"] = paginator.count, paginator.capped
            context["count_cap"] = SEARCH_COUNT_CAP
        else:
            context["list_count"] = _pending(request, filters).count()
        parts.append(render_to_string("approvals/inbox.html#list-count", context, request))
    response.write("".join(parts))
    return response


def _row(
    request, approval, *, error: str = "", editing: bool = False, form=None, arguments_text=None
) -> HttpResponse:
    if editing and arguments_text is None:
        arguments_text = json.dumps(approval.arguments, indent=2, ensure_ascii=False)
    response = render(
        request,
        "approvals/inbox.html#approval-row",
        {
            "approval": approval,
            "error": error,
            "editing": editing,
            "edit_form": form,
            "arguments_text": arguments_text,
        },
    )
    # A decision (or finding someone else's) changes the counts; opening the editor does not.
    return response if request.method == "GET" else _with_counts(request, response)


@require_GET
def inbox(request: HtmxHttpRequest) -> HttpResponse:
    """Pending approvals of the person's teams; filters and search swap only the list."""
    return _inbox_response(request, request.GET)


def _inbox_response(request: HtmxHttpRequest, params: QueryDict) -> HttpResponse:
    form, filters, teams = _filters(request, params)
    narrowed = _narrowed(filters)
    searching = bool(_selected(filters)["query"])
    paginator = (
        _search_paginator(request, filters, params.get("page"))
        if searching
        else Paginator(_pending(request, filters), PAGE_SIZE)
    )
    page = paginator.get_page(params.get("page"))
    context = {
        "form": form,
        "page": page,
        "list_count": page.paginator.count,
        "count_capped": searching and paginator.capped,
        "count_cap": SEARCH_COUNT_CAP,
        "can_decide": bool(teams),
        "filtered": narrowed,
        "query_string": _filters_only(params).urlencode(),
    }
    # Unfiltered, the list's count is the desk's: counted once.
    pending = None if narrowed else page.paginator.count
    if request.htmx and not request.htmx.boosted:
        # The list (filtered, polled, or after a bulk decision), with the counts beside it when
        # they come free (unfiltered) or changed (a decision); a search keystroke does not pay
        # for counting every pending request again (the badge polls by itself).
        response = render(request, "approvals/inbox.html#inbox-list", context)
        if narrowed and request.method == "GET":
            return response
        return _with_counts(request, response, list_count=False, pending=pending)
    desk = _desk(request, pending=pending)
    context |= {
        "desk": desk,
        "desk_page": "inbox",
        "inbox_count": sum(desk.values()),
        "notification_mode": _notification_mode(request.user),
        "notification_modes": _modes(),
    }
    return render(request, "approvals/inbox.html", context)


@require_GET
def inbox_count_hx(request: HtmxHttpRequest) -> HttpResponse:
    """The navigation badge: pending approvals and open escalations."""
    return render(
        request, "base.html#inbox-badge", {"inbox_count": selectors.pending_count_for(request.user)}
    )


@require_POST
def approval_approve_hx(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Approve one request as proposed; the task resumes and runs exactly this action."""
    approval = selectors.approval_for_user(request.user, pk)
    try:
        approval = approval_decide(
            approval=approval,
            user=request.user,
            decision=ApprovalStatus.APPROVED,
            client_address=_client_address(request),
        )
    except DecisionConflict as exc:
        return _row(request, approval, error=str(exc))
    return _row(request, approval)


@require_POST
def approval_reject_hx(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Reject with a reason; the employee gets the reason back and learns from it."""
    approval = selectors.approval_for_user(request.user, pk)
    try:
        approval = approval_decide(
            approval=approval,
            user=request.user,
            decision=ApprovalStatus.REJECTED,
            comment=request.POST.get("reason", ""),
            client_address=_client_address(request),
        )
    except (DecisionConflict, ValidationError) as exc:
        return _row(request, approval, error=" ".join(getattr(exc, "messages", [str(exc)])))
    return _row(request, approval)


def _edit_form(approval, data=None):
    if approval.tool_name == "send_email":
        return EmailEditForm(data, initial=EmailEditForm.initial_from(approval.arguments))
    return None


@require_GET
def approval_edit_form_hx(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The row with its arguments open for editing."""
    approval = selectors.approval_for_user(request.user, pk)
    return _row(request, approval, editing=True, form=_edit_form(approval))


@require_POST
def approval_edit_hx(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Approve edited arguments (validated against the tool's schema; audited as a diff)."""
    approval = selectors.approval_for_user(request.user, pk)
    if approval.kind != ApprovalKind.TOOL_CALL:
        return _row(request, approval, error="Only an action can be edited.")
    form = _edit_form(approval, request.POST)
    if form is not None:
        if not form.is_valid():
            return _row(request, approval, editing=True, form=form)
        edited = form.arguments(approval.arguments)
    else:
        text = request.POST.get("arguments", "")
        try:
            edited = json_loads_bounded(text)
        except ValueError as exc:
            error = f"The arguments are not valid JSON: {exc}"
            return _row(request, approval, editing=True, arguments_text=text, error=error)
        if not isinstance(edited, dict):
            error = "The arguments must be a JSON object."
            return _row(request, approval, editing=True, arguments_text=text, error=error)
    try:
        approval = approval_decide(
            approval=approval,
            user=request.user,
            decision=ApprovalStatus.APPROVED,
            edited_arguments=edited,
            client_address=_client_address(request),
        )
    except ValidationError as exc:
        return _row(
            request,
            approval,
            editing=True,
            form=form,
            arguments_text=request.POST.get("arguments"),
            error=" ".join(exc.messages),
        )
    except DecisionConflict as exc:
        return _row(request, approval, error=str(exc))
    return _row(request, approval)


@require_POST
def inbox_bulk_hx(request: HtmxHttpRequest) -> HttpResponse:
    """Approve or reject the selected requests; already-decided ones are reported, not redone."""
    action = request.POST.get("action")
    reason = request.POST.get("reason", "")
    ids = [
        int(value)
        for value in request.POST.getlist("selected")
        if value.isascii() and value.isdigit()
    ]
    decided, problems = 0, []
    if action not in ("approve", "reject"):
        problems.append("Choose approve or reject.")
    elif action == "reject" and not reason.strip():
        problems.append("Say why you reject these, so the employees can learn from it.")
    elif not ids:
        problems.append("Select at least one request.")
    else:
        decision = ApprovalStatus.APPROVED if action == "approve" else ApprovalStatus.REJECTED
        for approval in selectors.approvals_for(request.user).filter(pk__in=ids):
            try:
                approval_decide(
                    approval=approval,
                    user=request.user,
                    decision=decision,
                    comment=reason,
                    client_address=_client_address(request),
                )
                decided += 1
            except DecisionConflict as exc:
                problems.append(f"#{approval.pk}: {exc}")
    params = _filters_only(request.POST)
    response = _inbox_response(request, params)
    verb = "Approved" if action == "approve" else "Rejected"
    summary = f"{verb} {decided} request{'s' if decided != 1 else ''}." if decided else ""
    response["HX-Trigger"] = json.dumps({"inbox-message": " ".join([summary, *problems]).strip()})
    return response


def _notification_mode(user) -> str:
    from approvals.models import NotificationMode, NotificationPreference

    preference = NotificationPreference.objects.filter(user=user).first()
    return preference.mode if preference else NotificationMode.IMMEDIATE


@require_POST
def notifications_hx(request: HtmxHttpRequest) -> HttpResponse:
    """Change how this person is emailed about new requests."""
    from approvals.services import notification_preference_set

    error = ""
    try:
        notification_preference_set(user=request.user, mode=request.POST.get("mode", ""))
    except ValidationError as exc:
        error = " ".join(exc.messages)
    return render(
        request,
        "approvals/inbox.html#notifications",
        {
            "notification_mode": _notification_mode(request.user),
            "notification_error": error,
            "notification_modes": _modes(),
            "notification_saved": not error,
        },
    )


def _modes():
    from approvals.models import NotificationMode

    return NotificationMode.choices


@require_GET
def escalations(request: HtmxHttpRequest) -> HttpResponse:
    """The escalation desk: decisions the employees handed to people."""
    open_escalations = selectors.escalations_open_for(request.user)[:100]
    desk = selectors.desk_counts(request.user)
    context = {
        "escalations": open_escalations,
        "desk": desk,
        "desk_page": "escalations",
        "inbox_count": sum(desk.values()),
    }
    return render(request, "approvals/escalations.html", context)


@require_POST
def escalation_answer_hx(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Pick an option, write an answer, or take the task over; the answer resumes the task."""
    escalation = selectors.escalation_for_user(request.user, pk)
    error = ""
    try:
        escalation = escalation_answer(
            escalation=escalation,
            user=request.user,
            answer=request.POST.get("answer", ""),
            chosen_option=request.POST.get("option", ""),
            take_over=request.POST.get("take_over") == "1",
        )
    except (ValidationError, DecisionConflict) as exc:
        error = " ".join(getattr(exc, "messages", [str(exc)]))
    response = render(
        request, "approvals/escalations.html#escalation", {"escalation": escalation, "error": error}
    )
    return _with_counts(request, response)
