"""Forms for the workforce pages."""

from __future__ import annotations

from django import forms

from employees.models import EmployeeStatus, MemoryKind


class DirectoryFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=100, label="Search")
    team = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Team")
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *EmployeeStatus.choices], label="Status"
    )

    def __init__(self, *args, teams, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].choices = [("", "All teams"), *((t.pk, t.name) for t in teams)]


class MemoryFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=500, label="Search")
    mode = forms.ChoiceField(
        required=False,
        choices=[("text", "Containing these words"), ("meaning", "Closest in meaning")],
        label="Match",
    )
    kind = forms.ChoiceField(
        required=False, choices=[("", "All kinds"), *MemoryKind.choices], label="Kind"
    )


class OrgChartFilterForm(forms.Form):
    team = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Team")

    def __init__(self, *args, teams, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].choices = [("", "All my teams"), *((t.pk, t.name) for t in teams)]
