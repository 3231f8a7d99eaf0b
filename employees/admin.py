"""The back office where managers configure the workforce; every save goes through a service."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join

from aiworkforce.admin_json import JSON_EDITOR
from aiworkforce.admin_mixins import ReadOnlyAdminMixin
from aiworkforce.audit import Actor
from aiworkforce.schema_messages import schema_in_words
from employees import services
from employees.models import (
    BRIEF_FIELDS,
    BriefVersion,
    Duty,
    Employee,
    EmployeeStatus,
    KnowledgeDocument,
    MemoryEntry,
    Team,
    TeamMembership,
    ToolGrant,
    WorkingWindow,
)
from employees.validators import validate_working_windows
from tasks.mcp.services import definition_diff, grant_reapprove, mcp_tool_definition
from tasks.tools import UnknownToolError, all_tools, get_tool

# Room for a paragraph, not a page: the brief's fields sit one under the other.
SHORT_TEXT = {
    models.TextField: {"widget": forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField"})}
}
EDITORS = {**JSON_EDITOR, **SHORT_TEXT}


class TeamMembershipInline(admin.TabularInline):
    model = TeamMembership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "parent",
        "member_count",
        "employee_count",
        "accepts_requests_from_other_teams",
    ]
    list_filter = ["accepts_requests_from_other_teams"]
    search_fields = ["name"]
    list_select_related = ["parent"]
    inlines = [TeamMembershipInline]
    # The counts group the rows, which drops the model's ordering: the autocomplete pages them.
    ordering = ["name"]

    def save_model(self, request, obj, form, change) -> None:
        services.team_save(team=obj, actor=_actor(request))

    def save_formset(self, request, form, formset, change: bool) -> None:
        actor = _actor(request)
        instances = formset.save(commit=False)
        for membership in formset.deleted_objects:
            services.team_membership_remove(membership=membership, actor=actor)
        for membership in instances:
            services.team_membership_save(membership=membership, actor=actor)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                people=Count("memberships", distinct=True),
                ai_employees=Count("employees", distinct=True),
            )
        )

    @admin.display(description="People", ordering="people")
    def member_count(self, team: Team) -> int:
        return team.people

    @admin.display(description="AI employees", ordering="ai_employees")
    def employee_count(self, team: Team) -> int:
        return team.ai_employees


@admin.register(TeamMembership)
class TeamMembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "role"]
    list_filter = ["role", "team"]
    list_select_related = ["user", "team"]
    autocomplete_fields = ["user", "team"]
    search_fields = ["user__username", "user__email", "team__name"]

    def save_model(self, request, obj, form, change) -> None:
        services.team_membership_save(membership=obj, actor=_actor(request))

    def delete_model(self, request, obj) -> None:
        services.team_membership_remove(membership=obj, actor=_actor(request))


@admin.register(WorkingWindow)
class WorkingWindowAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Listed for overview; edited on the employee, where overlaps are checked across windows."""

    list_display = ["employee", "weekday", "start", "end"]
    list_filter = ["weekday"]
    list_select_related = ["employee"]


