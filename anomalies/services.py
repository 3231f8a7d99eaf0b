"""The anomaly rules: evaluating them (pause each employee a rule triggers for, tell its
managers) and changing their settings (a rule's defaults, an employee's override), audited."""

from __future__ import annotations

import logging
from datetime import datetime

from django.core.mail import EmailMessage
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from aiworkforce.audit import Actor, audit_log
from aiworkforce.money import format_money
from anomalies.figures import WATCHED, Trigger, anomaly_triggers
from anomalies.models import AnomalyPause, EmployeeRuleOverride, Rule, RuleSettings
from approvals.notifications import SUBJECT_PREFIX, absolute_url
from employees.models import Employee
from employees.selectors import managers_to_notify
from employees.services import TransitionError, employee_pause

logger = logging.getLogger(__name__)

ACTOR = Actor.system("anomaly rules")
RULE_WORDS = {
    Rule.SPEND_SPIKE: "spend-spike",
    Rule.ERROR_STREAK: "error-streak",
    Rule.REJECTION_STREAK: "rejection-streak",
    Rule.TOOL_SURGE: "tool-call-surge",
    Rule.WAKE_LOOP: "wake-loop",
}


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def anomaly_reason(trigger: Trigger) -> str:
    """The rule and its figures in words, as the employee's status reason."""
    f = trigger.figures
    head = f"Paused by the {RULE_WORDS[trigger.rule]} rule: "
    if trigger.rule == Rule.SPEND_SPIKE:
        spent, p95 = f["spent"], f["p95"]
        if p95:
            usual = f"{spent / p95:.1f}\N{MULTIPLICATION SIGN} its usual hourly p95 of {format_money(p95)}"
        else:
            usual = "with no spend in the 7 days before"
        body = (
            f"{format_money(spent)} in the last hour, {usual} "
            f"(limit {f['multiplier'].normalize():f}\N{MULTIPLICATION SIGN}, floor {format_money(f['floor'])})."
        )
    elif trigger.rule == Rule.ERROR_STREAK:
        body = (
            f"its last {f['threshold']} tasks ended badly in a row "
            f"({f['failed']} failed, {f['escalated']} escalated; limit {f['threshold']})."
        )
    elif trigger.rule == Rule.REJECTION_STREAK:
        body = (
            f"people rejected {f['rejected']} of its last {f['decided']} proposals "
            f"(limit {f['threshold']} of {f['sample']})."
        )
    elif trigger.rule == Rule.TOOL_SURGE:
        body = (
            f"{f['calls']} calls of {f['tool']} in the last hour (limit {f['threshold']} an hour)."
        )
    else:
        text = f["text"] if len(f["text"]) <= 60 else f["text"][:60] + "…"
        body = (
            f"the same task text arrived {_times(f['created'])} in "
            f"{f['window_minutes']} minutes (limit {f['threshold']}): “{text}”."
        )
    return (head + body)[:500]


def _mail_managers(employee: Employee, trigger: Trigger, reason: str) -> int:
    """Tell the employee's managers; a mail server that fails is logged, the pause stands."""
    addresses = list(managers_to_notify(employee).values_list("email", flat=True))
    subject = f"{SUBJECT_PREFIX} {employee.name} was paused by the {RULE_WORDS[trigger.rule]} rule"
    profile = absolute_url(reverse("employees:profile", args=[employee.handle]))
    body = (
        f"{employee.name} (@{employee.handle}) was paused automatically.\n\n"
        f"{reason}\n\n"
        "Its running tasks stopped at their next step and wait; nothing was left half done.\n"
        f"When you have looked, resume it from its page: {profile}\n"
    )
    sent = 0
    for address in addresses:
        try:
            EmailMessage(
                subject=subject,
                body=body,
                to=[address],
                headers={"Auto-Submitted": "auto-generated"},
            ).send()
            sent += 1
        except Exception:
            logger.exception("anomaly mail for @%s to %s not sent", employee.handle, address)
    return sent


