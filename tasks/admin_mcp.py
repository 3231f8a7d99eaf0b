"""MCP servers in the back office: added through the service (secrets encrypted, never shown
again), their tools listed on demand; suspended MCP grants reviewed and re-approved."""

from __future__ import annotations

import shlex

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count

from aiworkforce.admin_mixins import ReadOnlyAdminMixin
from aiworkforce.audit import Actor
from tasks.mcp import client
from tasks.mcp.services import (
    mcp_credential_remove,
    mcp_server_add,
    mcp_server_validate,
    mcp_tools_refresh,
)
from tasks.models import McpCredential, McpServer, McpTool


def _lines(text: str, separator: str, what: str) -> dict[str, str]:
    pairs = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, found, value = line.partition(separator)
        if not found or not key.strip():
            raise ValidationError(f"Line {number} must look like NAME{separator}VALUE ({what}).")
        pairs[key.strip()] = value.strip()
    return pairs


class McpServerAddForm(forms.ModelForm):
    # Checked by the service, whose message says what a name may be.
    name = forms.CharField(max_length=100, help_text=McpServer._meta.get_field("name").help_text)
    command_line = forms.CharField(
        required=False, label="Command", help_text='stdio: the command line, e.g. "npx orders-mcp"'
    )
    headers = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text='HTTP: one "Name: value" per line (stored encrypted, never shown again)',
    )
    env = forms.CharField(
        required=False,
        label="Environment",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="stdio: one KEY=VALUE per line (stored encrypted, never shown again)",
    )

    class Meta:
        model = McpServer
        fields = ["name", "url"]

    def clean(self):
        data = super().clean()
        try:
            data["argv"] = shlex.split(data.get("command_line") or "")
        except ValueError as exc:
            self.add_error("command_line", f"The command line cannot be read: {exc}.")
        try:
            data["header_pairs"] = _lines(data.get("headers") or "", ":", "a header")
        except ValidationError as exc:
            self.add_error("headers", exc)
        try:
            data["env_pairs"] = _lines(data.get("env") or "", "=", "an environment value")
        except ValidationError as exc:
            self.add_error("env", exc)
        if not self.errors:
            try:
                mcp_server_validate(
                    name=data.get("name") or "",
                    url=data.get("url") or "",
                    headers=data["header_pairs"],
                    command=data["argv"] or None,
                    env=data["env_pairs"],
                )
            except ValidationError as exc:
                raise forms.ValidationError(exc.messages) from None
        return data

    def validate_unique(self) -> None:
        pass  # the service says it in words


class McpToolInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = McpTool
    fields = ["name", "definition", "seen_at"]
    extra = 0


class McpCredentialInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Employees' own secrets for this server: names only. Set or remove one with
    ./workforce manage mcp credential SERVER HANDLE (--header | --env | --remove)."""

    model = McpCredential
    fields = ["employee", "secret_names", "created_at"]
    readonly_fields = fields
    verbose_name_plural = "Employees' own credentials (set with: mcp credential SERVER HANDLE)"
    extra = 0


@admin.register(McpServer)
class McpServerAdmin(admin.ModelAdmin):
    list_display = ["name", "transport", "where", "tool_count", "last_checked_at", "last_error"]
    search_fields = ["name", "url", "command"]
    actions = ["list_tools"]
    # The tool count groups the rows, which drops the model's ordering.
    ordering = ["name"]
    shown = [
        "name",
        "transport",
        "url",
        "command",
        "args",
        "secret_names",
        "last_checked_at",
        "last_error",
    ]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = McpServerAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["name", "url", "command_line", "headers", "env"] if obj is None else self.shown

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.shown  # re-add a server to change it

    def get_inlines(self, request, obj):
        return [McpToolInline, McpCredentialInline] if obj is not None else []

    @admin.display(description="Where")
    def where(self, obj: McpServer) -> str:
        return obj.location

    @admin.display(description="Tools")
    def tool_count(self, obj: McpServer) -> int:
        return obj.tool_count

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(tool_count=Count("tools"))

    def save_model(self, request, obj: McpServer, form, change: bool) -> None:
        if change:
            return
        data = form.cleaned_data
        try:
            server = mcp_server_add(
                name=data["name"],
                actor=Actor.for_user(request.user),
                url=data.get("url") or "",
                headers=data.get("header_pairs") or {},
                command=data.get("argv") or None,
                env=data.get("env_pairs") or {},
            )
        except ValidationError as exc:  # added by someone else since the form was checked
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return
        obj.pk, obj._state.adding = server.pk, False
        self._refresh(request, server)

    def _refresh(self, request, server: McpServer) -> None:
        try:
            tools = mcp_tools_refresh(server=server, actor=Actor.for_user(request.user))
        except client.McpError as exc:
            self.message_user(request, f"{server.name}: {exc}", messages.WARNING)
            return
        self.message_user(request, f"{server.name} offers {len(tools)} tools.", messages.SUCCESS)

    @admin.action(description="List the tools now (suspends grants whose tool changed)")
    def list_tools(self, request, queryset) -> None:
        for server in queryset:
            self._refresh(request, server)


@admin.register(McpTool)
class McpToolAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What each server offered when last listed (the definitions grants are pinned to)."""

    list_display = ["name", "server", "seen_at"]
    list_filter = ["server"]
    search_fields = ["name", "server__name"]
    list_select_related = ["server"]


@admin.register(McpCredential)
class McpCredentialAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Names only; set one with ./workforce manage mcp credential SERVER HANDLE."""

    list_display = ["server", "employee", "secret_names", "created_at"]
    list_select_related = ["server", "employee"]
    search_fields = ["server__name", "employee__handle"]
    fields = ["server", "employee", "secret_names", "created_at"]
    readonly_fields = fields
    actions = ["remove"]

    def has_remove_permission(self, request) -> bool:
        # ReadOnlyAdminMixin denies delete; removing goes through the audited service instead.
        return request.user.has_perm("tasks.delete_mcpcredential")

    @admin.action(description="Remove the selected credentials (audited)", permissions=["remove"])
    def remove(self, request, queryset) -> None:
        actor = Actor.for_user(request.user)
        removed = sum(mcp_credential_remove(credential=c, actor=actor) for c in queryset)
        self.message_user(request, f"Removed {removed} credentials.")
