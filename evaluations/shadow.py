"""The shadow report: what an employee proposed, next to what a person did with the same work.

Three kinds of work were handled by a person as well as by the employee, each compared while
the employee was in shadow mode (its status history is read from the audit trail):

- an **approval** of an action it asked to take: approved as proposed agrees; rejected or
  approved only after an edit diverges;
- an **escalation** it wrote with a recommendation, answered on the escalation desk: the
  person's chosen option (or answer) equal to the recommendation agrees; another option, another
  answer, or taking the task over diverges (the loop breaker's own escalations are left out:
  their recommendation is the system's, not the employee's);
- a **proposal** (a side effect it only proposed) for which a person recorded what they did
  (evaluations.shadow_services.shadow_proposal_review): "the same" agrees, anything else diverges.

Weeks start on Monday in the employee's time zone; the report covers the last eight of them.
The cases are gathered and counted per week in one SQL statement: the report reads one
employee's rows through indexed columns (employee, task, subject) instead of loading them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from aiworkforce.audit import redact
from approvals.services import arguments_change_summary
from employees.models import Employee
from tasks.loop.waits import STOP_OPTIONS
from tasks.models import Step, StepKind

WEEKS = 8
CASE_LIMIT = 100
PENDING_LIMIT = 20
REVIEW_ACTION = "shadow.reviewed"

_STATUS_ACTIONS = (
    "employee.created",
    "employee.drafted",
    "employee.shadowed",
    "employee.activated",
    "employee.paused",
    "employee.offboarded",
)

# The periods the employee spent in shadow mode, from its status changes in the audit trail:
# each change starts a period lasting until the next; before its first recorded change it was
# in that change's "from" status; with no recorded change at all, in its current status.
_SHADOW_PERIODS = """
changes AS (
    SELECT created_at AS since,
           lead(created_at) OVER (ORDER BY id) AS until,
           coalesce(data->>'to', data->>'status') AS status,
           data->>'from' AS before,
           row_number() OVER (ORDER BY id) AS n
      FROM aiworkforce_auditentry
     WHERE subject_type = 'employees.employee' AND subject_id = %(employee_key)s
       AND action = ANY(%(status_actions)s)
),
shadow AS (
    SELECT since, coalesce(until, 'infinity'::timestamptz) AS until
      FROM changes WHERE status = 'shadow'
    UNION ALL
    SELECT '-infinity'::timestamptz, since FROM changes WHERE n = 1 AND before = 'shadow'
    UNION ALL
    SELECT '-infinity'::timestamptz, 'infinity'::timestamptz
     WHERE NOT EXISTS (SELECT 1 FROM changes) AND %(current_status)s = 'shadow'
)"""

# A proposal step that merely re-proposes an approved call (the employee was put in shadow
# mode while waiting) is counted once, as the approval.
_NOT_AN_APPROVED_CALL = """
NOT EXISTS (
    SELECT 1 FROM tasks_step w
     WHERE w.task_id = s.task_id AND w.kind = 'approval_wait'
       AND w.payload->>'call_id' = s.payload->>'call_id'
)"""

_LATEST_REVIEW = """
SELECT x.data, x.actor_user_id
  FROM aiworkforce_auditentry x
 WHERE x.subject_type = 'tasks.task' AND x.subject_id = s.task_id::text
   AND x.action = %(review_action)s AND x.data->>'step' = s.id::text
 ORDER BY x.id DESC LIMIT 1"""

_CASES = f"""
WITH {_SHADOW_PERIODS},
cases AS (
    SELECT 'approval' AS source, a.id AS ref, a.task_id, a.created_at AS at,
           (a.status = 'approved'
            AND (a.approved_arguments IS NULL OR a.approved_arguments = a.arguments)) AS agrees,
           a.tool_name AS tool, a.arguments AS proposed, '' AS recommendation,
           a.status AS decision, a.approved_arguments AS person_arguments,
           a.decision_comment AS person_text, a.decided_by_id AS person_id, '' AS chosen
      FROM approvals_approvalrequest a
     WHERE a.employee_id = %(employee)s AND a.kind = 'tool_call'
       AND a.status IN ('approved', 'rejected') AND a.decided_by_id IS NOT NULL
       AND a.created_at >= %(start)s
       AND EXISTS (SELECT 1 FROM shadow p WHERE a.created_at >= p.since AND a.created_at < p.until)
    UNION ALL
    SELECT 'escalation', e.id, e.task_id, e.created_at,
           (e.status = 'answered'
            AND lower(btrim(coalesce(nullif(e.chosen_option, ''), e.answer)))
                = lower(btrim(e.recommendation))),
           'escalate_to_human', jsonb_build_object('summary', e.summary, 'options', e.options),
           e.recommendation, e.status, NULL, e.answer, e.answered_by_id, e.chosen_option
      FROM approvals_escalation e
     WHERE e.employee_id = %(employee)s AND e.status IN ('answered', 'taken_over')
       AND e.answered_by_id IS NOT NULL AND btrim(e.recommendation) <> ''
       AND e.options <> %(stop_options)s::jsonb
       AND e.created_at >= %(start)s
       AND EXISTS (SELECT 1 FROM shadow p WHERE e.created_at >= p.since AND e.created_at < p.until)
    UNION ALL
    SELECT 'proposal', s.id, s.task_id, s.created_at, (r.data->>'agrees')::boolean,
           s.payload->>'name', s.payload->'arguments', '', 'recorded', NULL,
           r.data->>'action', r.actor_user_id, ''
      FROM tasks_step s
      JOIN tasks_task t ON t.id = s.task_id
      CROSS JOIN LATERAL ({_LATEST_REVIEW}) r
     WHERE t.employee_id = %(employee)s AND s.kind = 'tool_call'
       AND s.payload->>'status' = 'proposed' AND s.created_at >= %(start)s
       AND {_NOT_AN_APPROVED_CALL}
)"""  # noqa: S608 - constants only

_PER_WEEK = (
    _CASES
    + """
