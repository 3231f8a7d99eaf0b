"""The memory governance page: who may see and change what, search, edit, pin, forget, export."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from aiworkforce.audit import Actor
from aiworkforce.models import AuditEntry
from employees.jobs import ingest_document
from employees.memory.ingest import document_upload
from employees.memory.recall import memory_recall
from employees.memory.services import memory_remember
from employees.models import KnowledgeDocument, MemoryEntry, MemoryKind
from tests.factories import EmployeeFactory, MembershipFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def world():
    support, ops = TeamFactory(name="Support"), TeamFactory(name="Ops")
    ava = EmployeeFactory(name="Ava", handle="ava", team=support)
    rex = EmployeeFactory(name="Rex", handle="rex", team=ops)
    # force_login needs no password, and hashing four per test is slow.
    manager, viewer, approver, outsider = (
        UserFactory(username=name, password=None) for name in ("manny", "vic", "april", "otto")
    )
    MembershipFactory(team=support, user=manager, role="manager")
    MembershipFactory(team=support, user=viewer, role="viewer")
    MembershipFactory(team=support, user=approver, role="approver")
    MembershipFactory(team=ops, user=outsider, role="manager")
    actor = Actor.system("tests")

    def remember(text, *, kind=MemoryKind.FACT, employee=ava, team=None, **kwargs):
        owner = {"team": team} if team else {"employee": employee}
        return memory_remember(kind=kind, text=text, actor=actor, **owner, **kwargs)

    acme = remember("Acme Corp renews its contract every March; Jane Doe signs.")
    refund = remember("Refunds are possible within 30 days.", kind=MemoryKind.LESSON)
    shared = remember("The support team answers within four hours.", team=support)
    theirs = remember("Rex's secret: the server room code is 4711.", employee=rex)
    return {
        "support": support,
        "ops": ops,
        "ava": ava,
        "rex": rex,
        "manager": manager,
        "viewer": viewer,
        "approver": approver,
        "outsider": outsider,
        "acme": acme,
        "refund": refund,
        "shared": shared,
        "theirs": theirs,
        "remember": remember,
    }


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def url(name: str, owner: str = "employees/ava", *args) -> str:
    return reverse(f"memory:{name}", args=[owner, *args])


# --- who may see and change -----------------------------------------------------------------------


def test_a_viewer_reads_the_memory_without_controls_to_change_it(world):
    response = as_user(world["viewer"]).get(url("page"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Acme Corp renews" in html and "Refunds are possible" in html
    assert "Rex&#x27;s secret" not in html and "four hours" not in html  # others' memories
    assert "Only the team\u2019s managers can change" in html
    assert "Export JSON" not in html and 'name="file"' not in html
    assert url("delete_hx", "employees/ava", world["acme"].pk) not in html


def test_a_manager_gets_the_controls(world):
    html = as_user(world["manager"]).get(url("page")).content.decode()
    assert "Export JSON" in html and 'name="file"' in html
    assert url("delete_hx", "employees/ava", world["acme"].pk) in html
    assert url("pin_hx", "employees/ava", world["acme"].pk) in html


def test_the_team_page_shows_the_shared_memory(world):
    team_path = f"teams/{world['support'].pk}"
    html = as_user(world["approver"]).get(url("page", team_path)).content.decode()
    assert "four hours" in html and "Acme" not in html


def test_another_teams_pages_fragments_and_posts_are_not_found(world):
    client = as_user(world["outsider"])
    acme = world["acme"].pk
    support = f"teams/{world['support'].pk}"
    for path in [
        url("page"),
        url("page", support),
        url("row_hx", "employees/ava", acme),
        url("edit_form_hx", "employees/ava", acme),
        url("documents_hx"),
        url("export"),
        url("forget_review_hx") + "?about=Acme",
        url("page", "employees/nobody"),
        url("page", "teams/999999"),
    ]:
        assert client.get(path, **HX).status_code == 404, path
    for path, data in [
        (url("edit_hx", "employees/ava", acme), {"text": "Hacked."}),
        (url("pin_hx", "employees/ava", acme), {"pinned": "1"}),
        (url("delete_hx", "employees/ava", acme), {}),
        (url("forget_hx"), {"about": "Acme", "selected": [acme], "reason": "x"}),
        (url("upload_hx"), {"file": SimpleUploadedFile("a.txt", b"Injected.")}),
    ]:
        assert client.post(path, data, **HX).status_code == 404, path
    acme_row = MemoryEntry.objects.get(pk=acme)
    assert acme_row.text.startswith("Acme Corp") and not acme_row.pinned
    assert not KnowledgeDocument.objects.exists()


def test_a_memory_of_another_owner_cannot_be_reached_through_ones_own_page(world):
    """A manager of Ops forging Ava's memory id into Rex's URLs gets a 404."""
    client = as_user(world["outsider"])
    acme = world["acme"].pk
    assert client.post(url("delete_hx", "employees/rex", acme), **HX).status_code == 404
    assert client.post(url("pin_hx", "employees/rex", acme), {"pinned": "1"}).status_code == 404
    client.post(
        url("forget_hx", "employees/rex"),
        {"about": "x", "selected": [acme, world["theirs"].pk], "reason": "cleanup"},
        **HX,
    )
    assert MemoryEntry.objects.filter(pk=acme).exists()
    assert not MemoryEntry.objects.filter(pk=world["theirs"].pk).exists()


def test_members_who_are_not_managers_cannot_change_anything(world):
    acme = world["acme"].pk
    for user in (world["viewer"], world["approver"]):
        client = as_user(user)
        assert client.get(url("edit_form_hx", "employees/ava", acme), **HX).status_code == 403
        assert client.get(url("export")).status_code == 403
        assert client.get(url("forget_review_hx") + "?about=Acme", **HX).status_code == 403
        for path, data in [
            (url("edit_hx", "employees/ava", acme), {"text": "Changed."}),
            (url("pin_hx", "employees/ava", acme), {"pinned": "1"}),
            (url("delete_hx", "employees/ava", acme), {}),
            (url("forget_hx"), {"about": "Acme", "selected": [acme], "reason": "x"}),
            (url("upload_hx"), {"file": SimpleUploadedFile("a.txt", b"Hello.")}),
        ]:
            assert client.post(path, data, **HX).status_code == 403, path
    assert MemoryEntry.objects.get(pk=acme).text.startswith("Acme Corp")
    assert not KnowledgeDocument.objects.exists()


def test_a_superuser_manages_every_memory(world, admin_client):
    response = admin_client.post(
        url("pin_hx", "employees/rex", world["theirs"].pk), {"pinned": "1"}, **HX
    )
    assert response.status_code == 200
    assert MemoryEntry.objects.get(pk=world["theirs"].pk).pinned


def test_htmx_posts_need_the_csrf_token(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["manager"])
    client.get(url("page"))
    pin = url("pin_hx", "employees/ava", world["acme"].pk)
    assert client.post(pin, {"pinned": "1"}, **HX).status_code == 403
    assert not MemoryEntry.objects.get(pk=world["acme"].pk).pinned
    token = client.cookies["csrftoken"].value
    response = client.post(pin, {"pinned": "1"}, HTTP_X_CSRFTOKEN=token, **HX)
    assert response.status_code == 200
    assert MemoryEntry.objects.get(pk=world["acme"].pk).pinned


# --- listing and searching ------------------------------------------------------------------------


def test_text_search_and_kind_filter_swap_only_the_list(world):
    client = as_user(world["viewer"])
    response = client.get(url("page"), {"q": "acme"}, **HX)
    html = response.content.decode()
    assert 'id="memory-list"' in html and "<html" not in html
    assert "Acme Corp" in html and "Refunds" not in html
    html = client.get(url("page"), {"kind": "lesson"}, **HX).content.decode()
    assert "Refunds" in html and "Acme" not in html
    html = client.get(url("page"), {"q": "nothing-like-this"}, **HX).content.decode()
    assert "No memory matches these filters." in html


def test_semantic_search_ranks_by_meaning_and_shows_the_distance(world):
    world["remember"]("Jane Doe prefers email over phone calls.")
    html = (
        as_user(world["viewer"])
        .get(url("page"), {"q": "refund within days", "mode": "meaning"}, **HX)
        .content.decode()
    )
    assert html.index("Refunds are possible") < html.index("Acme Corp")
    assert "distance 0." in html


def test_the_list_is_paginated_newest_first(world):
    for n in range(30):
        world["remember"](f"Numbered note {n}.")
    client = as_user(world["viewer"])
    first = client.get(url("page")).content.decode()
    assert "Numbered note 29." in first and "Numbered note 0." not in first
    assert "page 1 of 2" in first
    second = client.get(url("page"), {"page": 2}).content.decode()
    assert "Numbered note 0." in second and "Acme Corp" in second


def test_expired_memories_are_marked_and_not_recalled(world):
    old = world["remember"]("Acme's old fax number is 555-0100.")
    MemoryEntry.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(days=1))
    html = as_user(world["viewer"]).get(url("page")).content.decode()
    assert "Expired · not recalled" in html
    recalled = memory_recall(employee=world["ava"], query="Acme fax number", k=10)
    assert old.pk not in {r.id for r in recalled}


def test_a_memory_waiting_for_its_vector_says_it_is_not_recalled_yet(world):
    pending = world["remember"]("Globex pays by wire transfer.")
    MemoryEntry.objects.filter(pk=pending.pk).update(embedding=None)
    html = as_user(world["viewer"]).get(url("page")).content.decode()
    assert html.count("Not yet recalled") == 1
    row = html[html.index(f'id="memory-{pending.pk}"') :]
    assert row.index("Not yet recalled") < row.index("</article>")


# --- changing memories ----------------------------------------------------------------------------


def test_editing_the_text_re_embeds_it_so_recall_finds_the_new_text(world):
    client = as_user(world["manager"])
    acme = world["acme"]
    assert (
        "textarea"
        in client.get(url("edit_form_hx", "employees/ava", acme.pk), **HX).content.decode()
    )
    response = client.post(
        url("edit_hx", "employees/ava", acme.pk),
        {"text": "Globex Ltd renews its licence each October."},
        **HX,
    )
    assert response.status_code == 200
    assert "Globex Ltd renews" in response.content.decode()
    acme.refresh_from_db()
    assert acme.text == "Globex Ltd renews its licence each October."
    [first, *_] = memory_recall(employee=world["ava"], query="Globex licence October", k=3)
    assert first.id == acme.pk
    entry = AuditEntry.objects.get(action="memory.edited")
    assert entry.actor_label == "manny" and "text" in entry.data["changes"]


def test_an_invalid_edit_keeps_the_form_open_with_the_reason(world):
    acme = world["acme"]
    response = as_user(world["manager"]).post(
        url("edit_hx", "employees/ava", acme.pk), {"text": "   "}, **HX
    )
    html = response.content.decode()
    assert response.status_code == 200 and "A memory needs some text." in html
    assert "<textarea" in html
    acme.refresh_from_db()
    assert acme.text.startswith("Acme Corp")


def test_pinning_keeps_a_memory_forever_and_unpinning_restores_its_expiry(world, settings):
    settings.MEMORY_RETENTION_DAYS = {"episode": 90}
    episode = world["remember"]("Handled ticket 12 for Acme.", kind=MemoryKind.EPISODE)
    assert episode.expires_at is not None
    client = as_user(world["manager"])
    html = client.post(url("pin_hx", "employees/ava", episode.pk), {"pinned": "1"}, **HX)
    assert "Unpin" in html.content.decode()
    episode.refresh_from_db()
    assert episode.pinned and episode.expires_at is None
    client.post(url("pin_hx", "employees/ava", episode.pk), {"pinned": "0"}, **HX)
    episode.refresh_from_db()
    assert not episode.pinned
    assert episode.expires_at == episode.created_at + timedelta(days=90)
    assert AuditEntry.objects.filter(action="memory.edited").count() == 2


def test_deleting_a_memory_is_audited_and_it_leaves_recall_at_once(world):
    acme = world["acme"]
    assert acme.pk in {r.id for r in memory_recall(employee=world["ava"], query="Acme", k=5)}
    response = as_user(world["manager"]).post(url("delete_hx", "employees/ava", acme.pk), **HX)
    assert response.status_code == 200 and response.content == b""
    assert json.loads(response["HX-Trigger"]) == {"memory-message": "Memory deleted."}
    assert not MemoryEntry.objects.filter(pk=acme.pk).exists()
    assert acme.pk not in {r.id for r in memory_recall(employee=world["ava"], query="Acme", k=5)}
    entry = AuditEntry.objects.get(action="memory.deleted")
    assert entry.actor_label == "manny" and entry.data["memory"] == acme.pk
    assert "Acme" not in json.dumps(entry.data)  # a fingerprint, never the text


def test_export_downloads_the_owners_memories_as_json_without_vectors(world):
    response = as_user(world["manager"]).get(url("export"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith('attachment; filename="memory-ava-')
    data = json.loads(response.content)
    assert data["owner"] == {
        "scope": "employee",
        "id": world["ava"].pk,
        "name": "Ava",
        "handle": "ava",
    }
    rows = {row["id"]: row for row in data["memories"]}
    assert set(rows) == {world["acme"].pk, world["refund"].pk}
    acme = rows[world["acme"].pk]
    assert acme["text"] == world["acme"].text and acme["kind"] == "fact"
    assert {"id", "kind", "text", "source", "pinned", "expires_at", "created_at", "details"} <= set(
        acme
    )
    assert "embedding" not in response.content.decode()
    entry = AuditEntry.objects.get(action="memory.exported")
    assert entry.data["memories"] == 2


# --- forget everything about X --------------------------------------------------------------------


def test_forget_reviews_text_and_meaning_matches_then_deletes_the_selected(world):
    remember = world["remember"]
    invoice = remember("ACME's invoices go to billing@acme.example.")
    renewal = remember("Contract renewals happen every March with the Acme Corp team.")
    unrelated = remember("The VPN needs a hardware token.")
    client = as_user(world["manager"])

    review = client.get(url("forget_review_hx"), {"about": "acme"}, **HX).content.decode()
    for memory in (world["acme"], invoice, renewal):
        assert f'name="selected" value="{memory.pk}" checked' in review
    assert f'value="{unrelated.pk}"' not in review and "VPN" not in review

    # Without a reason nothing is deleted and the selection is kept.
    response = client.post(
        url("forget_hx"), {"about": "acme", "selected": [invoice.pk, renewal.pk]}, **HX
    )
    assert "Say why these are forgotten" in response.content.decode()
    assert MemoryEntry.objects.filter(pk__in=[invoice.pk, renewal.pk]).count() == 2

    # The person unticks one memory (Acme's contract stays) and confirms with a reason.
    response = client.post(
        url("forget_hx"),
        {"about": "acme", "selected": [invoice.pk, renewal.pk], "reason": "customer asked (GDPR)"},
        **HX,
    )
    assert "Forgot 2 memories about “acme”." in response.content.decode()
    assert json.loads(response["HX-Trigger"])["memory-changed"] is True
    assert not MemoryEntry.objects.filter(pk__in=[invoice.pk, renewal.pk]).exists()
    assert MemoryEntry.objects.filter(pk__in=[world["acme"].pk, unrelated.pk]).count() == 2
    recalled = {r.id for r in memory_recall(employee=world["ava"], query="acme invoices", k=10)}
    assert invoice.pk not in recalled and renewal.pk not in recalled
    reasons = set(
        AuditEntry.objects.filter(action="memory.deleted").values_list("data__reason", flat=True)
    )
    fingerprint = hashlib.sha256(b"acme").hexdigest()[:16]
    assert reasons == {f"forget everything about [sha256 {fingerprint}]: customer asked (GDPR)"}
    assert "acme" not in json.dumps(list(AuditEntry.objects.values_list("data", flat=True)))


def test_forget_offers_to_delete_the_documents_that_mention_it(world):
    document = document_upload(
        owner=world["ava"],
        uploaded_file=SimpleUploadedFile(
            "accounts.md", b"# Acme\nAcme pays net 30.\n# Other\nMisc."
        ),
        user=world["manager"],
    )
    ingest_document(document.pk)
    client = as_user(world["manager"])
    review = client.get(url("forget_review_hx"), {"about": "acme"}, **HX).content.decode()
    assert f'name="documents" value="{document.pk}"' in review
    assert f'name="documents" value="{document.pk}" checked' not in review  # opt-in
    response = client.post(
        url("forget_hx"),
        {"about": "acme", "documents": [document.pk], "reason": "customer left"},
        **HX,
    )
    assert "Forgot 2 memories and 1 document about “acme”." in response.content.decode()
    assert not KnowledgeDocument.objects.exists()
    assert AuditEntry.objects.get(action="knowledge.deleted").data["chunks"] == 2


def test_forgetting_removes_the_text_from_the_steps_of_tasks_that_recalled_it(world, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from employees.memory.services import memories_delete
    from employees.models import ToolGrant, ToolPolicy
    from tasks.loop import run_task
    from tasks.models import Step, TaskStatus
    from tasks.services import task_create

    settings.OPENAI_API_KEY = ""  # the offline engine follows the SOP: it calls `recall`
    ava = world["ava"]
    ava.sop = [{"text": "Look it up", "tool": {"name": "recall", "arguments": {"query": "Acme"}}}]
    ava.save()
    ToolGrant.objects.create(employee=ava, tool_name="recall", scope={}, policy=ToolPolicy.AUTO)
    document = document_upload(
        owner=ava,
        uploaded_file=SimpleUploadedFile("accounts.md", b"# Acme\nAcme pays net 30."),
        user=world["manager"],
    )
    ingest_document(document.pk)
    [chunk] = document.chunks.all()
    task, _ = task_create(
        employee=ava, title="Acme", input="What do we know about Acme?", dispatch=False
    )
    assert run_task(task.pk) == TaskStatus.DONE
    forgotten = {world["acme"].pk, chunk.pk, world["shared"].pk}
    kept = world["refund"]

    def texts_by_id() -> dict[int, set[str]]:
        found: dict[int, set[str]] = {}
        for step in Step.objects.filter(task=task):
            memories = step.payload.get("recalled") or []
            if step.payload.get("name") == "recall":
                memories = [*memories, *step.payload["result"]["memories"]]
            for memory in memories:
                found.setdefault(memory["id"], set()).add(memory["text"])
        return found

    before = texts_by_id()
    assert forgotten | {kept.pk} <= set(before)
    assert Step.objects.filter(task=task, payload__name="recall").exists()

    client = as_user(world["manager"])
    with CaptureQueriesContext(connection) as queries:
        client.post(
            url("forget_hx"),
            {
                "about": "acme",
                "selected": [world["acme"].pk],
                "documents": [document.pk],
                "reason": "customer left",
            },
            **HX,
        )
    step_updates = [q for q in queries if q["sql"].lstrip().startswith("UPDATE tasks_step")]
    assert len(step_updates) == 2  # one statement for the memories, one for the document
    # A team memory is forgotten in its employees' tasks too.
    memories_delete(
        memories=MemoryEntry.objects.filter(pk=world["shared"].pk), user=world["manager"]
    )

    after = texts_by_id()
    assert set(after) == set(before)  # the ids stay, for citations and the page
    assert all(after[pk] == {"[forgotten]"} for pk in forgotten)
    assert after[kept.pk] == before[kept.pk] == {kept.text}
    dumped = json.dumps(list(Step.objects.filter(task=task).values_list("payload", flat=True)))
    for secret in ("Jane Doe", "net 30", "four hours"):
        assert secret not in dumped
    page = client.get(f"/tasks/{task.pk}/").content.decode()
    assert "Jane Doe" not in page and "net 30" not in page and "four hours" not in page
    assert "[forgotten]" in page and kept.text in page


def test_forgetting_nothing_says_so(world):
    html = (
        as_user(world["manager"])
        .get(url("forget_review_hx"), {"about": "Initech"}, **HX)
        .content.decode()
    )
    assert "Nothing about “Initech” is remembered here." in html


# --- uploads through the page ---------------------------------------------------------------------


def test_upload_shows_progress_polling_until_ready_then_refreshes_the_list(world):
    client = as_user(world["manager"])
    response = client.post(
        url("upload_hx"),
        {"file": SimpleUploadedFile("faq.md", b"# Hours\nWe open at nine.")},
        **HX,
    )
    html = response.content.decode()
    assert "“faq.md” uploaded" in html and "Waiting to be read" in html
    assert "every 1s" in html and "<progress" in html
    document = KnowledgeDocument.objects.get()

    ingest_document(document.pk)

    response = client.get(url("documents_hx") + "?polling=1", **HX)
    html = response.content.decode()
    assert "Ready" in html and "1 chunk in memory" in html and "every 1s" not in html
    assert json.loads(response["HX-Trigger"]) == {"memory-changed": True}
    assert "We open at nine." in client.get(url("page"), **HX).content.decode()


def test_a_bad_upload_shows_why_and_stores_nothing(world, settings):
    client = as_user(world["manager"])
    html = client.post(
        url("upload_hx"), {"file": SimpleUploadedFile("scan.docx", b"PK..")}, **HX
    ).content.decode()
    assert "cannot be read: upload plain text (.txt), Markdown" in html
    html = client.post(url("upload_hx"), {}, **HX).content.decode()
    assert "Choose a file to upload." in html
    assert not KnowledgeDocument.objects.exists()


def test_a_failed_document_shows_its_error_and_can_be_deleted(world):
    document = document_upload(
        owner=world["ava"],
        uploaded_file=SimpleUploadedFile("faq.txt", b"Hours: nine to five."),
        user=world["manager"],
    )
    KnowledgeDocument.objects.filter(pk=document.pk).update(
        status="failed", error="The embedding endpoint failed: 503."
    )
    client = as_user(world["manager"])
    html = client.get(url("page")).content.decode()
    assert "The embedding endpoint failed: 503." in html
    response = client.post(url("document_delete_hx", "employees/ava", document.pk), **HX)
    assert "“faq.txt” and its chunks are forgotten." in response.content.decode()
    assert not KnowledgeDocument.objects.exists()


def test_the_directory_links_to_employee_and_team_memory(world):
    html = as_user(world["viewer"]).get(reverse("employees:directory")).content.decode()
    assert url("page") in html
    assert url("page", f"teams/{world['support'].pk}") in html


def test_an_unreachable_embedding_endpoint_is_explained_not_a_server_error(world, settings):
    settings.OPENAI_API_KEY = "sk-test-not-a-real-key"
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens there
    settings.MEMORY_EMBEDDING_MODEL = "text-embedding-3-small"
    settings.LLM_MAX_RETRIES = 0
    client = as_user(world["manager"])
    response = client.get(url("page"), {"q": "acme", "mode": "meaning"}, **HX)
    assert response.status_code == 200
    assert "Searching by meaning is unavailable right now" in response.content.decode()
    response = client.get(url("forget_review_hx"), {"about": "acme"}, **HX)
    assert response.status_code == 200
    assert "The embedding endpoint failed" in response.content.decode()
    response = client.post(url("forget_hx"), {"about": "acme", "selected": []}, **HX)
    assert response.status_code == 200
    assert MemoryEntry.objects.filter(pk=world["acme"].pk).exists()
