"""The demo workforce: three teams and eight AI employees with real briefs, SOPs, tools and duties.

Ava (support) has a mailbox and works in the shop's order desk, an MCP server shipped with the
demo (employees/demo_servers/order_desk.py): she looks an order up and proposes a refund, which
waits in the inbox.

The onboarding team shows delegation: its coordinator (a manager employee) splits a request
into linked requests for the HR, IT and facilities specialists and assembles their results;
IT's laptop order waits for a person's approval.
"""

from __future__ import annotations

import logging
import sys
from datetime import time
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import transaction

from aiworkforce.audit import Actor
from employees import services
from employees.demo_golden import load_demo_golden_tasks
from employees.memory.services import memory_remember
from employees.models import (
    Duty,
    Employee,
    EmployeeStatus,
    MemoryKind,
    Team,
    ToolGrant,
    ToolPolicy,
)
from mailboxes.services import mailbox_set
from tasks.mcp import client
from tasks.mcp.services import mcp_server_add, mcp_tools_refresh
from tasks.models import McpServer

logger = logging.getLogger(__name__)

TEAMS = [
    {
        "name": "Customer Support",
        "description": "Answers customers and keeps the inbox at zero.",
        "knowledge": [
            "Password resets: customers reset their own password at https://example.com/reset; "
            "the link is valid for one hour. Support staff never set passwords for customers.",
            "Refunds and credits are decided by the support lead: an AI employee may propose one "
            "(it waits in the inbox), never make one on its own.",
        ],
    },
    {
        "name": "IT Operations",
        "description": "Keeps systems healthy and people equipped.",
        "knowledge": [
            "Access to billing and finance systems needs the finance lead's written approval.",
        ],
    },
    {
        "name": "Onboarding",
        "description": "Gets new hires ready for their first day: paperwork, equipment, access.",
        "knowledge": [
            "New hires get their laptop from IT on their first day; order it five working days ahead.",
        ],
    },
]

# Every demo employee can search and add to its long-term memory (used by a real model).
MEMORY_GRANTS = [("recall", {}, ToolPolicy.AUTO), ("remember", {}, ToolPolicy.AUTO)]

ONBOARDING_REQUEST = "Onboard the new analyst who starts Monday; needs a laptop and a badge"


def _delegate_hint(handle: str, instructions: str, expected: str) -> dict:
    return {
        "name": "delegate",
        "arguments": {
            "to": handle,
            "instructions": instructions + " Request: {input}",
            "expected_result": expected,
        },
    }


def _email_hint(to: str, subject: str, body: str) -> dict:
    return {
        "name": "send_email",
        "arguments": {"to": [to], "subject": subject, "body": body + "\n\n{input}"},
    }


_ONBOARDING_EMAIL = ("send_email", {"allowed_domains": ["example.com"]})

