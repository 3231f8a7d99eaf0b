"""Budgets that fit real conversations, and stay exact under races and dead workers."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.utils import timezone

from aiworkforce.audit import Actor
from aiworkforce.models import AuditEntry
from tasks import budget
from tasks.claims import task_claim
from tasks.loop import run_task
from tasks.models import DailySpend, Run, RunStatus, Step, StepKind, Task, TaskStatus
from tasks.services import task_cancel
from tests.factories import EmployeeFactory, assigned_task
from tests.fakes.openai_server import dynamic, error, reply

pytestmark = pytest.mark.django_db


def _email_thread(size: int) -> str:
    """An ordinary customer e-mail thread of about `size` characters."""
    message = (
        "From: Dana Whitfield <dana.whitfield@example.com>\n"
        "Subject: Re: Re: Order 48213 arrived damaged\n\n"
        "Hello again, thank you for getting back to me so quickly. As I said in my first "
        "message, the parcel arrived with the corner crushed and two of the six glasses were "
        "broken. I have attached the photos you asked for, and the courier's delivery note. "
        "Could you let me know whether you will send replacements or refund the two glasses? "
        "I would prefer replacements if they can arrive before the 14th.\n\n"
        "Kind regards,\nDana\n\n> On Monday, Support wrote:\n> Sorry to hear that...\n\n"
    )
    return (message * (size // len(message) + 1))[:size]


@contextlib.contextmanager
def _http_server(body: bytes, content_type: str):
    """A plain HTTP server on 127.0.0.1 that answers every GET with `body`; yields its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/export"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def document_server():
    """Answers every GET with a 60 kB JSON export."""
    orders = [
        {"order": 40000 + n, "customer": f"customer{n}@example.com", "status": "shipped"}
        for n in range(900)
    ]
    body = json.dumps({"orders": orders}).encode()[:60_000]
    with _http_server(body, "application/json") as url:
        yield url, len(body)


# --- budgets that fit real conversations --------------------------------------------------------


def test_a_25_kB_request_finishes_under_the_default_budgets(model_server, clerk):
    request = _email_thread(25_000)
    model_server.enqueue(reply("Replacements are on their way."))
    task = assigned_task(clerk, request)
    assert run_task(task.pk) == TaskStatus.DONE
    task.refresh_from_db()
    assert Decimal("0") < task.cost < clerk.max_cost_per_task and task.reserved_cost == 0
    # The whole request reached the model: it fits gpt-4o-mini's window as it is.
    sent = model_server.requests[-1]["body"]["messages"][1]["content"]
    assert request.strip()[-200:] in sent and "cut to fit" not in sent


def test_a_60_kB_tool_result_finishes_under_the_default_budgets(
    model_server, clerk, document_server
):
    url, size = document_server
    model_server.enqueue(
        reply(tool_calls=[("http_request", {"method": "GET", "url": url})]),
        reply("There are 900 shipped orders."),
    )
    task = assigned_task(clerk, "How many orders were shipped?")
    assert run_task(task.pk) == TaskStatus.DONE
    tool_step = Step.objects.get(task=task, kind=StepKind.TOOL_CALL, payload__status="ok")
    assert len(tool_step.payload["result"]["body"]) == size
    task.refresh_from_db()
    assert task.cost < clerk.max_cost_per_task and task.reserved_cost == 0


def test_a_prompt_over_the_window_is_made_to_fit_and_the_full_text_is_kept(
    model_server, clerk, document_server, client, superuser
):
    url, size = document_server
    clerk.context_window = 8192  # a small local model
    clerk.save()
    model_server.enqueue(
        reply(tool_calls=[("http_request", {"method": "GET", "url": url})]),
        reply("Summarised."),
    )
    task = assigned_task(clerk, "Summarise the export.")
    assert run_task(task.pk) == TaskStatus.DONE
    sent = model_server.requests[-1]["body"]
    assert len(json.dumps(sent["messages"])) < 8192 * 3
    tool_message = next(m for m in sent["messages"] if m["role"] == "tool")
    assert "cut to fit the model's context window" in tool_message["content"]
    # The step keeps every byte; the model step says what was cut, and so does the task page.
    tool_step = Step.objects.get(task=task, kind=StepKind.TOOL_CALL, payload__status="ok")
    assert len(tool_step.payload["result"]["body"]) == size
    last_call = Step.objects.filter(task=task, kind=StepKind.LLM_CALL).order_by("seq").last()
    context = last_call.payload["context"]
    assert context["window"] == 8192 and context["cut"][0]["what"].startswith("tool result")
    client.force_login(superuser)
    page = client.get(f"/tasks/{task.pk}/").content.decode()
    assert "to fit its 8,192-token window: tool result" in page


