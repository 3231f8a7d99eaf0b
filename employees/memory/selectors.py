"""Reads of memory: what an employee may still recall, and one owner's memory for its page.

An owner is an employee (its private memory) or a team (memory shared by its employees). Team
members see both; only the team's managers (and superusers) change them. Searches cover every
live memory of the owner, expired ones included (marked as such), because this is where people
review and forget; recall itself never returns expired memories.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet
from django.http import Http404
from django.utils import timezone
from pgvector.django import CosineDistance

from aiworkforce.audit import Actor, audit_log
from employees.memory.embeddings import get_embedder
from employees.memory.vectors import check_embedding_dimensions
from employees.models import (
    Employee,
    KnowledgeDocument,
    MemoryEntry,
    MemoryScope,
    Team,
    TeamMembership,
    TeamRole,
)

SEARCH_RESULTS = 25
# "Forget everything about X" proposes memories at least this similar to X (cosine), besides
# those containing X. Every proposal is shown for review before anything is deleted.
FORGET_MIN_SIMILARITY = 0.25
FORGET_MAX_RESULTS = 500


def memories_readable_by(employee: Employee, memories=MemoryEntry.objects) -> tuple:
    """The employee's own memories and its team's, as two querysets: each reads one partition
    (one OR of both would read every team's partition)."""
    return (
        memories.filter(employee_id=employee.pk),
        memories.filter(employee__isnull=True, team_id=employee.team_id),
    )


def memories_still_visible(*, employee: Employee, ids) -> set[int]:
    """Which of `ids` the employee may still recall: not deleted, not expired, not of a team
    it has left. Each half reads one partition."""
    if not ids:
        return set()
    recallable = MemoryEntry.objects.filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()), live=True, pk__in=ids
    )
    own, team = (
        qs.order_by().values_list("pk", flat=True)
        for qs in memories_readable_by(employee, recallable)
    )
    return set(own.union(team, all=True).order_by())


@dataclass(frozen=True)
class MemoryOwner:
    """Whose memory a page shows, and what the person looking may do with it."""

    team: Team
    employee: Employee | None = None
    can_manage: bool = False

    @property
    def scope(self) -> str:
        return MemoryScope.EMPLOYEE if self.employee else MemoryScope.TEAM

    @property
    def obj(self) -> Employee | Team:
        return self.employee or self.team

    @property
    def path(self) -> str:
        """The URL part naming the owner (see employees/memory/urls.py)."""
        return f"employees/{self.employee.handle}" if self.employee else f"teams/{self.team.pk}"

    @property
    def team_path(self) -> str:
        return f"teams/{self.team.pk}"

    @property
    def label(self) -> str:
        return self.employee.name if self.employee else f"{self.team.name} team"

    @property
    def slug(self) -> str:
        return self.employee.handle if self.employee else f"team-{self.team.pk}"

    def filter(self) -> Q:
        if self.employee:
            return Q(scope=MemoryScope.EMPLOYEE, employee=self.employee)
        # employee IS NULL lets PostgreSQL read the team's partition alone (migration 0006).
        return Q(scope=MemoryScope.TEAM, employee__isnull=True, team=self.team)


def memory_owner_for_user(user, path: str, *, manage: bool = False) -> MemoryOwner:
    """The owner named by `path` if the person is in its team (404 otherwise); with `manage`,
    only for the team's managers and superusers (403 for other members)."""
    kind, _, key = path.partition("/")
    employee = None
    if kind == "employees":
        employee = Employee.objects.select_related("team").filter(handle=key).first()
        team = employee.team if employee else None
    elif kind == "teams" and key.isascii() and key.isdigit():
        team = Team.objects.filter(pk=int(key)).first()
    else:
        team = None
    if team is None:
        raise Http404("No such memory.")
    if user.is_superuser:
        role = TeamRole.MANAGER
    else:
        role = (
            TeamMembership.objects.filter(team=team, user=user).values_list("role", flat=True)
        ).first()
        if role is None:
            raise Http404("No such memory.")
    can_manage = role == TeamRole.MANAGER
    if manage and not can_manage:
        raise PermissionDenied("Only the team's managers can change its employees' memory.")
    return MemoryOwner(team=team, employee=employee, can_manage=can_manage)


def memories_of(owner: MemoryOwner) -> QuerySet[MemoryEntry]:
    """Every live memory of the owner (a document still being read is not live yet)."""
    return MemoryEntry.objects.filter(owner.filter(), live=True)


def memory_of(owner: MemoryOwner, pk: int) -> MemoryEntry:
    memory = memories_of(owner).filter(pk=pk).first()
    if memory is None:
        raise Http404("No such memory: it may have been deleted.")
    return memory


