"""The demo workforce: two teams and four AI employees with real briefs, SOPs, tools and duties."""

from __future__ import annotations

from datetime import time
from decimal import Decimal

from django.db import transaction

from aiworkforce.audit import Actor
from employees import services
from employees.models import Duty, Employee, EmployeeStatus, Team, ToolGrant, ToolPolicy

TEAMS = [
    {"name": "Customer Support", "description": "Answers customers and keeps the inbox at zero."},
    {"name": "IT Operations", "description": "Keeps systems healthy and people equipped."},
]

EMPLOYEES = [
    {
        "team": "Customer Support",
        "status": EmployeeStatus.ACTIVE,
        "fields": {
            "name": "Ava",
            "handle": "ava-support",
            "avatar_colour": "#0e7490",
            "role_title": "Support triage specialist",
            "job_description": "Reads new support requests, classifies them, answers the simple "
            "ones from the knowledge base and routes the rest to the right person.",
            "goals": "Every request gets a first answer within one business hour.",
            "tone": "Warm, brief and concrete. No jargon, no promises we cannot keep.",
            "constraints": "Never share another customer's data. Never offer refunds or credits.",
            "success_criteria": "Customer confirms the answer helped; no re-opened requests.",
            "escalation_rules": "Escalate legal threats, security reports and refund requests to a human.",
            "sop": [
                {"text": "Read the request and decide: question, bug report, billing or other."},
                {
                    "text": "Reply to the customer with a first answer and what happens next.",
                    "tool": {
                        "name": "send_email",
                        "arguments": {
                            "to": ["{first_email}"],
                            "subject": "We have your request",
                            "body": "Thanks for writing in. We are on it and will reply within one business hour.",
                        },
                    },
                },
                {"text": "Summarise the request and the reply in the final answer."},
            ],
        },
        "grants": [
            ("send_email", {"allowed_domains": ["example.com"]}, ToolPolicy.NEEDS_APPROVAL),
            ("escalate_to_human", {}, ToolPolicy.AUTO),
            ("create_task", {"max_per_task": 3}, ToolPolicy.AUTO),
        ],
        "duties": [
            (
                "Morning inbox sweep",
                "0 9 * * 1-5",
                "Europe/London",
                "Sort the support inbox and answer what you can.",
            )
        ],
        "hours": (False, "Europe/London", [(day, time(8, 0), time(18, 0)) for day in range(5)]),
    },
    {
        "team": "Customer Support",
        "status": EmployeeStatus.ACTIVE,
        "fields": {
            "name": "Sam",
            "handle": "sam-followup",
            "avatar_colour": "#7c3aed",
            "role_title": "Customer follow-up coordinator",
            "job_description": "Follows up with customers whose requests were resolved, asks "
            "whether the answer worked and records the outcome.",
            "goals": "Close the loop on every resolved request within two days.",
            "tone": "Friendly and short; one question per email.",
            "constraints": "At most one follow-up per customer per week. Only write to example.com addresses.",
            "success_criteria": "Follow-up sent and outcome recorded for each resolved request.",
            "escalation_rules": "Escalate unhappy customers to the support lead with the thread summary.",
            "sop": [
                {"text": "Find the resolved request named in the task."},
                {
                    "text": "Ask the customer whether the resolution worked.",
                    "tool": {
                        "name": "send_email",
                        "arguments": {
                            "to": ["{first_email}"],
                            "subject": "Did our answer help?",
                            "body": "Hi! Last week we resolved your request. Did it work for you? Just reply to this email.",
                        },
                    },
                },
                {"text": "Record the outcome in the final answer."},
            ],
        },
        "grants": [
            ("send_email", {"allowed_domains": ["example.com"]}, ToolPolicy.NEEDS_APPROVAL),
            ("escalate_to_human", {}, ToolPolicy.AUTO),
        ],
        "duties": [],
        "hours": (True, "UTC", []),
    },
    {
        "team": "IT Operations",
        "status": EmployeeStatus.ACTIVE,
        "fields": {
            "name": "Rex",
            "handle": "rex-it-ops",
            "avatar_colour": "#b45309",
            "role_title": "IT operations watcher",
            "job_description": "Checks the health endpoints of internal services every morning "
            "and reports anything unusual to the IT team.",
            "goals": "Nobody learns about an outage from a customer.",
            "tone": "Factual and terse, like an incident log.",
            "constraints": "Read-only: GET requests to allowed internal hosts only.",
            "success_criteria": "A daily status report; every failure escalated within minutes.",
            "escalation_rules": "Escalate any failed health check, with the response as evidence.",
            "sop": [
                {
                    "text": "Check the health endpoint named in the task.",
                    "tool": {
                        "name": "http_request",
                        "arguments": {
                            "method": "GET",
                            "url": "{first_url}",
                        },
                    },
                },
                {"text": "Report the status; escalate if the check failed."},
            ],
        },
        "grants": [
            (
                "http_request",
                {
                    "allowed_hosts": ["localhost", "127.0.0.1"],
                    "allowed_methods": ["GET"],
                    "timeout_seconds": 5,
                },
                ToolPolicy.AUTO,
            ),
            ("escalate_to_human", {}, ToolPolicy.AUTO),
        ],
        "duties": [
            (
                "Morning health check",
                "30 8 * * *",
                "UTC",
                "Check the internal services and report their status.",
            )
        ],
        "hours": (True, "UTC", []),
    },
    {
        "team": "IT Operations",
        "status": EmployeeStatus.SHADOW,
        "fields": {
            "name": "Nia",
            "handle": "nia-access",
            "avatar_colour": "#be123c",
            "role_title": "Access request handler",
            "job_description": "Handles requests for access to internal tools: checks who is "
            "asking, what for, and prepares the request for the IT lead.",
            "goals": "Access requests are decided within one day, with least privilege.",
            "tone": "Precise. Always state who asked, for what, and why.",
            "constraints": "Never grant access yourself; a person decides every access request.",
            "success_criteria": "Every request is complete enough for the IT lead to decide at a glance.",
            "escalation_rules": "Every access request is escalated to a human with a recommendation.",
            "sop": [
                {"text": "Identify the requester, the system and the reason."},
                {
                    "text": "Escalate the request to the IT lead with a recommendation.",
                    "tool": {
                        "name": "escalate_to_human",
                        "arguments": {
                            "summary": "Access request needs a decision: {input}",
                            "options": ["Grant read-only access", "Grant full access", "Refuse"],
                            "recommendation": "Grant read-only access",
                        },
                    },
                },
            ],
        },
        "grants": [("escalate_to_human", {}, ToolPolicy.AUTO)],
        "duties": [],
        "hours": (True, "UTC", []),
    },
]