def test_the_oldest_turns_are_left_out_when_cutting_is_not_enough(model_server, clerk):
    clerk.context_window = 4096
    clerk.max_tokens_per_turn = 500
    clerk.save()
    url = model_server.base_url + "/x"
    calls = [("http_request", {"method": "GET", "url": f"{url}?{n}"}) for n in range(6)]
    model_server.enqueue(*[reply("x" * 2500, tool_calls=[call]) for call in calls], reply("ok"))
    task = assigned_task(clerk, "Check the six pages.")
    assert run_task(task.pk) == TaskStatus.DONE
    last = model_server.requests[-1]["body"]["messages"]
    assert any("earlier turns of this task" in (m.get("content") or "") for m in last)
    # Every tool result still follows the model answer that asked for it.
    for index, message in enumerate(last):
        if message["role"] == "tool":
            asked = [m for m in last[:index] if m["role"] == "assistant"][-1]
            assert message["tool_call_id"] in {c["id"] for c in asked["tool_calls"]}
    final_call = Step.objects.filter(task=task, kind=StepKind.LLM_CALL).order_by("seq").last()
    assert final_call.payload["context"]["dropped_turns"] >= 1


# --- exact money -------------------------------------------------------------------------------


def test_finished_tasks_keep_nothing_reserved(model_server, clerk, settings):
    # 4001 output tokens at $0.50 a million: $0.0020005, one decimal more than the columns hold.
    settings.MODEL_PRICES = {"gpt-4o-mini": (Decimal("0"), Decimal("0.5"))}
    clerk.max_tokens_per_turn = 4001
    clerk.save()
    for number in range(3):
        model_server.enqueue(reply("done", prompt_tokens=777, completion_tokens=33))
        assert run_task(assigned_task(clerk, f"help {number}").pk) == TaskStatus.DONE
    assert set(Task.objects.values_list("reserved_cost", flat=True)) == {Decimal("0")}
    assert DailySpend.objects.get(employee=clerk).reserved == 0


def test_a_reservation_is_an_upper_bound_of_the_call_whatever_the_script(model_server, clerk):
    # About one token per character: an estimate of three characters a token would be short.
    request = "注文番号48213の荷物が破損して届きました。交換をお願いします。" * 300
    model_server.enqueue(reply("承知しました。", prompt_tokens=len(request) + 2000))
    task = assigned_task(clerk, request)
    assert run_task(task.pk) == TaskStatus.DONE
    step = Step.objects.get(task=task, kind=StepKind.LLM_CALL)
    assert Decimal(step.payload["reserved"]) >= step.cost


