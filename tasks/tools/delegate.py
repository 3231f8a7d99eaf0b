"""delegate: hand part of a task to another AI employee along the collaboration lines.

The loop carries it out (tasks.loop.delegation, through tasks.services): it creates a linked
child task once per call, parks the delegating task without holding a worker, and returns the
child's outcome as this call's result when the child finishes, fails or escalates.
"""

from __future__ import annotations

from tasks.tools.registry import Risk, Tool, register

HANDLE = {"type": "string", "pattern": r"^@?[a-z][a-z0-9_-]{1,39}$"}


DELEGATE = register(
    Tool(
        name="delegate",
        description=(
            "Ask another AI employee to do part of this task. They get a linked task with your "
            "instructions and the result you expect; when they finish, fail or escalate, their "
            "outcome comes back as this call's result. Call it several times at once to work in "
            "parallel. Only along your collaboration lines: your team, your reporting line, your "
            "allow-list, or another team's manager employee (which routes the request)."
        ),
        parameters={
            "type": "object",
            "properties": {
                "to": {**HANDLE, "description": "The employee's handle, e.g. 'it-specialist'."},
                "instructions": {"type": "string", "minLength": 1, "maxLength": 4000},
                "expected_result": {"type": "string", "minLength": 1, "maxLength": 1000},
                "deadline_hours": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 720,
                    "description": "How long you wait for the result before a person is asked.",
                },
            },
            "required": ["to", "instructions", "expected_result"],
            "additionalProperties": False,
        },
        default_risk=Risk.LOW,
        # Creating work for another employee acts on the world: proposed only in shadow mode.
        # Collaboration lines, limits and cycles need the database: tasks.services checks them.
        side_effects=True,
        delegates=True,
        scope_schema={
            "type": "object",
            "properties": {
                "allowed_handles": {
                    "type": "array",
                    "items": {"type": "string", "pattern": r"^[a-z][a-z0-9_-]{1,39}$"},
                    "uniqueItems": True,
                    "description": "Employees outside the usual collaboration lines it may ask.",
                },
                "max_children": {"type": "integer", "minimum": 1, "maximum": 50},
            },
            "additionalProperties": False,
        },
    )
)
