"""Forgetting reaches the recorded steps.

Invariant: once a memory is forgotten, its text is in no step of a task. Steps keep what the
model was shown, so a recalled memory's text is copied into two places: the `recalled` list of
a task's first model call, and the result of each `recall` tool call. One UPDATE over the steps
of the owner's tasks (the employee's, or every employee's of the team) replaces the text there
with a marker and keeps the id, so citations and the task page still say what was used.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from django.db import connection

from employees.models import Employee
from tasks.models import Step, StepKind, Task

FORGOTTEN = "[forgotten]"

# %(redacted)s: the array with each forgotten element's text (and details and source, which
# can quote it) replaced; other elements unchanged, in their order.
_REDACTED = """
    (SELECT coalesce(jsonb_agg(
                CASE WHEN item->'id' = ANY(%(ids)s::jsonb[])
                     THEN (item - 'details' - 'source') || jsonb_build_object('text', %(marker)s::text)
                     ELSE item END
                ORDER BY n), '[]'::jsonb)
       FROM jsonb_array_elements({array}) WITH ORDINALITY AS t(item, n))
"""

_SQL = f"""
UPDATE {Step._meta.db_table} AS step
   SET payload = CASE
         WHEN step.kind = %(llm_call)s
         THEN jsonb_set(step.payload, '{{recalled}}',
                        {_REDACTED.format(array="step.payload->'recalled'")})
         ELSE jsonb_set(step.payload, '{{result,memories}}',
                        {_REDACTED.format(array="step.payload->'result'->'memories'")})
       END
 WHERE step.task_id IN (
         SELECT task.id FROM {Task._meta.db_table} AS task
          WHERE task.employee_id = ANY(%(employees)s::bigint[])
             OR task.employee_id IN (
                  SELECT employee.id FROM {Employee._meta.db_table} AS employee
                   WHERE employee.team_id = ANY(%(teams)s::bigint[])))
   AND (   (step.kind = %(llm_call)s
            AND jsonb_typeof(step.payload->'recalled') = 'array'
            AND step.payload->'recalled' @> ANY(%(needles)s::jsonb[]))
        OR (step.kind = %(tool_call)s
            AND step.payload->>'name' = 'recall'
            AND jsonb_typeof(step.payload->'result'->'memories') = 'array'
            AND step.payload->'result'->'memories' @> ANY(%(needles)s::jsonb[])))
"""  # noqa: S608 - constants only


def steps_redact_memories(
    *, memory_ids: Iterable[int], employee_ids: Iterable[int], team_ids: Iterable[int]
) -> int:
    """Replace the text of these memories in the steps of the owners' tasks; returns the steps
    changed. Team memories are looked for in the tasks of the team's current employees."""
    ids = sorted(set(memory_ids))
    if not ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            _SQL,
            {
                "ids": [json.dumps(pk) for pk in ids],
                "needles": [json.dumps([{"id": pk}]) for pk in ids],
                "marker": FORGOTTEN,
                "employees": sorted(set(employee_ids)),
                "teams": sorted(set(team_ids)),
                "llm_call": StepKind.LLM_CALL,
                "tool_call": StepKind.TOOL_CALL,
            },
        )
        return cursor.rowcount
