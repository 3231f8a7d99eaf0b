"""Forms of the inbox: its filters, and editing a proposed email before approving it."""

from __future__ import annotations

from django import forms
from django.core.validators import validate_email

from approvals.models import ApprovalKind
from tasks.tools import Risk


class InboxFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=100, label="Search")
    team = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Team")
    employee = forms.TypedChoiceField(
        required=False, coerce=int, empty_value=None, label="Employee"
    )
    risk = forms.ChoiceField(
        required=False, choices=[("", "Any risk"), *Risk.choices], label="Risk"
    )
    kind = forms.ChoiceField(
        required=False, choices=[("", "Any kind"), *ApprovalKind.choices], label="Kind"
    )

    def __init__(self, *args, teams, employees, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].choices = [("", "All teams"), *((t.pk, t.name) for t in teams)]
        self.fields["employee"].choices = [
            ("", "All employees"),
            *((e.pk, e.name) for e in employees),
        ]


class EmailEditForm(forms.Form):
    """The proposed email, as a person edits it: recipients, subject, body."""

    to = forms.CharField(label="To", help_text="Comma-separated addresses.")
    subject = forms.CharField(max_length=300)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}))

    @staticmethod
    def initial_from(arguments: dict) -> dict:
        return {
            "to": ", ".join(arguments.get("to", [])),
            "subject": arguments.get("subject", ""),
            "body": arguments.get("body", ""),
        }

    def clean_to(self) -> list[str]:
        addresses = [a.strip() for a in self.cleaned_data["to"].split(",") if a.strip()]
        if not addresses:
            raise forms.ValidationError("Give at least one recipient.")
        for address in addresses:
            validate_email(address)
        return addresses

    def arguments(self, original: dict) -> dict:
        return {**original, **self.cleaned_data}
