"""Forms for the workforce pages."""

from __future__ import annotations

from django import forms

from employees.models import EmployeeStatus


class DirectoryFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=100, label="Search")
    team = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Team")
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *EmployeeStatus.choices], label="Status"
    )

    def __init__(self, *args, teams, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].choices = [("", "All teams"), *((t.pk, t.name) for t in teams)]
