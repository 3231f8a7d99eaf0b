"""The memory governance page (HTMX): review, search, correct, pin, forget, export, upload.

One page per owner (an employee or a team). Every lookup goes through
`memory_owner_for_user`, so another team's page, fragments and forged posts are 404s, and
writes by members who are not managers are 403s. Every change goes through a service, which
audits it.
"""

from __future__ import annotations

import hashlib
import json

from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse, QueryDict
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from aiworkforce.http import HtmxHttpRequest
from employees.forms import MemoryFilterForm
from employees.memory import selectors
from employees.memory.embeddings import EmbeddingError
from employees.memory.ingest import document_delete, document_upload
from employees.memory.services import memories_delete, memory_update
from employees.memory.vectors import MemoryConfigurationError
from employees.models import DocumentStatus

PAGE_SIZE = 25
TEMPLATE = "employees/memory/page.html"
ACTIVE = (DocumentStatus.PENDING, DocumentStatus.PROCESSING)


def _messages(exc: Exception) -> str:
    return " ".join(getattr(exc, "messages", None) or [str(exc)])


def _trigger(response: HttpResponse, **events) -> HttpResponse:
    response["HX-Trigger"] = json.dumps(events)
    return response


def _filters_only(params: QueryDict) -> QueryDict:
    kept = QueryDict(mutable=True)
    for name in ("q", "mode", "kind"):
        if params.get(name):
            kept[name] = params[name]
    return kept


def _list_context(request, owner: selectors.MemoryOwner, params: QueryDict) -> dict:
    form = MemoryFilterForm(params or None)
    filters = form.cleaned_data if form.is_valid() else {}
    query = (filters.get("q") or "").strip()
    kind = filters.get("kind") or ""
    mode = filters.get("mode") or "text"
    context = {
        "form": form,
        "owner": owner,
        "now": timezone.now(),
        "query": query,
        "mode": mode,
        "filtered": bool(query or kind),
        "query_string": _filters_only(params).urlencode(),
        "search_error": "",
        "page": None,
        "nearest": None,
    }
    if mode == "meaning" and query:
        try:
            context["nearest"] = selectors.memories_nearest(owner, query=query, kind=kind)
        except (EmbeddingError, MemoryConfigurationError) as exc:
            context["search_error"] = (
                f"Searching by meaning is unavailable right now: {exc} "
                "Search for the words instead."
            )
            context["nearest"] = []
    else:
        listed = selectors.memories_listed(owner, kind=kind, query=query)
        context["page"] = Paginator(listed, PAGE_SIZE).get_page(params.get("page"))
    return context


def _documents_context(owner: selectors.MemoryOwner, **extra) -> dict:
    documents = list(selectors.documents_of(owner))
    return {
        "owner": owner,
        "documents": documents,
        "documents_active": any(d.status in ACTIVE for d in documents),
        "upload_error": "",
        "upload_message": "",
        **extra,
    }


@require_GET
def memory_page(request: HtmxHttpRequest, owner: str) -> HttpResponse:
    """One employee's or team's memory: list and search; filters swap only the list."""
    memory_owner = selectors.memory_owner_for_user(request.user, owner)
    context = _list_context(request, memory_owner, request.GET)
    if request.htmx and not request.htmx.boosted:
        return render(request, f"{TEMPLATE}#memory-list", context)
    context.update(_documents_context(memory_owner))
    return render(request, TEMPLATE, context)


def _row(request, owner, memory, *, editing=False, error="", text=None) -> HttpResponse:
    return render(
        request,
        f"{TEMPLATE}#memory-row",
        {
            "owner": owner,
            "memory": memory,
            "now": timezone.now(),
            "editing": editing,
            "error": error,
            "edit_text": memory.text if text is None else text,
        },
    )


@require_GET
def memory_edit_form_hx(request: HtmxHttpRequest, owner: str, pk: int) -> HttpResponse:
    """The memory's row with its text open for correction."""
    memory_owner = selectors.memory_owner_for_user(request.user, owner, manage=True)
    return _row(request, memory_owner, selectors.memory_of(memory_owner, pk), editing=True)