SELECT (date_trunc('week', at AT TIME ZONE %(tz)s))::date AS week, source,
       count(*) AS compared, count(*) FILTER (WHERE agrees) AS agreed
  FROM cases GROUP BY 1, 2"""
)

_DIVERGENT = (
    _CASES
    + """
SELECT c.source, c.ref, c.task_id, t.title, c.at, c.tool, c.proposed, c.recommendation,
       c.decision, c.person_arguments, c.person_text, c.person_id, c.chosen
  FROM cases c JOIN tasks_task t ON t.id = c.task_id
 WHERE NOT c.agrees
 ORDER BY c.at DESC, c.ref DESC
 LIMIT %(limit)s"""
)

_PENDING = f"""
SELECT s.id, s.task_id, t.title, s.created_at, s.payload->>'name', s.payload->'arguments',
       count(*) OVER () AS total
  FROM tasks_step s
  JOIN tasks_task t ON t.id = s.task_id
 WHERE t.employee_id = %(employee)s AND s.kind = 'tool_call'
   AND s.payload->>'status' = 'proposed' AND s.created_at >= %(start)s
   AND {_NOT_AN_APPROVED_CALL}
   AND NOT EXISTS ({_LATEST_REVIEW})
 ORDER BY s.created_at DESC, s.id DESC
 LIMIT %(limit)s"""  # noqa: S608 - constants only

SOURCE_LABELS = {
    "approval": "Approval",
    "escalation": "Escalation",
    "proposal": "Recorded action",
}


@dataclass
class ShadowWeek:
    start: date
    compared: int = 0
    agreed: int = 0

    @property
    def diverged(self) -> int:
        return self.compared - self.agreed

    @property
    def rate(self) -> int | None:
        """Agreement in whole per cent, or None when nothing was compared that week."""
        return round(100 * self.agreed / self.compared) if self.compared else None


@dataclass
class ShadowCase:
    """One divergent case: the employee's proposal and what the person did, side by side."""

    source: str
    ref: int
    task_id: int
    task_title: str
    at: datetime
    proposed_title: str
    proposed_pairs: list[tuple[str, str]]
    person_title: str
    person_text: str
    person_pairs: list[tuple[str, str]]
    person_name: str

    @property
    def source_label(self) -> str:
        return SOURCE_LABELS[self.source]


@dataclass
class PendingProposal:
    """A proposal no person has compared yet: the form asks what they did."""

    step_id: int
    task_id: int
    task_title: str
    at: datetime
    tool: str
    pairs: list[tuple[str, str]]


@dataclass
class ShadowReport:
    employee: Employee
    since: datetime
    weeks: list[ShadowWeek]
    by_source: dict[str, ShadowWeek] = field(default_factory=dict)
    divergent: list[ShadowCase] = field(default_factory=list)
    pending: list[PendingProposal] = field(default_factory=list)
    pending_total: int = 0

    @property
    def compared(self) -> int:
        return sum(week.compared for week in self.weeks)

    @property
    def agreed(self) -> int:
        return sum(week.agreed for week in self.weeks)

    @property
    def diverged(self) -> int:
        return self.compared - self.agreed

    @property
    def rate(self) -> int | None:
        return round(100 * self.agreed / self.compared) if self.compared else None

    @property
    def divergent_truncated(self) -> bool:
        return len(self.divergent) < self.diverged