def memories_listed(owner: MemoryOwner, *, kind: str = "", query: str = "") -> QuerySet:
    """Newest first, of one kind if asked, containing `query` in text or source if given."""
    qs = memories_of(owner)
    if kind:
        qs = qs.filter(kind=kind)
    if query:
        qs = qs.filter(Q(text__icontains=query) | Q(source__icontains=query))
    # The list needs to know whether a memory has its vector yet, not the vector itself.
    searchable = ExpressionWrapper(Q(embedding__isnull=False), output_field=BooleanField())
    return qs.defer("embedding").annotate(searchable=searchable).order_by("-created_at", "-id")


def _query_vector(query: str) -> list[float]:
    check_embedding_dimensions()
    return get_embedder().embed([query[:8000]])[0]


def memories_nearest(
    owner: MemoryOwner,
    *,
    query: str,
    kind: str = "",
    k: int = SEARCH_RESULTS,
    max_distance: float = 2.0,
) -> list[MemoryEntry]:
    """The owner's k memories nearest in meaning to `query`, each with its cosine `distance`.

    The same ranking as recall (HNSW, cosine), restricted to this owner; memories without a
    vector (still waiting for the embedding endpoint) or with nothing to embed are left out.
    """
    if not query.strip():
        return []
    qs = memories_of(owner).filter(embedding__isnull=False)
    if kind:
        qs = qs.filter(kind=kind)
    distance = CosineDistance("embedding", _query_vector(query))
    # NaN (a zero vector) compares above every number in PostgreSQL, so the bound drops it.
    return list(
        qs.annotate(distance=distance)
        .filter(distance__lt=max_distance)
        .order_by("distance", "id")[:k]
    )


@dataclass(frozen=True)
class Match:
    memory: MemoryEntry
    by_text: bool
    distance: float | None

    @property
    def similarity(self) -> float | None:
        return None if self.distance is None else 1.0 - self.distance


def memories_about(owner: MemoryOwner, about: str) -> list[Match]:
    """What "forget everything about X" proposes: memories containing X (text or source) and
    memories close to X in meaning; text matches first, then by similarity."""
    about = about.strip()
    if not about:
        return []
    by_text = {m.pk: m for m in memories_listed(owner, query=about)[:FORGET_MAX_RESULTS]}
    near = memories_nearest(
        owner, query=about, k=FORGET_MAX_RESULTS, max_distance=1.0 - FORGET_MIN_SIMILARITY
    )
    distances = {m.pk: m.distance for m in near}
    matches = [Match(m, True, distances.get(pk)) for pk, m in by_text.items()]
    matches += [Match(m, False, m.distance) for m in near if m.pk not in by_text]
    return matches[:FORGET_MAX_RESULTS]


def documents_of(owner: MemoryOwner) -> QuerySet[KnowledgeDocument]:
    return (
        KnowledgeDocument.objects.filter(owner.filter())
        .defer("content")
        .select_related("uploaded_by")
        .order_by("-created_at", "-id")
    )


def document_of(owner: MemoryOwner, pk: int) -> KnowledgeDocument:
    document = documents_of(owner).filter(pk=pk).first()
    if document is None:
        raise Http404("No such document: it may have been deleted or replaced.")
    return document


def memories_export(*, owner: MemoryOwner, user) -> dict:
    """Everything the owner remembers, as JSON-ready data (no vectors); the export is audited."""
    now = timezone.now()
    rows = [
        {
            "id": m.pk,
            "kind": m.kind,
            "text": m.text,
            "source": m.source,
            "pinned": m.pinned,
            "expires_at": m.expires_at.isoformat() if m.expires_at else None,
            "expired": bool(m.expires_at and m.expires_at <= now and not m.pinned),
            "created_at": m.created_at.isoformat(),
            "details": m.details,
            "document": m.document_id,
            "chunk_index": m.chunk_index,
        }
        for m in memories_of(owner).order_by("created_at", "id").iterator(chunk_size=500)
    ]
    audit_log(
        action="memory.exported",
        actor=Actor.for_user(user),
        subject=owner.obj,
        data={"scope": owner.scope, "owner": owner.obj.pk, "memories": len(rows)},
    )
    return {
        "owner": {
            "scope": owner.scope,
            "id": owner.obj.pk,
            "name": owner.employee.name if owner.employee else owner.team.name,
            **({"handle": owner.employee.handle} if owner.employee else {}),
        },
        "exported_at": now.isoformat(),
        "memories": rows,
    }
