"""The demo workforce's golden tasks: `./workforce manage evaluate ava-support` passes offline.

Each case holds the expectations a GoldenTask stores (evaluations/expectations.py). A case
expecting a call of a tool the employee was not granted (Ava without the order desk, when its
MCP server could not start) is left out: it could never pass.
"""

from __future__ import annotations

from employees.models import Employee
from evaluations.services import golden_task_create

# The order desk's tools (employees.demo.LOOKUP_ORDER and REFUND_ORDER).
_LOOKUP, _REFUND = "mcp:orders/lookup_order", "mcp:orders/refund_order"


def _email(to: str, **patterns: str) -> dict:
    call: dict = {"tool": "send_email", "arguments": {"to": [to]}}
    if patterns:
        call["patterns"] = patterns
    return call


def _delegate(handle: str) -> dict:
    return {"tool": "delegate", "arguments": {"to": handle}}


DEMO_GOLDEN: dict[str, list[tuple[str, str, dict]]] = {
    "ava-support": [
        (
            "Password reset question",
            "From: jane@example.com\nSubject: Can't log in\n\nHi, how do I reset my password? "
            "Thanks, Jane",
            {
                "calls": [_email("jane@example.com")],
                "not_calls": [_REFUND],
                "escalates": False,
                "max_steps": 6,
                "max_cost": "0.50",
            },
        ),
        (
            "A broken order gets a refund proposal",
            "From: jane@example.com\nSubject: Order A-1002 arrived broken\n\nHi, the teapot "
            "from my order A-1002 arrived in pieces. Could I get a refund? Thanks, Jane",
            {
                "calls": [
                    {"tool": _LOOKUP, "arguments": {"order_id": "A-1002"}},
                    {"tool": _REFUND, "arguments": {"order_id": "A-1002"}},
                    _email("jane@example.com"),
                ],
                "answer_not_contains": ["refund has been issued"],
                "max_steps": 6,
            },
        ),
    ],
    "sam-followup": [
        (
            "Follow-up after a resolved request",
            "Request about a late delivery from ann@example.com was resolved on Monday.",
            {"calls": [_email("ann@example.com", subject="(?i)help")], "max_steps": 4},
        ),
    ],
    "rex-it-ops": [
        (
            "Health check of the web app",
            "Check that the web app answers: http://127.0.0.1:8000/healthz",
            {
                "calls": [
                    {
                        "tool": "http_request",
                        "arguments": {"method": "GET", "url": "http://127.0.0.1:8000/healthz"},
                    }
                ],
                "max_steps": 4,
            },
        ),
    ],
    "nia-access": [
        (
            "An access request is escalated with a recommendation",
            "Bob Smith (bob@example.com) asks for admin access to the billing system to fix an "
            "invoice.",
            {
                "calls": [
                    {"tool": "escalate_to_human", "patterns": {"recommendation": "(?i)read-only"}}
                ],
                "escalates": True,
                "max_steps": 4,
            },
        ),
    ],
    "olivia-onboarding": [
        (
            "Onboarding is split across HR, IT and facilities",
            "Onboard the new analyst who starts Monday; needs a laptop and a badge",
            {
                "calls": [_delegate("hana-hr"), _delegate("ivan-it"), _delegate("fay-facilities")],
                "escalates": False,
                "max_steps": 4,
            },
        ),
    ],
    "hana-hr": [
        (
            "Contract and payroll for a new starter",
            "Prepare the contract, payroll and first-day schedule for Dana Lee, starting Monday.",
            {"calls": [_email("payroll@example.com", body="Dana Lee")], "max_steps": 4},
        ),
    ],
    "ivan-it": [
        (
            "A laptop for a new starter",
            "Order a laptop and prepare accounts for Dana Lee, starting Monday.",
            {"calls": [_email("procurement@example.com", subject="(?i)laptop")], "max_steps": 4},
        ),
    ],
    "fay-facilities": [
        (
            "A badge and a desk for a new starter",
            "Issue a building badge and assign a desk for Dana Lee, starting Monday.",
            {"calls": [_email("frontdesk@example.com", body="Dana Lee")], "max_steps": 4},
        ),
    ],
}


def load_demo_golden_tasks(employees: list[Employee]) -> int:
    """Give demo employees just created their cases; how many were created. Employees that
    existed already are left as they are (a manager may have removed cases on purpose)."""
    created = 0
    for employee in employees:
        if employee.handle not in DEMO_GOLDEN:
            continue
        granted = set(employee.tool_grants.values_list("tool_name", flat=True))
        for title, text, expectations in DEMO_GOLDEN[employee.handle]:
            if all(call["tool"] in granted for call in expectations.get("calls", [])):
                golden_task_create(
                    employee=employee, title=title, input=text, expectations=expectations
                )
                created += 1
    return created
