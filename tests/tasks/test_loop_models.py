"""The loop with the endpoints people actually use: reasoning models, endpoints that refuse a
request, and models that decline the task."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from aiworkforce.llm import openai_provider
from aiworkforce.models import AuditEntry
from approvals.models import Escalation, EscalationStatus
from approvals.services import escalation_answer
from tasks.jobs import run_due
from tasks.loop import run_task
from tasks.models import DailySpend, Step, StepKind, Task, TaskStatus
from tasks.services import task_create
from tests.factories import MembershipFactory, UserFactory
from tests.fakes.openai_server import dynamic, error, reply

pytestmark = pytest.mark.django_db

REFUSAL = "I'm sorry, but I can't help with that request."


@pytest.fixture(autouse=True)
def _forget_learned_parameters(monkeypatch):
    monkeypatch.setattr(openai_provider, "_learned", {}, raising=False)


def _task(employee, text="Please summarise the customer's order history.") -> Task:
    task, _ = task_create(employee=employee, title="", input=text, urgent=True)
    return task


def _chat_bodies(server) -> list[dict]:
    return [r["body"] for r in server.requests if r["path"] == "/v1/chat/completions"]


def _page(client, task) -> str:
    client.force_login(MembershipFactory(team=task.employee.team).user)
    return client.get(f"/tasks/{task.pk}/").text


# --- item 8: reasoning models -----------------------------------------------------------------


@pytest.mark.parametrize("model", ["o3", "gpt-5-mini", "o9-preview"])  # o9: not in the table
def test_a_task_on_a_reasoning_model_endpoint_finishes(model_server, clerk, model):
    model_server.reasoning_models = {"o3", "gpt-5-mini", "o9"}
    clerk.model_name = model
    clerk.save()
    url = model_server.base_url + "/status"
    model_server.enqueue(
        reply(
            tool_calls=[("http_request", {"method": "GET", "url": url})],
            prompt_tokens=800,
            completion_tokens=600,
            reasoning_tokens=550,
        ),
        reply("Checked: all fine.", prompt_tokens=900, completion_tokens=300, reasoning_tokens=280),
    )
    task = _task(clerk)
    assert run_task(task.pk) == TaskStatus.DONE
    task.refresh_from_db()
    assert task.result == "Checked: all fine."
    # Reasoning tokens are output: counted and paid for.
    assert (task.tokens_in, task.tokens_out) == (1700, 900)
    bodies = _chat_bodies(model_server)
    final = bodies[-2:]  # what the two answered calls sent
    assert all("max_completion_tokens" in b for b in final)
    assert not any("max_tokens" in b or "temperature" in b for b in final)
    # A known model is right the first time; an unknown one is corrected once, then remembered.
    assert len(bodies) == (2 if model != "o9-preview" else 4)
    if model in ("o3", "gpt-5-mini"):
        price_in, price_out = {"o3": (2, 8), "gpt-5-mini": (Decimal("0.25"), 2)}[model]
        assert task.cost == (price_in * 1700 + price_out * 900) / Decimal(1_000_000)
    assert task.reserved_cost == 0


# --- item 9: a refused request is a configuration problem, sent once -----------------------------


def test_a_wrong_model_name_stops_at_once_as_a_configuration_problem(
    model_server, clerk, settings, client
):
    settings.LLM_MAX_RETRIES = 3
    message = "The model `gpt-4o-mnii` does not exist or you do not have access to it."
    model_server.enqueue(dynamic(lambda body: error(404, message, code="model_not_found")))
    clerk.model_name = "gpt-4o-mnii"
    clerk.save()
    task = _task(clerk)
    assert run_task(task.pk) == TaskStatus.MODEL_MISCONFIGURED  # a setting, not an outage
    assert model_server.calls == 1  # not retried like an outage
    task.refresh_from_db()
    assert task.status_reason.startswith(f"Configuration problem: {message}")
    assert "check the model name" in task.status_reason
    assert task.reserved_cost == 0 and DailySpend.objects.get(employee=clerk).reserved == 0
    [step] = Step.objects.filter(task=task, kind=StepKind.ERROR)
    assert step.payload["error"] == task.status_reason
    assert "Configuration problem: The model `gpt-4o-mnii` does not exist" in _page(client, task)


def test_a_bad_request_is_sent_once(model_server, clerk, settings):
    settings.LLM_MAX_RETRIES = 3
    model_server.enqueue(dynamic(lambda body: error(400, "Invalid 'messages[1].content'.")))
    task = _task(clerk)
    assert run_task(task.pk) == TaskStatus.MODEL_MISCONFIGURED
    assert model_server.calls == 1
    task.refresh_from_db()
    assert task.status_reason.startswith("Configuration problem: Invalid 'messages[1].content'.")
    assert "attempts" not in task.status_reason


WRONG_NAME = "The model `gpt-4o-mnii` does not exist or you do not have access to it."


@pytest.fixture
def misconfigured(model_server, clerk):
    """A task stopped by a wrong model name; the endpoint answers once the name is right."""
    model_server.enqueue(
        dynamic(
            lambda body: (
                error(404, WRONG_NAME, code="model_not_found")
                if body["model"] == "gpt-4o-mnii"
                else reply("Summarised the order history.")
            )
        )
    )
    clerk.model_name = "gpt-4o-mnii"
    clerk.save()
    task = _task(clerk)
    assert run_task(task.pk) == TaskStatus.MODEL_MISCONFIGURED
    task.refresh_from_db()
    return task


def test_the_task_page_calls_it_wrong_settings_and_says_what_to_check(
    client, misconfigured, model_server
):
    page = _page(client, misconfigured)
    assert 'data-status="model_misconfigured"' in page and "Model settings wrong" in page
    assert 'class="badge task-model_misconfigured"' in page
    assert '<p class="error">Configuration problem: The model `gpt-4o-mnii`' in page
    hint = page.split("data-config-problem", 1)[1].split("</div>", 1)[0]
    assert "not an outage" in hint
    assert "<code>gpt-4o-mnii</code> (this employee's setting)" in hint
    assert "OPENAI_API_KEY" in hint and "OPENAI_BASE_URL" in hint
    assert "sk-test-not-a-real-key" not in page
    assert f"<code>{model_server.base_url}</code> (OPENAI_BASE_URL)" in hint
    assert "Retry selected tasks stopped by the model" in hint
    assert "settings</a>" not in hint  # back-office links are for staff only


def test_the_endpoint_is_shown_without_credentials(client, misconfigured, settings):
    plain = settings.OPENAI_BASE_URL
    # With dashes: a CSRF token (letters and digits) never contains them by chance.
    password, key = "pw-Zq-hidden", "key-k1-hidden"
    settings.OPENAI_BASE_URL = (
        plain.replace("http://", f"http://user:{password}@") + f"?api-key={key}"
    )
    page = _page(client, misconfigured)
    assert f"<code>{plain}</code>" in page
    assert password not in page and key not in page


def test_an_outage_gets_no_settings_hint(model_server, clerk, client):
    model_server.enqueue(dynamic(lambda body: error(503, "overloaded")))
    task = _task(clerk)
    assert run_task(task.pk) == TaskStatus.MODEL_UNAVAILABLE
    page = _page(client, task)
    assert "Model unavailable" in page and "data-config-problem" not in page


def test_run_due_never_dispatches_a_misconfigured_task_again(model_server, misconfigured):
    Task.objects.filter(pk=misconfigured.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    run_due()
    assert run_task(misconfigured.pk) is None  # nothing queued it: no worker may claim it
    assert Task.objects.get(pk=misconfigured.pk).status == TaskStatus.MODEL_MISCONFIGURED
    assert model_server.calls == 1


def test_once_the_settings_are_fixed_a_person_retries_it_and_it_finishes(
    model_server, misconfigured, admin_client, superuser
):
    page = admin_client.get(f"/tasks/{misconfigured.pk}/").text
    assert "Open @clerk's settings</a>" in page  # staff get the back-office links
    assert "?status__exact=model_misconfigured" in page
    clerk = misconfigured.employee
    clerk.model_name = "gpt-4o-mini"
    clerk.save()
    changelist = reverse("admin:tasks_task_changelist")
    response = admin_client.post(
        changelist, {"action": "retry", "_selected_action": [misconfigured.pk]}, follow=True
    )
    assert "Queued 1 task again." in response.text
    misconfigured.refresh_from_db()
    assert misconfigured.status == TaskStatus.QUEUED and misconfigured.status_reason == ""
    assert AuditEntry.objects.filter(action="task.resumed", actor_user=superuser).exists()
    assert run_task(misconfigured.pk) == TaskStatus.DONE
    misconfigured.refresh_from_db()
    assert misconfigured.result == "Summarised the order history."
    assert model_server.calls == 2  # the refused call, then the one that answered
    # A finished task is not retried again.
    response = admin_client.post(
        changelist, {"action": "retry", "_selected_action": [misconfigured.pk]}, follow=True
    )
    assert "Queued 0 tasks again. 1 not retried" in response.text
    assert Task.objects.get(pk=misconfigured.pk).status == TaskStatus.DONE


# --- item 10: a refusal is escalated, never "done" --------------------------------------------


def test_a_refusal_is_recorded_as_the_answer_and_escalated(model_server, clerk, client):
    model_server.enqueue(reply(refusal=REFUSAL, prompt_tokens=1000, completion_tokens=10))
    task = _task(clerk)
    assert run_task(task.pk) == TaskStatus.WAITING_ESCALATION
    task.refresh_from_db()
    assert task.result == "" and task.status_reason == f"The model declined: {REFUSAL}"
    escalation = Escalation.objects.get(task=task)
    assert escalation.status == EscalationStatus.OPEN
    assert REFUSAL in escalation.summary and escalation.evidence == [REFUSAL]
    llm = Step.objects.get(task=task, kind=StepKind.LLM_CALL)
    assert llm.payload["refusal"] == REFUSAL
    assert llm.payload["message"] == {"role": "assistant", "content": REFUSAL}
    assert not Step.objects.filter(task=task, kind=StepKind.FINAL).exists()
    # The call is paid for, and nothing stays reserved.
    assert task.cost == Decimal("0.000156") and task.reserved_cost == 0
    assert DailySpend.objects.get(employee=clerk).reserved == 0
    page = _page(client, task)
    assert "declines: " + REFUSAL.replace("'", "&#x27;") in page
    assert "(no summary)" not in page


def test_after_a_refusal_a_person_can_let_it_continue_or_stop_it(model_server, clerk):
    model_server.enqueue(reply(refusal=REFUSAL), reply("Here is the summary."))
    task = _task(clerk)
    assert run_task(task.pk) == TaskStatus.WAITING_ESCALATION
    escalation_answer(
        escalation=Escalation.objects.get(task=task),
        user=UserFactory(),
        chosen_option="Let it continue",
        answer="It is our own customer's data; summarise it.",
    )
    assert run_task(task.pk) == TaskStatus.DONE
    task.refresh_from_db()
    assert task.result == "Here is the summary."
    # The model saw its own refusal, then the person's answer.
    messages = _chat_bodies(model_server)[-1]["messages"]
    assert messages[-2] == {"role": "assistant", "content": REFUSAL}
    assert "summarise it" in messages[-1]["content"]

    model_server.enqueue(reply(refusal=REFUSAL))
    second = _task(clerk)
    assert run_task(second.pk) == TaskStatus.WAITING_ESCALATION
    escalation_answer(
        escalation=Escalation.objects.get(task=second),
        user=UserFactory(),
        chosen_option="Stop the task",
    )
    calls = model_server.calls
    assert run_task(second.pk) == TaskStatus.CANCELLED
    assert model_server.calls == calls


@pytest.mark.django_db(transaction=True)
def test_a_refusal_for_a_task_cancelled_meanwhile_is_paid_for_and_not_escalated(
    model_server, clerk
):
    from django.db import connection

    from aiworkforce.audit import Actor
    from tasks.services import task_cancel

    task = _task(clerk)

    def cancel_then_refuse(body):
        # A person cancels while the model is thinking (this runs in the server's thread).
        try:
            task_cancel(
                task=Task.objects.get(pk=task.pk), actor=Actor.system("test"), reason="stop"
            )
        finally:
            connection.close()
        return reply(refusal=REFUSAL, prompt_tokens=1000, completion_tokens=10)

    model_server.enqueue(dynamic(cancel_then_refuse))
    run_task(task.pk)
    task.refresh_from_db()
    assert task.status == TaskStatus.CANCELLED
    assert not Escalation.objects.filter(task=task).exists()
    assert not Step.objects.filter(task=task, kind=StepKind.LLM_CALL).exists()
    assert task.cost == Decimal("0.000156") and task.reserved_cost == 0
    assert DailySpend.objects.get(employee=clerk).reserved == 0