class ToolGrantForm(forms.ModelForm):
    tool_name = forms.ChoiceField(choices=())

    class Meta:
        model = ToolGrant
        fields = ["tool_name", "policy", "scope"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tool_name"].choices = [(t.name, t.name) for t in all_tools()]


@admin.display(description="Suspended")
def grant_suspension(grant: ToolGrant) -> str:
    """Why an MCP grant is suspended, and what changed, for the manager who reviews it."""
    if grant.suspended_at is None:
        return ""
    changes = definition_diff(grant.pinned_definition, mcp_tool_definition(grant.tool_name))
    return format_html(
        "{}<br>{}", grant.suspended_reason, format_html_join("", "{}<br>", ((c,) for c in changes))
    )


@admin.display(description="The scope takes")
def grant_scope_fields(grant: ToolGrant):
    """The fields of this tool's scope, in words, next to the JSON that sets them."""
    try:
        lines = schema_in_words(get_tool(grant.tool_name).scope_schema)
    except UnknownToolError:
        return ""
    if not lines:
        return "Nothing: leave the scope as {}."
    return format_html_join("", "{}<br>", ((line,) for line in lines))


class ToolGrantInline(admin.StackedInline):
    """Stacked: a scope's JSON needs a column of its own, which a table row cannot give it."""

    model = ToolGrant
    form = ToolGrantForm
    extra = 0
    classes = ["collapse"]
    formfield_overrides = JSON_EDITOR
    fields = [("tool_name", "policy", "suspension"), ("scope", "scope_fields")]
    readonly_fields = ["scope_fields", "suspension"]

    # Named on the inline: a `fields` layout refers to read-only columns by name.
    @admin.display(description="The scope takes")
    def scope_fields(self, grant: ToolGrant):
        return grant_scope_fields(grant)

    @admin.display(description="Suspended")
    def suspension(self, grant: ToolGrant):
        return grant_suspension(grant) or ("No" if grant.pk else "")


class DutyInline(admin.StackedInline):
    model = Duty
    extra = 0
    classes = ["collapse"]
    formfield_overrides = SHORT_TEXT
    fields = [("name", "enabled"), ("cron", "timezone", "last_slot_at"), "instructions"]
    readonly_fields = ["last_slot_at"]


class WorkingWindowFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        windows = self.final_windows()
        validate_working_windows(windows)
        if not self.instance.always_on and not windows:
            raise ValidationError(
                "This employee is not always on: add at least one working window, or tick 'always on'."
            )

    def final_windows(self) -> list:
        return [
            (form.cleaned_data["weekday"], form.cleaned_data["start"], form.cleaned_data["end"])
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]


class WorkingWindowInline(admin.TabularInline):
    model = WorkingWindow
    formset = WorkingWindowFormSet
    extra = 0
    classes = ["collapse"]


class BriefVersionInline(admin.TabularInline):
    model = BriefVersion
    extra = 0
    can_delete = False
    classes = ["collapse"]
    fields = ["number", "state", "created_at", "author", "note", "brief_text"]
    readonly_fields = fields
    verbose_name_plural = "Brief history (read-only)"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="State")
    def state(self, version: BriefVersion) -> str:
        if version.is_draft:
            return "draft"
        return f"activated {date_format(timezone.localtime(version.activated_at), 'j M Y H:i')}"

    @admin.display(description="Brief and SOP")
    def brief_text(self, version: BriefVersion):
        return format_html(
            "<details><summary>show</summary><pre style='white-space:pre-wrap'>{}</pre></details>",
            json.dumps({"brief": version.brief, "sop": version.sop}, indent=2),
        )


def _actor(request) -> Actor:
    return Actor.for_user(request.user)