@pytest.mark.django_db(transaction=True)
def test_the_first_calls_of_a_day_in_parallel_are_both_reserved():
    employee = EmployeeFactory(handle="parallel", max_cost_per_day=Decimal("100"))
    refusals = []
    for _round in range(8):
        DailySpend.objects.filter(employee=employee).delete()
        tasks = [assigned_task(employee, f"job {n}") for n in range(2)]
        for task in tasks:
            task_claim(task_id=task.pk, worker=f"w{task.pk}")
        barrier = threading.Barrier(2)
        outcomes = []

        def reserve(task, barrier=barrier, outcomes=outcomes):
            try:
                task = Task.objects.select_related("employee").get(pk=task.pk)
                barrier.wait()
                outcomes.append(
                    budget.budget_reserve(
                        task=task,
                        model="gpt-4o-mini",
                        prompt_tokens=1000,
                        output_tokens=1000,
                        worker=f"w{task.pk}",
                    )
                )
            finally:
                connections.close_all()

        threads = [threading.Thread(target=reserve, args=(task,)) for task in tasks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        refusals += [o for o in outcomes if not isinstance(o, budget.Reservation)]
    assert refusals == []


def _cancelled_during_the_call(task, then):
    """The model's answer, after a person cancels the task while the model is thinking (this
    runs in the fake server's thread, on its own connection)."""

    def cancel_then(body):
        from django.db import connection

        try:
            task_cancel(task=Task.objects.get(pk=task.pk), actor=Actor.system("t"), reason="stop")
        finally:
            connection.close()
        return then

    return dynamic(cancel_then)


@pytest.mark.django_db(transaction=True)
def test_a_model_outage_during_a_cancel_gives_the_reservation_back(model_server, clerk):
    task = assigned_task(clerk)
    model_server.enqueue(_cancelled_during_the_call(task, error(400, "bad request")))
    outcome = run_task(task.pk)
    task.refresh_from_db()
    assert task.status == TaskStatus.CANCELLED and outcome == TaskStatus.CANCELLED
    assert task.reserved_cost == 0
    assert DailySpend.objects.get(employee=clerk).reserved == 0


@pytest.mark.django_db(transaction=True)
def test_a_task_cancelled_while_its_loop_runs_finishes_its_run(model_server, clerk):
    task = assigned_task(clerk)
    answer = reply(tool_calls=[("create_task", {"title": "x", "instructions": "y"})])
    model_server.enqueue(_cancelled_during_the_call(task, answer))
    assert run_task(task.pk) == TaskStatus.CANCELLED
    assert Run.objects.get(task=task).status == RunStatus.FINISHED


def test_a_dead_workers_reservation_is_charged_on_the_day_it_was_made(model_server, clerk):
    task = assigned_task(clerk)
    claimed = task_claim(task_id=task.pk, worker="dead-worker").task
    reservation = budget.budget_reserve(
        task=claimed,
        model="gpt-4o-mini",
        prompt_tokens=2000,
        output_tokens=4000,
        worker="dead-worker",
    )
    assert isinstance(reservation, budget.Reservation)
    # It reserved just before midnight, called the model, and died before writing the step.
    yesterday = reservation.day - timedelta(days=1)
    DailySpend.objects.filter(employee=clerk).update(day=yesterday)
    Task.objects.filter(pk=task.pk).update(
        reserved_day=yesterday, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    model_server.enqueue(reply("done", prompt_tokens=10, completion_tokens=10))
    assert run_task(task.pk, worker="second-worker") == TaskStatus.DONE

    task.refresh_from_db()
    day = DailySpend.objects.get(employee=clerk, day=yesterday)
    assert day.spent == reservation.amount and day.reserved == 0
    assert task.cost > reservation.amount and task.reserved_cost == 0
    note = Step.objects.get(task=task, kind=StepKind.NOTE)
    assert note.payload["charged"] == str(reservation.amount)
    assert "counted as spent" in note.payload["text"]
    reclaimed = AuditEntry.objects.get(action="task.reclaimed", subject_id=str(task.pk))
    assert reclaimed.data["charged"] == str(reservation.amount)


def test_a_slow_workers_late_settlement_after_a_reclaim_takes_nothing_off_others(clerk):
    task = assigned_task(clerk)

    def reserve(worker: str) -> budget.Reservation:
        claimed = Task.objects.select_related("employee").get(pk=task.pk)
        reservation = budget.budget_reserve(
            task=claimed, model="gpt-4o-mini", prompt_tokens=2000, output_tokens=4000, worker=worker
        )
        assert isinstance(reservation, budget.Reservation)
        return reservation

    task_claim(task_id=task.pk, worker="slow-worker")
    slow = reserve("slow-worker")
    # Its call outlives the lease: another worker takes the task over and charges `slow`.
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    task_claim(task_id=task.pk, worker="fast-worker")
    fast = reserve("fast-worker")
    # Then the slow worker's answer comes back after all (costing less than its worst case).
    budget.budget_settle(
        task=task, reservation=slow, actual=slow.amount / 2, tokens_in=10, tokens_out=10
    )

    task.refresh_from_db()
    day = DailySpend.objects.get(employee=clerk)
    assert task.reserved_cost == fast.amount and day.reserved == fast.amount
    assert task.cost == slow.amount and day.spent == slow.amount  # charged once, not again
    # The fast worker's own settlement is then exact.
    budget.budget_settle(task=task, reservation=fast, actual=Decimal("0.0001"))
    task.refresh_from_db()
    day.refresh_from_db()
    assert task.reserved_cost == 0 and day.reserved == 0
    assert day.spent == slow.amount + Decimal("0.0001") == task.cost


def test_a_nul_from_a_tool_or_the_model_is_recorded_not_a_crash(model_server, clerk):
    received = "order 48213\x00\x00binary\ud800 tail".encode("utf-8", "surrogatepass")
    with _http_server(received, "text/plain; charset=utf-8") as url:
        model_server.enqueue(
            reply(tool_calls=[("http_request", {"method": "GET", "url": url})]),
            reply("Done \x00 with it."),
        )
        task = assigned_task(clerk, "Fetch the raw export.")
        assert run_task(task.pk) == TaskStatus.DONE
    task.refresh_from_db()
    assert task.result == "Done \ufffd with it."
    tool_step = Step.objects.get(task=task, kind=StepKind.TOOL_CALL, payload__status="ok")
    assert "order 48213" in json.dumps(tool_step.payload) and "\\u0000" not in json.dumps(
        tool_step.payload
    )