@require_GET
def memory_row_hx(request: HtmxHttpRequest, owner: str, pk: int) -> HttpResponse:
    """The memory's row as shown in the list (cancels an edit)."""
    memory_owner = selectors.memory_owner_for_user(request.user, owner)
    return _row(request, memory_owner, selectors.memory_of(memory_owner, pk))


@require_POST
def memory_edit_hx(request: HtmxHttpRequest, owner: str, pk: int) -> HttpResponse:
    """Correct a memory's text; it is embedded again, so recall finds it by the new text."""
    memory_owner = selectors.memory_owner_for_user(request.user, owner, manage=True)
    memory = selectors.memory_of(memory_owner, pk)
    text = request.POST.get("text", "")
    try:
        memory = memory_update(memory=memory, user=request.user, text=text)
    except (ValidationError, EmbeddingError, MemoryConfigurationError) as exc:
        memory.refresh_from_db()
        return _row(request, memory_owner, memory, editing=True, error=_messages(exc), text=text)
    return _row(request, memory_owner, memory)


@require_POST
def memory_pin_hx(request: HtmxHttpRequest, owner: str, pk: int) -> HttpResponse:
    """Pin (never expires) or unpin (expires by the retention rules again)."""
    memory_owner = selectors.memory_owner_for_user(request.user, owner, manage=True)
    memory = selectors.memory_of(memory_owner, pk)
    memory = memory_update(
        memory=memory, user=request.user, pinned=request.POST.get("pinned") == "1"
    )
    return _row(request, memory_owner, memory)


@require_POST
def memory_delete_hx(request: HtmxHttpRequest, owner: str, pk: int) -> HttpResponse:
    """Forget one memory for good; it leaves recall at once. The row disappears."""
    memory_owner = selectors.memory_owner_for_user(request.user, owner, manage=True)
    memory = selectors.memory_of(memory_owner, pk)
    memories_delete(
        memories=selectors.memories_of(memory_owner).filter(pk=memory.pk),
        user=request.user,
        reason=request.POST.get("reason", "").strip() or "deleted on the memory page",
    )
    return _trigger(HttpResponse(""), **{"memory-message": "Memory deleted."})


@require_GET
def memory_export(request: HtmxHttpRequest, owner: str) -> HttpResponse:
    """Download everything the owner remembers as JSON (no vectors); audited."""
    memory_owner = selectors.memory_owner_for_user(request.user, owner, manage=True)
    data = selectors.memories_export(owner=memory_owner, user=request.user)
    response = HttpResponse(
        json.dumps(data, indent=2, ensure_ascii=False), content_type="application/json"
    )
    filename = f"memory-{memory_owner.slug}-{timezone.now():%Y%m%d-%H%M}.json"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _forget_panel(request, owner, **context) -> HttpResponse:
    return render(
        request,
        f"{TEMPLATE}#forget-panel",
        {"owner": owner, "now": timezone.now(), "about": "", "matches": None, **context},
    )


def _documents_among(owner, matches) -> list:
    ids = {m.memory.document_id for m in matches if m.memory.document_id}
    return list(selectors.documents_of(owner).filter(pk__in=ids)) if ids else []


@require_GET
def memory_forget_review_hx(request: HtmxHttpRequest, owner: str) -> HttpResponse:
    """Step 1 of "forget everything about X": what would be forgotten, all selected, to review."""
    memory_owner = selectors.memory_owner_for_user(request.user, owner, manage=True)
    about = request.GET.get("about", "").strip()[:200]
    if not about:
        return _forget_panel(
            request, memory_owner, error="Say what to forget: a name, a customer, a topic."
        )
    try:
        matches = selectors.memories_about(memory_owner, about)
    except (EmbeddingError, MemoryConfigurationError) as exc:
        return _forget_panel(request, memory_owner, about=about, error=_messages(exc))
    return _forget_panel(
        request,
        memory_owner,
        about=about,
        matches=matches,
        documents=_documents_among(memory_owner, matches),
    )


