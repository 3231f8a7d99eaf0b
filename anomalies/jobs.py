"""django-q2 job of the anomalies app: the rules' pass, scheduled every minute (safe to run twice)."""

from __future__ import annotations

from anomalies.services import anomalies_evaluate


def evaluate_rules() -> str:
    """One pass of every anomaly rule; an employee already paused is not paused again."""
    return f"paused: {anomalies_evaluate()}"