@transaction.atomic
def load_demo_workforce(*, owner=None) -> dict[str, int]:
    """Create whatever part of the demo is missing; never changes what already exists."""
    actor = Actor.system("demo loader")
    created = {"teams": 0, "employees": 0}
    teams = {}
    for spec in TEAMS:
        team, was_created = Team.objects.get_or_create(
            name=spec["name"], defaults={"description": spec["description"]}
        )
        teams[team.name] = team
        created["teams"] += was_created
        if owner is not None:
            team.memberships.get_or_create(user=owner, defaults={"role": "manager"})
    for spec in EMPLOYEES:
        if Employee.objects.filter(handle=spec["fields"]["handle"]).exists():
            continue
        employee = Employee(
            team=teams[spec["team"]],
            manager=owner,
            max_cost_per_task=Decimal("0.50"),
            **spec["fields"],
        )
        services.employee_create(employee=employee, actor=actor)
        for tool_name, scope, policy in spec["grants"]:
            services.tool_grant_save(
                grant=ToolGrant(employee=employee, tool_name=tool_name, scope=scope, policy=policy),
                actor=actor,
            )
        for name, cron, tz, instructions in spec["duties"]:
            services.duty_save(
                duty=Duty(
                    employee=employee, name=name, cron=cron, timezone=tz, instructions=instructions
                ),
                actor=actor,
            )
        always_on, tz, windows = spec["hours"]
        if not always_on:
            services.working_hours_set(
                employee=employee, actor=actor, always_on=False, tz=tz, windows=windows
            )
        services.employee_transition(employee=employee, to=spec["status"], actor=actor)
        created["employees"] += 1
    return created


DEMO_TASKS = [
    (
        "rex-it-ops",
        "demo:health-check",
        "Morning health check",
        "Check that the web app answers: {base_url}healthz",
    ),
    (
        "ava-support",
        "demo:password-reset",
        "Password reset question",
        "From: jane@example.com\nSubject: Can't log in\n\nHi, how do I reset my password? Thanks, Jane",
    ),
    (
        "nia-access",
        "demo:billing-access",
        "Access to billing",
        "Bob Smith (bob@example.com) asks for admin access to the billing system to fix an invoice.",
    ),
]


def load_demo_tasks(*, base_url: str) -> int:
    """Give the demo employees one piece of work each (once): a finish, an approval, an escalation."""
    from tasks.models import TaskSource
    from tasks.services import TaskRefused, task_create

    created = 0
    for handle, key, title, text in DEMO_TASKS:
        employee = Employee.objects.filter(handle=handle).first()
        if employee is None:
            continue
        try:
            _, was_created = task_create(
                employee=employee,
                title=title,
                input=text.format(base_url=base_url),
                source=TaskSource.MANUAL,
                urgent=True,
                idempotency_key=key,
            )
        except TaskRefused:
            continue
        created += was_created
    return created