@require_POST
def memory_forget_hx(request: HtmxHttpRequest, owner: str) -> HttpResponse:
    """Step 2: delete the selected memories (and documents), with the reason, audited."""
    memory_owner = selectors.memory_owner_for_user(request.user, owner, manage=True)
    about = request.POST.get("about", "").strip()[:200]
    reason = request.POST.get("reason", "").strip()
    ids = [int(v) for v in request.POST.getlist("selected") if v.isascii() and v.isdigit()]
    document_ids = [
        int(v) for v in request.POST.getlist("documents") if v.isascii() and v.isdigit()
    ]
    if not reason or not (ids or document_ids):
        # Show the same review again, keeping what the person had selected.
        try:
            matches = selectors.memories_about(memory_owner, about) if about else []
        except (EmbeddingError, MemoryConfigurationError) as exc:
            return _forget_panel(request, memory_owner, about=about, error=_messages(exc))
        return _forget_panel(
            request,
            memory_owner,
            about=about,
            matches=matches,
            documents=_documents_among(memory_owner, matches),
            selected=set(ids),
            selected_documents=set(document_ids),
            reason=reason,
            keep_selection=True,
            error="Say why these are forgotten (it goes into the audit trail)."
            if not reason
            else "Select at least one memory or document to forget.",
        )
    # What to forget is itself personal data: the append-only audit keeps a fingerprint of it.
    fingerprint = hashlib.sha256(about.encode()).hexdigest()[:16]
    full_reason = f"forget everything about [sha256 {fingerprint}]: {reason}" if about else reason
    forgotten = memories_delete(
        memories=selectors.memories_of(memory_owner).filter(pk__in=ids),
        user=request.user,
        reason=full_reason,
    )
    documents = 0
    for document in selectors.documents_of(memory_owner).filter(pk__in=document_ids):
        forgotten += document_delete(document=document, user=request.user, reason=full_reason)
        documents += 1
    summary = f"Forgot {forgotten} memor{'y' if forgotten == 1 else 'ies'}"
    if documents:
        summary += f" and {documents} document{'s' if documents != 1 else ''}"
    summary += f" about “{about}”." if about else "."
    response = _forget_panel(request, memory_owner, done=summary)
    return _trigger(response, **{"memory-changed": True, "documents-changed": True})


@require_GET
def documents_hx(request: HtmxHttpRequest, owner: str) -> HttpResponse:
    """The uploads section; polled every second while a document is being read."""
    memory_owner = selectors.memory_owner_for_user(request.user, owner)
    context = _documents_context(memory_owner)
    response = render(request, f"{TEMPLATE}#documents", context)
    if request.GET.get("polling") == "1" and not context["documents_active"]:
        # The last document being read just finished: its chunks belong in the list now.
        _trigger(response, **{"memory-changed": True})
    return response


@require_POST
def document_upload_hx(request: HtmxHttpRequest, owner: str) -> HttpResponse:
    """Upload a text, Markdown or PDF file; a job reads it, with progress shown here."""
    memory_owner = selectors.memory_owner_for_user(request.user, owner, manage=True)
    uploaded = request.FILES.get("file")
    if uploaded is None:
        context = _documents_context(memory_owner, upload_error="Choose a file to upload.")
        return render(request, f"{TEMPLATE}#documents", context)
    try:
        document = document_upload(
            owner=memory_owner.obj, uploaded_file=uploaded, user=request.user
        )
    except ValidationError as exc:
        context = _documents_context(memory_owner, upload_error=_messages(exc))
        return render(request, f"{TEMPLATE}#documents", context)
    message = f"“{document.title}” uploaded; it is being read now."
    context = _documents_context(memory_owner, upload_message=message)
    return render(request, f"{TEMPLATE}#documents", context)


@require_POST
def document_delete_hx(request: HtmxHttpRequest, owner: str, pk: int) -> HttpResponse:
    """Forget a document: its file and all of its chunks."""
    memory_owner = selectors.memory_owner_for_user(request.user, owner, manage=True)
    document = selectors.document_of(memory_owner, pk)
    document_delete(document=document, user=request.user, reason="deleted on the memory page")
    context = _documents_context(
        memory_owner, upload_message=f"“{document.title}” and its chunks are forgotten."
    )
    response = render(request, f"{TEMPLATE}#documents", context)
    return _trigger(response, **{"memory-changed": True})
