"""The dashboard's period and scope, as the query string gives them."""

from __future__ import annotations

from django import forms

from dashboard.selectors import DEFAULT_PERIOD, PERIODS

_PERIOD_NAMES = ", ".join(f"{key} ({period.label.lower()})" for key, period in PERIODS.items())


class KpiFilterForm(forms.Form):
    period = forms.ChoiceField(
        required=False,
        choices=[(key, period.label) for key, period in PERIODS.items()],
        error_messages={"invalid_choice": f"There is no period %(value)s: choose {_PERIOD_NAMES}."},
    )
    team = forms.IntegerField(
        required=False,
        min_value=1,
        error_messages={
            "invalid": "The team is given by its number (team=3); pick one from the list.",
            "min_value": "The team is given by its number (team=3); pick one from the list.",
        },
    )
    employee = forms.CharField(
        required=False,
        max_length=41,  # a handle, maybe with its @
        error_messages={"max_length": "That is not an employee's handle."},
    )

    def clean_period(self) -> str:
        return self.cleaned_data["period"] or DEFAULT_PERIOD

    def error_text(self) -> str:
        """All errors as one sentence a person reads (the page shows it instead of the figures)."""
        return " ".join(str(message) for errors in self.errors.values() for message in errors)