def report_start(employee: Employee, now: datetime | None = None) -> datetime:
    """Monday 00:00, in the employee's time zone, of the first of the last eight weeks."""
    local = (now or timezone.now()).astimezone(employee.tzinfo)
    monday = local.date() - timedelta(days=local.weekday())
    first = monday - timedelta(weeks=WEEKS - 1)
    return datetime.combine(first, time.min, tzinfo=employee.tzinfo)


def shadow_report(
    employee: Employee, *, now: datetime | None = None, with_cases: bool = True
) -> ShadowReport:
    """Agreement with people per week (last eight weeks); with the divergent and open cases."""
    since = report_start(employee, now)
    params = {
        "employee": employee.pk,
        "employee_key": str(employee.pk),
        "status_actions": list(_STATUS_ACTIONS),
        "current_status": employee.status,
        "stop_options": json.dumps(STOP_OPTIONS),
        "start": since,
        "tz": employee.timezone,
        "review_action": REVIEW_ACTION,
    }
    weeks = {
        since.date() + timedelta(weeks=i): ShadowWeek(start=since.date() + timedelta(weeks=i))
        for i in range(WEEKS)
    }
    report = ShadowReport(employee=employee, since=since, weeks=list(weeks.values()))
    report.by_source = {source: ShadowWeek(start=since.date()) for source in SOURCE_LABELS}
    with connection.cursor() as cursor:
        cursor.execute(_PER_WEEK, params)
        for week, source, compared, agreed in cursor.fetchall():
            for bucket in (weeks.get(week), report.by_source[source]):
                if bucket is not None:
                    bucket.compared += compared
                    bucket.agreed += agreed
        if not with_cases:
            return report
        cursor.execute(_DIVERGENT, {**params, "limit": CASE_LIMIT})
        rows = cursor.fetchall()
        cursor.execute(_PENDING, {**params, "limit": PENDING_LIMIT})
        pending = cursor.fetchall()
    names = _person_names({row[11] for row in rows})
    report.divergent = [_case(row, names) for row in rows]
    report.pending = [
        PendingProposal(
            step_id=step_id,
            task_id=task_id,
            task_title=title,
            at=at,
            tool=tool or "",
            pairs=_pairs(arguments),
        )
        for step_id, task_id, title, at, tool, arguments, _total in pending
    ]
    report.pending_total = pending[0][6] if pending else 0
    return report


def _person_names(ids: set[int | None]) -> dict[int, str]:
    users = get_user_model().objects.filter(pk__in=[pk for pk in ids if pk])
    return {user.pk: user.get_full_name() or user.get_username() for user in users}


def _json(value):
    # Django reads jsonb through a raw cursor as text.
    return json.loads(value) if isinstance(value, str) else value


def _pairs(arguments) -> list[tuple[str, str]]:
    """(name, value as text) for each argument, secret-looking ones redacted."""
    arguments = redact(_json(arguments))
    if not isinstance(arguments, dict):
        return [("arguments", json.dumps(arguments, ensure_ascii=False))]
    return [
        (key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        for key, value in arguments.items()
    ]


def _case(row: tuple, names: dict[int, str]) -> ShadowCase:
    (source, ref, task_id, title, at, tool, proposed, recommendation) = row[:8]
    decision, person_arguments, person_text, person_id, chosen = row[8:]
    proposed, person_arguments = _json(proposed), _json(person_arguments)
    person_pairs: list[tuple[str, str]] = []
    if source == "approval":
        proposed_title = f"Asked to run {tool}"
        proposed_pairs = _pairs(proposed)
        if decision == "rejected":
            person_title = "Rejected it"
        else:
            changes = arguments_change_summary(proposed or {}, person_arguments or {})
            person_title = f"Approved it only after changing {changes}"
            person_pairs = _pairs(person_arguments)
    elif source == "escalation":
        proposed_title = f"Recommended “{recommendation}”"
        proposed_pairs = [("summary", proposed.get("summary", ""))]
        if decision == "taken_over":
            person_title = "Took the task over"
        else:
            person_title = f"Chose “{chosen}”" if chosen else "Answered in their own words"
    else:
        proposed_title = f"Proposed {tool}"
        proposed_pairs = _pairs(proposed)
        person_title = "Did something else"
    return ShadowCase(
        source=source,
        ref=ref,
        task_id=task_id,
        task_title=title,
        at=at,
        proposed_title=proposed_title,
        proposed_pairs=proposed_pairs,
        person_title=person_title,
        person_text=person_text or "",
        person_pairs=person_pairs,
        person_name=names.get(person_id, "a person"),
    )


def shadow_proposal_for(employee: Employee, step_id: int) -> Step | None:
    """The employee's proposal step `step_id` (a tool call only proposed), or None."""
    return (
        Step.objects.select_related("task")
        .filter(
            pk=step_id,
            task__employee=employee,
            kind=StepKind.TOOL_CALL,
            payload__status="proposed",
        )
        .first()
    )
