"""Declarations of the built-in tools: their arguments, default risk and scope of a grant."""

from __future__ import annotations

from tasks.tools import email, followup, http, memory
from tasks.tools.registry import Risk, Tool, register

_DOMAIN = {"type": "string", "pattern": r"^(\*\.)?([a-z0-9-]+\.)+[a-z]{2,}$"}
_HOST = {"type": "string", "pattern": r"^(\*\.)?([a-z0-9-]+\.)*[a-z0-9-]+(:[0-9]{1,5})?$"}

SEND_EMAIL = register(
    Tool(
        name="send_email",
        description="Send an email. Delivered through the outbox after any required approval.",
        parameters={
            "type": "object",
            "properties": {
                "to": {
                    "type": "array",
                    "items": {"type": "string", "format": "email"},
                    "minItems": 1,
                },
                "subject": {"type": "string", "minLength": 1, "maxLength": 300},
                "body": {"type": "string", "minLength": 1},
                "in_reply_to": {
                    "type": "string",
                    "maxLength": 500,
                    "description": "Message-ID of the mail this answers (a reply to the task's "
                    "own sender is threaded without it).",
                },
            },
            "required": ["to", "subject", "body"],
            "additionalProperties": False,
        },
        default_risk=Risk.HIGH,
        check_scope=email.check_scope,
        execute=email.execute,
        scope_schema={
            "type": "object",
            "properties": {
                "allowed_domains": {
                    "type": "array",
                    "items": _DOMAIN,
                    "minItems": 1,
                    "uniqueItems": True,
                },
            },
            "required": ["allowed_domains"],
            "additionalProperties": False,
        },
    )
)

HTTP_REQUEST = register(
    Tool(
        name="http_request",
        description="Make an HTTP request to an allowed host and return the status and body.",
        parameters={
            "type": "object",
            "properties": {
                "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
                "url": {"type": "string", "minLength": 8},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "body": {"type": "string"},
            },
            "required": ["method", "url"],
            "additionalProperties": False,
        },
        default_risk=Risk.MEDIUM,
        transactional=False,
        writes_database=False,
        check_scope=http.check_scope,
        execute=http.execute,
        scope_schema={
            "type": "object",
            "properties": {
                "allowed_hosts": {
                    "type": "array",
                    "items": _HOST,
                    "minItems": 1,
                    "uniqueItems": True,
                },
                "allowed_methods": {
                    "type": "array",
                    "items": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
                    "minItems": 1,
                    "uniqueItems": True,
                },
                "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 120},
                "max_response_bytes": {"type": "integer", "minimum": 1, "maximum": 10_000_000},
            },
            "required": ["allowed_hosts"],
            "additionalProperties": False,
        },
    )
)

CREATE_TASK = register(
    Tool(
        name="create_task",
        description="Create a follow-up task for yourself, optionally due at a later time.",
        parameters={
            "type": "object",
            "properties": {
                "title": {"type": "string", "minLength": 1, "maxLength": 200},
                "instructions": {"type": "string", "minLength": 1},
                "due_at": {"type": "string", "format": "date-time"},
            },
            "required": ["title", "instructions"],
            "additionalProperties": False,
        },
        default_risk=Risk.LOW,
        side_effects=False,
        execute=followup.execute,
        scope_schema={
            "type": "object",
            "properties": {"max_per_task": {"type": "integer", "minimum": 1, "maximum": 50}},
            "additionalProperties": False,
        },
    )
)

ESCALATE_TO_HUMAN = register(
    Tool(
        name="escalate_to_human",
        description="Hand a decision to a person: summary, evidence, options and your recommendation.",
        parameters={
            "type": "object",
            "properties": {
                "summary": {"type": "string", "minLength": 1},
                "evidence": {"type": "array", "items": {"type": "string"}},
                "options": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "recommendation": {"type": "string"},
            },
            "required": ["summary", "options"],
            "additionalProperties": False,
        },
        default_risk=Risk.LOW,
        side_effects=False,
        parks_task=True,
    )
)

RECALL = register(
    Tool(
        name="recall",
        description="Search your long-term memory (yours and your team's) for what bears on a "
        "question. Cite what you use in your final answer as [m<id>].",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "maxLength": 2000},
                "k": {"type": "integer", "minimum": 1, "maximum": 20},
                "kind": {"enum": ["fact", "lesson", "episode", "document"]},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        default_risk=Risk.LOW,
        side_effects=False,
        writes_database=False,
        execute=memory.recall,
    )
)

REMEMBER = register(
    Tool(
        name="remember",
        description="Save a fact worth knowing on later tasks (or a note of what you did) to "
        "your long-term memory.",
        parameters={
            "type": "object",
            "properties": {
                "text": {"type": "string", "minLength": 1, "maxLength": 2000},
                "kind": {"enum": memory.REMEMBERABLE_KINDS},
                "share_with_team": {"type": "boolean"},
            },
            "required": ["text"],
            "additionalProperties": False,
        },
        default_risk=Risk.LOW,
        side_effects=False,
        check_scope=memory.check_remember_scope,
        execute=memory.remember,
        scope_schema={
            "type": "object",
            "properties": {"allow_team": {"type": "boolean"}},
            "additionalProperties": False,
        },
    )
)