def _pause(trigger: Trigger) -> Employee | None:
    """Pause for one trigger, unless the employee changed since the figures were read."""
    employee = Employee.objects.filter(
        pk=trigger.employee_id,
        status__in=WATCHED,
        status_changed_at=trigger.status_changed_at,
    ).first()
    if employee is None:  # resumed, paused or offboarded meanwhile: those figures are stale
        return None
    reason = anomaly_reason(trigger)
    try:
        with transaction.atomic():
            employee = employee_pause(employee=employee, actor=ACTOR, reason=reason)
            # What marks this pause as the rule's while it lasts (the dashboard shows it first).
            AnomalyPause.objects.create(
                employee=employee,
                rule=trigger.rule,
                figures=trigger.figures,
                reason=reason,
                paused_at=employee.status_changed_at,
            )
            audit_log(
                action="anomaly.triggered",
                actor=ACTOR,
                subject=employee,
                data={"rule": trigger.rule, "figures": trigger.figures, "reason": reason},
            )
    except TransitionError:
        return None  # someone else changed it first
    return employee


def anomalies_evaluate(*, now: datetime | None = None) -> int:
    """One pass of every rule over all employees; returns how many employees were paused."""
    now = now or timezone.now()
    paused = 0
    seen: set[int] = set()
    for trigger in anomaly_triggers(now=now):
        if trigger.employee_id in seen:
            continue  # the first rule (in rule order) that fires names the pause
        seen.add(trigger.employee_id)
        employee = _pause(trigger)
        if employee is not None:
            paused += 1
            _mail_managers(employee, trigger, employee.status_reason)
    return paused


# --- the rules' settings (the back office edits them through these) ----------------------------

PARAMETERS = ("enabled", "threshold", "sample", "multiplier", "floor", "window_minutes")


def _changes(before, after, names) -> dict[str, list]:
    """{field: [old, new]} for each field whose value differs."""
    return {
        name: [getattr(before, name), getattr(after, name)]
        for name in names
        if getattr(before, name) != getattr(after, name)
    }


def _values(override: EmployeeRuleOverride) -> dict:
    """The columns an override sets (an empty one keeps the rule's default)."""
    return {
        name: getattr(override, name) for name in PARAMETERS if getattr(override, name) is not None
    }


@transaction.atomic
def rule_settings_update(*, rule_settings: RuleSettings, actor: Actor) -> RuleSettings:
    """Save a rule's edited defaults (never its name), audited with each change's old and new value."""
    if rule_settings.pk is None:
        raise ValueError("the rules' rows are written by the migration; update one of them")
    stored = RuleSettings.objects.select_for_update().get(pk=rule_settings.pk)
    rule_settings.rule = stored.rule
    rule_settings.full_clean()
    changes = _changes(stored, rule_settings, PARAMETERS)
    if not changes:
        return rule_settings
    rule_settings.save(update_fields=[*changes, "updated_at"])
    audit_log(
        action="anomaly_rule.changed",
        actor=actor,
        subject=rule_settings,
        data={"rule": rule_settings.rule, "changes": changes},
    )
    return rule_settings


@transaction.atomic
def rule_override_save(*, override: EmployeeRuleOverride, actor: Actor) -> EmployeeRuleOverride:
    """Create or change one employee's setting of a rule, audited on the employee's trail."""
    override.full_clean()  # the fields' limits and one override per employee and rule
    if override.pk is None:
        override.save()
        audit_log(
            action="anomaly_override.created",
            actor=actor,
            subject=override.employee,
            data={"rule": override.rule, "values": _values(override)},
        )
        return override
    stored = (
        EmployeeRuleOverride.objects.select_for_update(of=("self",))
        .select_related("employee")
        .get(pk=override.pk)
    )
    changes = _changes(stored, override, ("rule", *PARAMETERS))
    if stored.employee_id != override.employee_id:
        changes["employee"] = [stored.employee.handle, override.employee.handle]
    if not changes:
        return override
    override.save()
    audit_log(
        action="anomaly_override.changed",
        actor=actor,
        subject=override.employee,
        data={"rule": override.rule, "changes": changes},
    )
    return override


@transaction.atomic
def rule_override_delete(*, override: EmployeeRuleOverride, actor: Actor) -> None:
    """Remove an employee's setting of a rule: the rule's defaults apply to it again."""
    employee, rule, values = override.employee, override.rule, _values(override)
    if not EmployeeRuleOverride.objects.filter(pk=override.pk).delete()[0]:
        return  # removed meanwhile by someone else, who was audited
    audit_log(
        action="anomaly_override.deleted",
        actor=actor,
        subject=employee,
        data={"rule": rule, "values": values},
    )