@admin.register(Employee)
class EmployeeAdmin(admin.ModelAdmin):
    list_display = ["name", "handle", "role_title", "team", "manager", "status_badge", "hired_at"]
    list_filter = ["status", "team", "always_on"]
    search_fields = ["name", "handle", "role_title", "job_description"]
    list_select_related = ["team", "manager"]
    autocomplete_fields = ["team", "manager", "reports_to"]
    readonly_fields = [
        "agent_id",
        "status",
        "status_reason",
        "hired_at",
        "offboarded_at",
        "created_at",
        "updated_at",
    ]
    actions = ["activate", "pause", "offboard"]
    formfield_overrides = EDITORS
    inlines = [ToolGrantInline, DutyInline, WorkingWindowInline, BriefVersionInline]
    # What is read every time stays open; long or rarely changed groups are collapsed (a group
    # with an error opens by itself). Short fields share a row, so the page fits 1,280 px.
    fieldsets = [
        (
            "Identity",
            {
                "fields": [
                    ("name", "handle", "avatar_colour"),
                    ("team", "manager"),
                    ("role_title", "status"),
                    "job_description",
                ]
            },
        ),
        (
            "Organisation",
            {
                "fields": [("reports_to", "is_manager")],
                "classes": ["collapse"],
                "description": "Who may delegate to whom: the same team, the reporting line, a "
                "delegate grant's allow-list, and other teams' manager employees.",
            },
        ),
        (
            "Brief",
            {
                "fields": ["goals", "tone", "constraints", "success_criteria", "escalation_rules"],
                "classes": ["collapse"],
                "description": "Every saved change becomes a new version (Brief history, below).",
            },
        ),
        (
            "Standard operating procedure",
            {
                "fields": ["sop"],
                "classes": ["collapse"],
                "description": "A JSON list of steps. A mistake is shown with its line and "
                "column; the profile page shows the steps as text.",
            },
        ),
        (
            "Model",
            {
                "fields": [("model_name", "temperature"), "model_base_url", "context_window"],
                "classes": ["collapse"],
                "description": "Blank: the deployment's model settings.",
            },
        ),
        (
            "Working hours",
            {
                "fields": [("always_on", "timezone")],
                "description": "Unless always on, it works in the windows listed under Working "
                "windows, below, in this time zone.",
            },
        ),
        (
            "Budgets",
            {"fields": [("max_cost_per_task", "max_cost_per_day", "max_tokens_per_turn")]},
        ),
        ("Memory", {"fields": ["memory_retention_days"], "classes": ["collapse"]}),
        (
            "Lifecycle",
            {
                "fields": [
                    "status_reason",
                    ("hired_at", "offboarded_at"),
                    ("created_at", "updated_at"),
                    "agent_id",
                ],
                "classes": ["collapse"],
            },
        ),
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        labels = {"sop": "Steps", "memory_retention_days": "Days to keep memories"}
        return super().get_form(request, obj, change=change, labels=labels, **kwargs)

    def has_delete_permission(self, request, obj=None) -> bool:
        # Offboard instead: it stops the work and keeps the history.
        return False

    @admin.display(description="Status", ordering="status")
    def status_badge(self, employee: Employee):
        colours = {
            EmployeeStatus.ACTIVE: "#146c36",
            EmployeeStatus.SHADOW: "#3538cd",
            EmployeeStatus.PAUSED: "#93500b",
            EmployeeStatus.DRAFT: "#475467",
            EmployeeStatus.OFFBOARDED: "#98a2b3",
        }
        return format_html(
            '<span style="padding:2px 8px;border-radius:10px;color:#fff;background:{}">{}</span>',
            colours[employee.status],
            employee.get_status_display(),
        )

    def save_model(self, request, obj: Employee, form, change: bool) -> None:
        if change:
            changes = {name: form.cleaned_data[name] for name in form.changed_data}
            draft = services.employee_edit(
                employee=obj, actor=_actor(request), user=request.user, changes=changes
            )
            if draft is not None:
                obj.refresh_from_db(fields=[*BRIEF_FIELDS, "sop"])
                self.message_user(
                    request,
                    f"The brief changes were saved as draft v{draft.number}; the live brief "
                    f"is unchanged. Evaluate the draft and activate it on the evaluations page "
                    f"(./workforce manage evaluate {obj.handle} --brief-version {draft.number}).",
                    messages.WARNING,
                )
        else:
            services.employee_create(employee=obj, actor=_actor(request), user=request.user)

    def save_formset(self, request, form, formset, change: bool) -> None:
        actor = _actor(request)
        # The admin's change message reads these; the service, not formset.save(), writes.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        if formset.model is WorkingWindow:
            services.working_hours_set(
                employee=form.instance,
                actor=actor,
                always_on=form.instance.always_on,
                tz=form.instance.timezone,
                windows=formset.final_windows(),
            )
            return
        if formset.model is BriefVersion:
            return
        instances = formset.save(commit=False)
        for deleted in formset.deleted_objects:
            if isinstance(deleted, ToolGrant):
                services.tool_grant_revoke(grant=deleted, actor=actor)
            elif isinstance(deleted, Duty):
                services.duty_delete(duty=deleted, actor=actor)
        for instance in instances:
            if isinstance(instance, ToolGrant):
                services.tool_grant_save(grant=instance, actor=actor)
            elif isinstance(instance, Duty):
                services.duty_save(duty=instance, actor=actor)

    def _transition(self, request, queryset, verb: str, service) -> None:
        done, refused = 0, []
        for employee in queryset:
            try:
                with transaction.atomic():
                    service(employee=employee, actor=_actor(request))
                done += 1
            except services.TransitionError as exc:
                refused.append(str(exc))
        if done:
            self.message_user(request, f"{verb} {done} employee{'s' if done != 1 else ''}.")
        for message in refused:
            self.message_user(request, message, level=messages.WARNING)

    @admin.action(description="Activate selected employees")
    def activate(self, request, queryset) -> None:
        self._transition(request, queryset, "Activated", services.employee_activate)

    @admin.action(description="Pause selected employees")
    def pause(self, request, queryset) -> None:
        self._transition(request, queryset, "Paused", services.employee_pause)

    @admin.action(description="Offboard selected employees (stops duties; history is kept)")
    def offboard(self, request, queryset) -> None:
        self._transition(request, queryset, "Offboarded", services.employee_offboard)


@admin.register(ToolGrant)
class ToolGrantAdmin(admin.ModelAdmin):
    """Every grant; suspended MCP grants (their tool changed) are reviewed and re-approved here."""

    list_display = ["employee", "tool_name", "policy", "suspended_at"]
    list_filter = [("suspended_at", admin.EmptyFieldListFilter), "policy", "tool_name"]
    readonly_fields = [grant_scope_fields, grant_suspension]
    actions = ["reapprove"]
    list_select_related = ["employee"]
    autocomplete_fields = ["employee"]
    search_fields = ["employee__handle", "tool_name"]

    class Form(ToolGrantForm):
        class Meta(ToolGrantForm.Meta):
            fields = ["employee", *ToolGrantForm.Meta.fields]

    form = Form
    formfield_overrides = JSON_EDITOR

    def save_model(self, request, obj, form, change) -> None:
        services.tool_grant_save(grant=obj, actor=_actor(request))

    def delete_model(self, request, obj) -> None:
        services.tool_grant_revoke(grant=obj, actor=_actor(request))

    @admin.action(description="Re-approve the MCP tool as its server describes it now")
    def reapprove(self, request, queryset) -> None:
        for grant in queryset.filter(suspended_at__isnull=False).select_related("employee"):
            try:
                grant_reapprove(grant=grant, actor=_actor(request))
            except ValidationError as exc:
                self.message_user(request, f"{grant}: {' '.join(exc.messages)}", messages.ERROR)
                continue
            self.message_user(
                request, f"Re-approved {grant.tool_name} for @{grant.employee.handle}."
            )


@admin.register(Duty)
class DutyAdmin(admin.ModelAdmin):
    list_display = ["name", "employee", "cron", "timezone", "enabled", "last_slot_at"]
    list_filter = ["enabled"]
    list_select_related = ["employee"]
    autocomplete_fields = ["employee"]
    search_fields = ["name", "employee__handle"]
    readonly_fields = ["last_slot_at"]

    def save_model(self, request, obj, form, change) -> None:
        services.duty_save(duty=obj, actor=_actor(request))

    def delete_model(self, request, obj) -> None:
        services.duty_delete(duty=obj, actor=_actor(request))


@admin.register(BriefVersion)
class BriefVersionAdmin(admin.ModelAdmin):
    list_display = ["employee", "number", "author", "note", "created_at"]
    list_select_related = ["employee", "author"]
    search_fields = ["employee__handle"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(MemoryEntry)
class MemoryEntryAdmin(admin.ModelAdmin):
    list_display = ["short_text", "kind", "scope", "employee", "team", "pinned", "expires_at"]
    list_filter = ["kind", "scope", "pinned"]
    list_select_related = ["employee", "team"]
    search_fields = ["text", "source"]
    raw_id_fields = ["employee", "team", "created_by", "source_task", "document"]
    exclude = ["embedding"]

    @admin.display(description="Memory")
    def short_text(self, entry: MemoryEntry) -> str:
        return entry.text[:80]

    # Memory is written by employees and governed on its own page; here it is read-only so
    # nothing changes it without an audit entry.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(KnowledgeDocument)
class KnowledgeDocumentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Uploads are made, read and deleted on the memory pages (audited); here they are listed."""

    list_display = ["title", "scope", "employee", "team", "status", "chunks_done", "chunks_total"]
    list_filter = ["status", "scope", "content_type"]
    list_select_related = ["employee", "team"]
    search_fields = ["title", "sha256"]
    exclude = ["content"]
    readonly_fields = ["size_bytes", "sha256", "chunks_total", "chunks_done", "error"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("content")
