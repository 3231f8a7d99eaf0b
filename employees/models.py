"""Teams, AI employees and what defines them: brief, SOP, tools, hours, duties, budgets, memory."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from pgvector.django import HnswIndex, VectorField

from employees.validators import (
    validate_cron,
    validate_hex_colour,
    validate_retention,
    validate_sop,
    validate_timezone,
)

BRIEF_FIELDS = ("goals", "tone", "constraints", "success_criteria", "escalation_rules")

handle_validator = RegexValidator(
    r"^[a-z][a-z0-9_-]{1,39}$",
    "A handle is 2-40 lowercase letters, digits, '-' or '_', starting with a letter (e.g. 'ava-support').",
)


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    description = models.TextField(blank=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="TeamMembership", related_name="teams"
    )
    accepts_requests_from_other_teams = models.BooleanField(
        default=False,
        help_text="AI employees of other teams may delegate requests to this team's manager "
        "employees, which route them. Off: only this team, reporting lines and a delegate "
        "grant's allow-list reach its employees.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        ancestor = self.parent
        while ancestor is not None:
            if ancestor.pk == self.pk and self.pk is not None:
                raise ValidationError({"parent": "A team cannot be inside itself."})
            ancestor = ancestor.parent


class TeamRole(models.TextChoices):
    MANAGER = "manager", "Manager"
    APPROVER = "approver", "Approver"
    VIEWER = "viewer", "Viewer"


class TeamMembership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships"
    )
    role = models.CharField(max_length=10, choices=TeamRole.choices, default=TeamRole.VIEWER)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "user"], name="one_membership_per_team_and_user"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} of {self.team}"


class EmployeeStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SHADOW = "shadow", "Shadow"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    OFFBOARDED = "offboarded", "Offboarded"


class Employee(models.Model):
    # Identity
    agent_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    handle = models.CharField(
        max_length=40,
        unique=True,
        validators=[handle_validator],
        error_messages={
            "unique": "Another employee already has this handle; pick a different one."
        },
    )
    avatar_colour = models.CharField(
        max_length=7, default="#4f46e5", validators=[validate_hex_colour]
    )
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="employees")
    manager = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="managed_employees",
        help_text="The person accountable for this employee's work.",
    )
    # The organisation: AI reporting lines and manager employees that route work (delegation).
    reports_to = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="direct_reports",
        help_text="The AI employee this one reports to; either may delegate to the other.",
    )
    is_manager = models.BooleanField(
        default=False,
        help_text="A manager employee routes work: it decomposes requests for its team's "
        "specialists, and other teams' employees may delegate to it if its team accepts "
        "requests from other teams.",
    )
    # The one role
    role_title = models.CharField(max_length=100)
    job_description = models.TextField()
    # The brief (versioned in BriefVersion)
    goals = models.TextField(blank=True)
    tone = models.TextField(blank=True)
    constraints = models.TextField(blank=True)
    success_criteria = models.TextField(blank=True)
    escalation_rules = models.TextField(blank=True)
    sop = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_sop],
        help_text='Ordered steps: [{"text": "...", "tool": {"name": "send_email", "arguments": {}}}]; '
        "the tool hint is optional.",
    )
    # Model settings; blank means the deployment's defaults.
    model_name = models.CharField(max_length=100, blank=True)
    model_base_url = models.URLField(blank=True)
    temperature = models.DecimalField(
        max_digits=3,
        decimal_places=2,
        default=Decimal("0.20"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("2"))],
    )
    # Lifecycle
    status = models.CharField(
        max_length=12, choices=EmployeeStatus.choices, default=EmployeeStatus.DRAFT, db_index=True
    )
    # Why it is in this status, in words a manager reads (a pause's reason, a rule's figures).
    status_reason = models.CharField(max_length=500, blank=True, editable=False)
    status_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    hired_at = models.DateTimeField(null=True, blank=True)
    offboarded_at = models.DateTimeField(null=True, blank=True)
    # Working hours: always on, or the WorkingWindow rows in this time zone.
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    always_on = models.BooleanField(default=True, help_text="Works 24/7, ignoring working windows.")
    # Budgets: hard ceilings, reserved before each model call.
    max_tokens_per_turn = models.PositiveIntegerField(
        default=4000,
        validators=[MinValueValidator(1)],
        help_text="Tokens one model call may produce (its answer, reasoning included); the "
        "prompt is bounded by the model's context window instead.",
    )
    context_window = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1024)],
        help_text="Tokens the model can read in one call. Blank: the model's known window "
        "(MODEL_CAPABILITIES). Longer prompts are made to fit (see the task page).",
    )
    max_cost_per_task = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        default=Decimal("0.50"),
        validators=[MinValueValidator(Decimal("0"), "A budget cannot be negative.")],
        help_text="US dollars one task may spend.",
    )
    max_cost_per_day = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        default=Decimal("5.00"),
        validators=[MinValueValidator(Decimal("0"), "A budget cannot be negative.")],
        help_text="US dollars this employee may spend per day (in its time zone).",
    )
    # Memory retention: days to keep each kind, e.g. {"episode": 30}; a kind not named here
    # follows MEMORY_RETENTION_DAYS. Pinned memories are kept whatever this says.
    memory_retention_days = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_retention],
        help_text='Days to keep memories of each kind, e.g. {"episode": 90, "fact": 365}. '
        "Kinds not named follow the deployment default; pinned memories never expire.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_cost_per_task__gte=0) & Q(max_cost_per_day__gte=0),
                name="employee_budgets_not_negative",
                violation_error_message="A budget cannot be negative.",
            ),
            models.CheckConstraint(
                condition=Q(max_tokens_per_turn__gte=1),
                name="employee_turn_tokens_positive",
                violation_error_message="The per-turn token budget must be at least 1.",
            ),
            models.CheckConstraint(
                condition=~Q(reports_to=models.F("pk")),
                name="employee_does_not_report_to_itself",
                violation_error_message="An employee cannot report to itself.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} (@{self.handle})"

    def clean(self) -> None:
        from aiworkforce.llm import endpoint_allowed

        self._clean_reporting_line()
        if self.model_base_url and not endpoint_allowed(self.model_base_url):
            raise ValidationError(
                {
                    "model_base_url": "The API key would be sent to this endpoint: add it to "
                    "OPENAI_ALLOWED_BASE_URLS first (or leave it blank for OPENAI_BASE_URL)."
                }
            )

    def _clean_reporting_line(self) -> None:
        seen = set()
        boss = self.reports_to
        while boss is not None and boss.pk not in seen:
            if self.pk is not None and boss.pk == self.pk:
                raise ValidationError(
                    {"reports_to": "This reporting line would loop back to the employee itself."}
                )
            seen.add(boss.pk)
            boss = boss.reports_to

    @property
    def brief(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in BRIEF_FIELDS}

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def is_on_duty(self, at: datetime, windows: list[WorkingWindow] | None = None) -> bool:
        """True when `at` falls inside working hours. Pass prefetched windows to avoid a query."""
        if self.always_on:
            return True
        local = at.astimezone(self.tzinfo)
        if windows is None:
            windows = list(self.working_windows.all())
        return any(
            w.weekday == local.weekday() and w.start <= local.time() < w.end for w in windows
        )


class WorkingWindow(models.Model):
    class Weekday(models.IntegerChoices):
        MONDAY = 0
        TUESDAY = 1
        WEDNESDAY = 2
        THURSDAY = 3
        FRIDAY = 4
        SATURDAY = 5
        SUNDAY = 6

    employee = models.ForeignKey(Employee, on_delete=models.CASCADE, related_name="working_windows")
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    start = models.TimeField()
    end = models.TimeField()

    class Meta:
        ordering = ["weekday", "start"]
        constraints = [
            models.CheckConstraint(
                condition=Q(end__gt=models.F("start")),
                name="working_window_ends_after_start",
                violation_error_message="A working window must end after it starts.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.start:%H:%M}-{self.end:%H:%M}"


class BriefVersion(models.Model):
    """One saved state of an employee's brief and SOP; its content is never edited, only added.

    A version is live from its activation: the active one is the latest activated. An employee
    with golden tasks gets brief changes as drafts (never activated) that go live only through
    evaluations.activation.brief_version_activate, which compares their pass rates.
    """

    employee = models.ForeignKey(Employee, on_delete=models.CASCADE, related_name="brief_versions")
    number = models.PositiveIntegerField()
    brief = models.JSONField()
    sop = models.JSONField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The live version a draft was made from: activating it once another is live would undo
    # that one's changes, so the gate asks for a reason then.
    based_on = models.PositiveIntegerField(null=True, blank=True)
    # NULL: a draft, never live. Activating an earlier version again moves it to now.
    activated_at = models.DateTimeField(null=True, blank=True)
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["employee", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["employee", "number"], name="one_brief_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.employee.handle} brief v{self.number}"

    @property
    def is_draft(self) -> bool:
        return self.activated_at is None


class ToolPolicy(models.TextChoices):
    AUTO = "auto", "Automatic"
    NEEDS_APPROVAL = "needs_approval", "Needs approval"
    NEVER = "never", "Never"


class ToolGrant(models.Model):
    employee = models.ForeignKey(Employee, on_delete=models.CASCADE, related_name="tool_grants")
    tool_name = models.CharField(max_length=200)
    scope = models.JSONField(default=dict, blank=True)
    policy = models.CharField(
        max_length=16, choices=ToolPolicy.choices, default=ToolPolicy.NEEDS_APPROVAL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # An MCP tool's description and schema as they were when granted (rug-pull guard): when
    # its server serves another, the grant is suspended until a manager approves the new one.
    pinned_definition = models.JSONField(default=dict, blank=True, editable=False)
    suspended_at = models.DateTimeField(null=True, blank=True, editable=False)
    suspended_reason = models.CharField(max_length=500, blank=True, editable=False)

    class Meta:
        ordering = ["tool_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["employee", "tool_name"],
                name="one_grant_per_tool",
                violation_error_message="This employee already has a grant for this tool; edit that one.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} ({self.get_policy_display()})"

    def clean(self) -> None:
        from tasks.tools import ToolScopeError, UnknownToolError, validate_scope

        try:
            validate_scope(self.tool_name, self.scope)
        except UnknownToolError as exc:
            raise ValidationError({"tool_name": str(exc)}) from None
        except ToolScopeError as exc:
            raise ValidationError({"scope": str(exc)}) from None


class Duty(models.Model):
    """A recurring piece of work: a cron schedule in a time zone, with instructions."""

    employee = models.ForeignKey(Employee, on_delete=models.CASCADE, related_name="duties")
    name = models.CharField(max_length=100)
    cron = models.CharField(
        max_length=100, validators=[validate_cron], help_text="e.g. '0 9 * * 1-5' = weekdays 09:00"
    )
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    instructions = models.TextField()
    enabled = models.BooleanField(default=True)
    last_slot_at = models.DateTimeField(
        null=True, blank=True, help_text="The last due time a task was created for."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["employee", "name"]
        verbose_name_plural = "duties"

    def __str__(self) -> str:
        return f"{self.name} ({self.cron} {self.timezone})"


class MemoryScope(models.TextChoices):
    EMPLOYEE = "employee", "Employee"
    TEAM = "team", "Team"


class MemoryKind(models.TextChoices):
    FACT = "fact", "Fact"
    LESSON = "lesson", "Lesson"
    EPISODE = "episode", "Episode"
    DOCUMENT = "document", "Document chunk"


class DocumentStatus(models.TextChoices):
    PENDING = "pending", "Waiting to be read"
    PROCESSING = "processing", "Reading"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


_OWNER_CONSTRAINT = Q(scope="employee", employee__isnull=False, team__isnull=True) | Q(
    scope="team", team__isnull=False, employee__isnull=True
)
_OWNER_MESSAGE = (
    "An employee memory needs an employee and no team; a team memory a team and no employee."
)


class KnowledgeDocument(models.Model):
    """An uploaded text, Markdown or PDF file, read into document-chunk memories by a job."""

    scope = models.CharField(max_length=10, choices=MemoryScope.choices)
    employee = models.ForeignKey(
        Employee, null=True, blank=True, on_delete=models.CASCADE, related_name="documents"
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="documents"
    )
    title = models.CharField(
        max_length=200, help_text="The file name; re-uploading it replaces it."
    )
    content_type = models.CharField(max_length=100)
    content = models.BinaryField(editable=False)
    size_bytes = models.PositiveIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    status = models.CharField(
        max_length=12, choices=DocumentStatus.choices, default=DocumentStatus.PENDING
    )
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=_OWNER_CONSTRAINT,
                name="document_scope_matches_owner",
                violation_error_message=_OWNER_MESSAGE,
            )
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def owner(self):
        return self.employee if self.scope == MemoryScope.EMPLOYEE else self.team

    @property
    def progress_percent(self) -> int:
        if self.status == DocumentStatus.READY:
            return 100
        return int(100 * self.chunks_done / self.chunks_total) if self.chunks_total else 0


# The memory table is partitioned by owner (migration 0006): a partition, and an HNSW graph,
# per employee and per team. Its foreign keys are kept by Django only (db_constraint=False):
# in the database they would make attaching a new owner's partition lock every table they
# point to (tasks, employees, users) until the hiring transaction commits.
_NO_DB_CONSTRAINT = {"db_constraint": False}


class MemoryEntry(models.Model):
    scope = models.CharField(max_length=10, choices=MemoryScope.choices)
    employee = models.ForeignKey(
        Employee,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="memories",
        **_NO_DB_CONSTRAINT,
    )
    team = models.ForeignKey(
        Team,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="memories",
        **_NO_DB_CONSTRAINT,
    )
    kind = models.CharField(max_length=10, choices=MemoryKind.choices)
    text = models.TextField()
    embedding = VectorField(dimensions=settings.MEMORY_EMBEDDING_DIMENSIONS, null=True, blank=True)
    # Which embedder made `embedding`: vectors of different embedders cannot be compared.
    embedder = models.CharField(max_length=100, blank=True)
    source = models.CharField(max_length=300, blank=True, help_text="Where this came from.")
    # Structured facts about the source, e.g. for a lesson {"tool": "send_email",
    # "decision": "rejected", "reason": "..."}; the offline engine applies lessons from them.
    details = models.JSONField(default=dict, blank=True)
    source_task = models.ForeignKey(
        "tasks.Task",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        **_NO_DB_CONSTRAINT,
    )
    document = models.ForeignKey(
        KnowledgeDocument,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="chunks",
        **_NO_DB_CONSTRAINT,
    )
    chunk_index = models.PositiveIntegerField(null=True, blank=True)
    # False while a document's chunks are still being read: recall sees a document whole or
    # not at all (and a re-upload's old chunks until the new ones are complete).
    live = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        **_NO_DB_CONSTRAINT,
    )
    pinned = models.BooleanField(default=False, help_text="Pinned memories never expire.")
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "memory entries"
        constraints = [
            models.CheckConstraint(
                condition=_OWNER_CONSTRAINT,
                name="memory_scope_matches_owner",
                violation_error_message=_OWNER_MESSAGE,
            )
        ]
        indexes = [
            HnswIndex(
                name="memory_embedding_hnsw_cosine",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            models.Index(fields=["employee", "kind"]),
            models.Index(fields=["team", "kind"]),
            models.Index(
                fields=["expires_at"],
                name="memory_expiry_idx",
                condition=Q(expires_at__isnull=False),
            ),
            # The embedding job's queue: a few rows, never a scan of the whole memory.
            models.Index(
                fields=["id"],
                name="memory_pending_embedding_idx",
                condition=Q(embedding__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.text[:60]}"