# The order desk (employees/demo_servers/order_desk.py), an MCP server the worker starts over stdio.
ORDER_DESK = "orders"
LOOKUP_ORDER = f"mcp:{ORDER_DESK}/lookup_order"
REFUND_ORDER = f"mcp:{ORDER_DESK}/refund_order"

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
            "constraints": "Never share another customer's data. Never promise a refund: propose it, a person decides.",
            "success_criteria": "Customer confirms the answer helped; no re-opened requests.",
            "escalation_rules": "Escalate legal threats, security reports and disputes over a refund to a human.",
            "sop": [
                {"text": "Read the request and decide: question, order problem, billing or other."},
                {
                    "text": "Look the order up in the order desk.",
                    "when": ["order"],
                    "tool": {
                        "name": LOOKUP_ORDER,
                        "arguments": {"order_id": "{first_reference}"},
                    },
                },
                {
                    "text": "If the order arrived broken or never came, propose a full refund; "
                    "the support lead approves or rejects it in the inbox.",
                    "when": ["refund", "broken"],
                    "tool": {
                        "name": REFUND_ORDER,
                        "arguments": {
                            "order_id": "{first_reference}",
                            "reason": "Customer request: {title}",
                        },
                    },
                },
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
            (LOOKUP_ORDER, {}, ToolPolicy.AUTO),
            (REFUND_ORDER, {}, ToolPolicy.NEEDS_APPROVAL),
        ],
        # Customers write to her; mail from anyone outside example.com is held for a person.
        "mailbox": ("ava@support.example.com", ["example.com"]),
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
    {
        "team": "Onboarding",
        "status": EmployeeStatus.ACTIVE,
        "fields": {
            "name": "Olivia",
            "handle": "olivia-onboarding",
            "avatar_colour": "#15803d",
            "is_manager": True,
            "role_title": "Onboarding coordinator (manager employee)",
            "job_description": "Takes each onboarding request, splits it into linked requests for "
            "the HR, IT and facilities specialists, follows them and assembles one summary.",
            "goals": "Every new hire has paperwork, a laptop and a badge before their first day.",
            "tone": "Organised and brief: what is done, what is pending, who owns it.",
            "constraints": "Do not do the specialists' work yourself; delegate it and report.",
            "success_criteria": "All three specialists report done before the start date.",
            "escalation_rules": "Escalate when a specialist fails or is late for the start date.",
            "sop": [
                {"text": "Split the request into HR, IT and facilities work."},
                {
                    "text": "Ask HR to prepare the paperwork and first-day schedule.",
                    "tool": _delegate_hint(
                        "hana-hr",
                        "Prepare the contract, payroll and first-day schedule for the new hire.",
                        "Paperwork and first-day schedule ready.",
                    ),
                },
                {
                    "text": "Ask IT for a laptop and accounts.",
                    "tool": _delegate_hint(
                        "ivan-it",
                        "Order a laptop and prepare accounts for the new hire.",
                        "Laptop ordered and accounts ready for day one.",
                    ),
                },
                {
                    "text": "Ask facilities for a badge and a desk.",
                    "tool": _delegate_hint(
                        "fay-facilities",
                        "Issue a building badge and assign a desk for the new hire.",
                        "Badge and desk ready for day one.",
                    ),
                },
                {"text": "Assemble the specialists' results into one onboarding summary."},
            ],
        },
        "grants": [
            ("delegate", {"max_children": 5}, ToolPolicy.AUTO),
            ("escalate_to_human", {}, ToolPolicy.AUTO),
        ],
        "duties": [],
        "hours": (True, "UTC", []),
    },
    {
        "team": "Onboarding",
        "status": EmployeeStatus.ACTIVE,
        "reports_to": "olivia-onboarding",
        "fields": {
            "name": "Hana",
            "handle": "hana-hr",
            "avatar_colour": "#a21caf",
            "role_title": "HR onboarding specialist",
            "job_description": "Prepares contracts, payroll and the first-day schedule for new hires.",
            "goals": "Paperwork is signed before day one.",
            "tone": "Friendly and exact.",
            "constraints": "Never share salary details outside HR and payroll.",
            "success_criteria": "Payroll and contract confirmed; schedule sent.",
            "escalation_rules": "Escalate missing contract details to the HR lead.",
            "sop": [
                {
                    "text": "Ask payroll to set up the contract and salary.",
                    "tool": _email_hint(
                        "payroll@example.com",
                        "New starter: contract and payroll",
                        "Please prepare the contract and payroll for this new starter.",
                    ),
                },
                {"text": "Report what was requested and the first-day schedule."},
            ],
        },
        "grants": [
            (*_ONBOARDING_EMAIL, ToolPolicy.AUTO),
            ("escalate_to_human", {}, ToolPolicy.AUTO),
        ],
        "duties": [],
        "hours": (True, "UTC", []),
    },
    {
        "team": "Onboarding",
        "status": EmployeeStatus.ACTIVE,
        "reports_to": "olivia-onboarding",
        "fields": {
            "name": "Ivan",
            "handle": "ivan-it",
            "avatar_colour": "#1d4ed8",
            "role_title": "IT equipment specialist",
            "job_description": "Orders laptops and prepares accounts for new hires.",
            "goals": "A working laptop and accounts on day one.",
            "tone": "Technical and brief.",
            "constraints": "Purchases need a person's approval; standard models only.",
            "success_criteria": "Laptop ordered, accounts ready before day one.",
            "escalation_rules": "Escalate non-standard hardware requests.",
            "sop": [
                {
                    "text": "Order a standard analyst laptop from procurement (a purchase: needs approval).",
                    "tool": _email_hint(
                        "procurement@example.com",
                        "Laptop order for a new starter",
                        "Please order one standard analyst laptop (14 inch, 32 GB) for this new starter.",
                    ),
                },
                {"text": "Report the order and the accounts to be created on day one."},
            ],
        },
        "grants": [
            (*_ONBOARDING_EMAIL, ToolPolicy.NEEDS_APPROVAL),
            ("escalate_to_human", {}, ToolPolicy.AUTO),
        ],
        "duties": [],
        "hours": (True, "UTC", []),
    },
    {
        "team": "Onboarding",
        "status": EmployeeStatus.ACTIVE,
        "reports_to": "olivia-onboarding",
        "fields": {
            "name": "Fay",
            "handle": "fay-facilities",
            "avatar_colour": "#c2410c",
            "role_title": "Facilities specialist",
            "job_description": "Issues building badges and assigns desks for new hires.",
            "goals": "Nobody waits at reception on their first day.",
            "tone": "Practical.",
            "constraints": "Badges only for people with a confirmed start date.",
            "success_criteria": "Badge printed and desk assigned before day one.",
            "escalation_rules": "Escalate when no desk is free.",
            "sop": [
                {
                    "text": "Ask reception to print a badge and reserve a desk.",
                    "tool": _email_hint(
                        "frontdesk@example.com",
                        "Badge and desk for a new starter",
                        "Please print a building badge and reserve a desk for this new starter.",
                    ),
                },
                {"text": "Report the badge and the desk."},
            ],
        },
        "grants": [
            (*_ONBOARDING_EMAIL, ToolPolicy.AUTO),
            ("escalate_to_human", {}, ToolPolicy.AUTO),
        ],
        "duties": [],
        "hours": (True, "UTC", []),
    },
]


