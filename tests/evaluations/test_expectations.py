"""Matching a case's outcome against a golden task's expectations: each kind passes and fails."""

from __future__ import annotations

from decimal import Decimal

import pytest

from evaluations.expectations import Outcome, expectations_problem, failures, is_subset

EMAIL = ("send_email", {"to": ["ann@example.com"], "subject": "Refund A-1", "body": "Done."})


def outcome(**kwargs) -> Outcome:
    base = {"calls": [EMAIL], "attempted": ["send_email"], "answer": "Refunded.", "steps": 2}
    return Outcome(**(base | kwargs))


@pytest.mark.parametrize(
    ("expected", "ok"),
    [
        ({"tool": "send_email"}, True),
        ({"tool": "send_email", "arguments": {"to": ["ann@example.com"]}}, True),
        ({"tool": "send_email", "arguments": {"to": ["bob@example.com"]}}, False),
        ({"tool": "send_email", "patterns": {"subject": r"^Refund A-\d+$"}}, True),
        ({"tool": "send_email", "patterns": {"subject": "(?i)apology"}}, False),
        ({"tool": "send_email", "patterns": {"cc": "x"}}, False),
        ({"tool": "http_request"}, False),
    ],
)
def test_a_call_expectation_matches_a_subset_or_a_pattern_per_field(expected, ok):
    assert (failures({"calls": [expected]}, outcome()) == []) is ok


def test_a_refused_call_does_not_count_as_made_but_counts_as_attempted():
    refused = outcome(calls=[], attempted=["http_request"])
    assert failures({"calls": [{"tool": "http_request"}]}, refused) == [
        "expected a call of http_request (it was called, with other arguments or refused)"
    ]
    assert failures({"not_calls": ["http_request"]}, refused) == [
        "must not call http_request, called it 1 time(s)"
    ]
    assert failures({"not_calls": ["delegate"]}, refused) == []


def test_escalation_expected_or_forbidden():
    assert failures({"escalates": True}, outcome(escalated=True)) == []
    assert failures({"escalates": True}, outcome()) == ["expected an escalation"]
    assert failures({"escalates": False}, outcome(escalated=True)) == ["escalated"]


def test_answer_contains_and_not_contains_ignore_case():
    assert failures({"answer_contains": ["refunded"]}, outcome()) == []
    assert failures({"answer_contains": ["sorry"]}, outcome()) == [
        "the answer does not contain “sorry”"
    ]
    assert failures({"answer_not_contains": ["REFUNDED"]}, outcome()) == [
        "the answer contains “REFUNDED”"
    ]


def test_step_and_cost_ceilings():
    assert failures({"max_steps": 2, "max_cost": "0.01"}, outcome(cost=Decimal("0.01"))) == []
    assert failures({"max_steps": 1}, outcome()) == ["took 2 steps, at most 1 allowed"]
    assert failures({"max_cost": "0.001"}, outcome(cost=Decimal("0.0042"))) == [
        "cost $0.0042, at most $0.0010 allowed"
    ]


def test_subsets_compare_nested_objects_and_whole_lists():
    assert is_subset({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}, "d": 3})
    assert not is_subset({"a": [1]}, {"a": [1, 2]})
    assert not is_subset({"a": 1}, {"a": "1"})


@pytest.mark.parametrize(
    ("expectations", "problem"),
    [
        ({}, "Give at least one expectation."),
        ({"calls": [{"arguments": {}}]}, "expectations.calls[0]: 'tool' is required"),
        ({"max_steps": 0}, "expectations.max_steps:"),
        ({"max_cost": "cheap"}, "expectations.max_cost:"),
        ({"calls": [{"tool": "x", "patterns": {"a": "("}}]}, "not a valid pattern"),
        ({"must": "work"}, "must"),
    ],
)
def test_malformed_expectations_are_refused_with_where(expectations, problem):
    assert problem in (expectations_problem(expectations) or "")


def test_well_formed_expectations_pass_the_schema():
    assert expectations_problem({"calls": [{"tool": "send_email"}], "max_cost": "0.5"}) is None
