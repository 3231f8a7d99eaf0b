"""The tasks list's filters (a GET form: every value is checked, a wrong one is reported)."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django import forms
from django.utils import timezone

from tasks.models import TaskSource, TaskStatus
from tasks.selectors import DONE_WITH_ERRORS, TaskListFilters

STATUS_CHOICES = [
    ("", "Any status"),
    *TaskStatus.choices,
    (DONE_WITH_ERRORS, "Done with errors"),
]


class TaskFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Search")
    employee = forms.ChoiceField(required=False, label="Employee")
    team = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Team")
    status = forms.ChoiceField(required=False, choices=STATUS_CHOICES, label="Status")
    source = forms.ChoiceField(
        required=False, choices=[("", "Any source"), *TaskSource.choices], label="Source"
    )
    created_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args, teams, employees, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].choices = [("", "All teams"), *((t.pk, t.name) for t in teams)]
        self.fields["employee"].choices = [
            ("", "Everyone"),
            *((e.handle, f"{e.name} (@{e.handle})") for e in employees),
        ]
        self._employee_ids = {e.handle: e.pk for e in employees}

    def clean(self):
        data = super().clean()
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and start > end:
            self.add_error("created_to", "The “To” date is before the “From” date.")
        return data

    def problems(self) -> list[str]:
        """The wrong values in words: 'Team: Select a valid choice. …' (ignored in the list)."""
        return [
            f"{self.fields[name].label if name in self.fields else 'Filters'}: {' '.join(errors)}"
            for name, errors in self.errors.items()
        ]

    def filters(self) -> TaskListFilters:
        """What the valid fields ask for; a field with a wrong value filters nothing."""
        data = {}
        if self.is_bound:
            self.is_valid()  # fills cleaned_data with the fields that are valid
            data = self.cleaned_data
        zone = timezone.get_current_timezone()

        def midnight(day, days_after: int = 0) -> datetime | None:
            if day is None:
                return None
            return datetime.combine(day + timedelta(days=days_after), time.min, tzinfo=zone)

        return TaskListFilters(
            query=(data.get("q") or "").strip(),
            employee_id=self._employee_ids.get(data.get("employee") or ""),
            team_id=data.get("team"),
            status=data.get("status") or "",
            source=data.get("source") or "",
            created_from=midnight(data.get("created_from")),
            created_before=midnight(data.get("created_to"), 1),
        )
