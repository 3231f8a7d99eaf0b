"""Mailboxes and their mail in the back office; every change goes through mailboxes.services."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from aiworkforce.admin_mixins import ReadOnlyAdminMixin
from aiworkforce.audit import Actor
from mailboxes.models import InboundAttachment, InboundMail, InboundStatus, Mailbox
from mailboxes.services import (
    MailRefused,
    inbound_mail_drop,
    inbound_mail_run,
    mailbox_check,
    mailbox_imap_check,
    mailbox_reopen,
    mailbox_set,
    mailbox_set_imap,
)


class MailboxForm(forms.ModelForm):
    allowed_senders_text = forms.CharField(
        label="Allowed senders",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One per line: example.com, *.example.com or ana@example.com.",
    )
    imap_password = forms.CharField(
        label="IMAP password",
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted and never shown; leave empty to keep the current one.",
    )

    class Meta:
        model = Mailbox
        fields = ["employee", "address", "imap_host", "imap_port", "imap_username", "imap_folder"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["allowed_senders_text"].initial = "\n".join(self.instance.allowed_senders)

    def clean(self) -> dict:
        """The services' own checks, so a refusal shows on the form and nothing is saved."""
        data = super().clean()
        employee = data.get("employee")
        if employee is not None and "address" in data:
            try:
                _, data["allowed_senders"] = mailbox_check(
                    employee=employee,
                    address=data["address"],
                    allowed_senders=data.get("allowed_senders_text", "").splitlines(),
                )
            except ValidationError as exc:
                self.add_error(None, exc)
        try:
            mailbox_imap_check(
                # The stored row: the instance is not yet changed by the form in clean().
                mailbox=Mailbox.objects.filter(pk=self.instance.pk).first()
                if self.instance.pk
                else None,
                host=data.get("imap_host", ""),
                port=data.get("imap_port") or 993,
                username=data.get("imap_username", ""),
                password=data.get("imap_password") or None,
            )
        except ValidationError as exc:
            self.add_error("imap_password", exc)
        return data


@admin.register(Mailbox)
class MailboxAdmin(admin.ModelAdmin):
    form = MailboxForm
    list_display = ["address", "employee", "status", "imap_host", "imap_error"]
    list_filter = ["status"]
    search_fields = ["address", "employee__name", "employee__handle"]
    list_select_related = ["employee"]
    autocomplete_fields = ["employee"]
    readonly_fields = ["status", "imap_polled_at", "imap_error", "created_at", "closed_at"]
    actions = ["reopen"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # close it (offboarding): its mail keeps its history

    def save_model(self, request, obj: Mailbox, form, change: bool) -> None:
        # The form's clean() ran the services' checks: a refusal here is a race, and an error.
        actor = Actor.for_user(request.user)
        mailbox = mailbox_set(
            employee=obj.employee,
            address=obj.address,
            allowed_senders=form.cleaned_data["allowed_senders"],
            actor=actor,
        )
        mailbox_set_imap(
            mailbox=mailbox,
            host=obj.imap_host,
            port=obj.imap_port,
            username=obj.imap_username,
            folder=obj.imap_folder,
            password=form.cleaned_data.get("imap_password") or None,
            actor=actor,
        )
        obj.pk = mailbox.pk
        obj.refresh_from_db()

    @admin.action(description="Reopen the selected mailboxes")
    def reopen(self, request, queryset) -> None:
        actor = Actor.for_user(request.user)
        count = 0
        for mailbox in queryset.select_related("employee"):
            try:
                count += mailbox_reopen(mailbox=mailbox, actor=actor)
            except ValidationError as exc:
                messages.error(request, f"{mailbox}: {' '.join(exc.messages)}")
        messages.success(request, f"{count} mailbox(es) reopened.")


class InboundAttachmentInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = InboundAttachment
    fields = ["filename", "content_type", "size", "task", "note"]
    readonly_fields = fields
    extra = 0


@admin.register(InboundMail)
class InboundMailAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["received_at", "mailbox", "sender", "subject", "status", "reason", "task"]
    list_filter = ["status", "provider"]
    search_fields = ["sender", "subject", "message_id", "mailbox__address"]
    list_select_related = ["mailbox", "task"]
    raw_id_fields = ["task", "replies_to"]
    inlines = [InboundAttachmentInline]
    actions = ["run_held", "drop_held"]
    exclude = ["text"]
    readonly_fields = [
        "mailbox",
        "status",
        "reason",
        "sender",
        "sender_name",
        "subject",
        "sent_at",
        "message_id",
        "in_reply_to",
        "references",
        "provider",
        "provider_event_id",
        "task",
        "replies_to",
        "received_at",
        "decided_at",
        "decided_by",
        "text_shown",
    ]

    @admin.display(description="Text (untrusted)")
    def text_shown(self, obj: InboundMail) -> str:
        return obj.text[:20000]

    def has_run_permission(self, request) -> bool:
        """Deciding on held mail runs untrusted mail as a task: a right to change it, not to
        view it."""
        return request.user.is_superuser or request.user.has_perm("mailboxes.change_inboundmail")

    @admin.action(description="Run the selected held mail as tasks", permissions=["run"])
    def run_held(self, request, queryset) -> None:
        for mail in queryset.filter(status=InboundStatus.HELD):
            try:
                task = inbound_mail_run(mail=mail, user=request.user)
            except MailRefused as exc:
                messages.error(request, f"{mail}: {exc}")
            else:
                messages.success(request, f"{mail}: task #{task.pk} created.")

    @admin.action(description="Drop the selected held mail", permissions=["run"])
    def drop_held(self, request, queryset) -> None:
        dropped = sum(
            inbound_mail_drop(mail=mail, user=request.user)
            for mail in queryset.filter(status=InboundStatus.HELD)
        )
        messages.success(request, f"{dropped} mail(s) dropped.")