@transaction.atomic
def _order_desk(actor: Actor) -> bool:
    """Register the order desk and list its tools (once); False when it cannot be started."""
    if McpServer.objects.filter(name=ORDER_DESK, tools__isnull=False).exists():
        return True
    server = McpServer.objects.filter(name=ORDER_DESK).first() or mcp_server_add(
        name=ORDER_DESK,
        actor=actor,
        command=[sys.executable, str(Path(__file__).parent / "demo_servers" / "order_desk.py")],
        env={"ORDER_DESK_LEDGER": str(settings.VAR_DIR / "order-desk-refunds.jsonl")},
    )
    try:
        mcp_tools_refresh(server=server, actor=actor)
    except client.McpError as exc:
        logger.warning("The demo's order desk did not start (%s); Ava works without it.", exc)
        return False
    return True


def _without_mcp(spec: dict) -> dict:
    """The employee's spec with its MCP steps and grants left out."""
    fields = dict(spec["fields"])
    fields["sop"] = [
        step
        for step in fields["sop"]
        if not (step.get("tool") or {}).get("name", "").startswith("mcp:")
    ]
    grants = [grant for grant in spec["grants"] if not grant[0].startswith("mcp:")]
    return {**spec, "fields": fields, "grants": grants}


def load_demo_workforce(*, owner=None) -> dict[str, int]:
    """Create whatever part of the demo is missing; never changes what already exists."""
    actor = Actor.system("demo loader")
    created = {"teams": 0, "employees": 0}
    order_desk = None
    teams = {}
    for spec in TEAMS:
        team, was_created = Team.objects.get_or_create(
            name=spec["name"], defaults={"description": spec["description"]}
        )
        teams[team.name] = team
        created["teams"] += was_created
        if was_created:
            for text in spec["knowledge"]:
                memory_remember(
                    kind=MemoryKind.FACT, team=team, text=text, source="demo", actor=actor
                )
        if owner is not None:
            team.memberships.get_or_create(user=owner, defaults={"role": "manager"})
    hired: list[Employee] = []
    for spec in EMPLOYEES:
        if Employee.objects.filter(handle=spec["fields"]["handle"]).exists():
            continue
        uses_mcp = any(grant[0].startswith("mcp:") for grant in spec["grants"])
        if uses_mcp and order_desk is None:
            order_desk = _order_desk(actor)
        if uses_mcp and not order_desk:
            spec = _without_mcp(spec)
        employee = Employee(
            team=teams[spec["team"]],
            manager=owner,
            reports_to=Employee.objects.filter(handle=spec.get("reports_to") or "").first(),
            max_cost_per_task=Decimal("0.50"),
            **spec["fields"],
        )
        services.employee_create(employee=employee, actor=actor)
        for tool_name, scope, policy in [*spec["grants"], *MEMORY_GRANTS]:
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
        if spec.get("mailbox"):
            address, allowed = spec["mailbox"]
            mailbox_set(employee=employee, address=address, allowed_senders=allowed, actor=actor)
        services.employee_transition(employee=employee, to=spec["status"], actor=actor)
        created["employees"] += 1
        hired.append(employee)
    created["golden tasks"] = load_demo_golden_tasks(hired)
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
        "ava-support",
        "demo:broken-order",
        "Order A-1002 arrived broken",
        "From: jane@example.com\nSubject: Order A-1002 arrived broken\n\nHi, the teapot from my "
        "order A-1002 arrived in pieces. Could I get a refund? Thanks, Jane",
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
