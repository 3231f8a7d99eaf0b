"""Calling the model: fit the prompt, reserve its cost, call, record, and finish the task.

A call is reserved before it is made and settled exactly once after (by its reservation's id),
whatever happens: answered, refused, timed out, or answered after the task was taken away.
"""

from __future__ import annotations

from typing import NoReturn

from django.db import connection

from aiworkforce.llm import OFFLINE_LABEL, ModelMisconfigured, ModelTimedOut, ModelUnavailable
from aiworkforce.storable import storable_copy
from approvals.services import escalation_create
from employees.memory.services import request_embedding
from tasks import budget
from tasks.context import cited_memories, recall_tool_memories
from tasks.context_window import ContextTooSmall, Fitted, fit_to_window
from tasks.episodes import episode_part
from tasks.loop.state import Parked, Turn
from tasks.loop.waits import STOP_OPTIONS, ask_for_budget
from tasks.models import Step, StepKind, Task, TaskStatus
from tasks.settlement import Release, settle
from tasks.steps import STEP_INSERT, step_params, step_write


def call_model(
    turn: Turn, provider, messages: list[dict], tools: list[dict], tools_size: tuple[int, int]
):
    """One model call, recorded; the task is finished here when the answer has no tool calls."""
    task = turn.task
    tools_chars, tools_bytes = tools_size
    limits = budget.call_limits(task=task, model=provider.model)
    fitted = _fit_prompt(turn, provider, messages, limits, tools_chars)
    messages = fitted.messages
    carried = turn.held
    reservation = budget.budget_reserve(
        task=task,
        model=provider.model,
        prompt_tokens=budget.prompt_token_ceiling(messages, tools_bytes, limits.billable_prompt),
        output_tokens=limits.output_tokens,
        worker=turn.worker,
        carry=carried,
    )
    # Only now: if the reservation raised, the held step is still there for the error path.
    turn.held = None
    if carried is not None:
        if carried[0].id is None:
            turn.stop()  # the held step was not written: the task is no longer ours
        if turn.on_step:
            turn.on_step(carried[0])
    if isinstance(reservation, budget.NotOurs):
        if reservation.employee_status is None:
            turn.stop()  # cancelled or reclaimed: stop without writing anything
        turn.check_employee(reservation.employee_status)
    if isinstance(reservation, budget.BudgetRefusal):
        ask_for_budget(turn, reservation)
    _hand_back_connection()
    try:
        completion = provider.complete(
            messages=messages,
            tools=tools,
            max_tokens=reservation.max_tokens,
            temperature=float(task.employee.temperature),
        )
    except ModelUnavailable as exc:
        # Settled first, on its own: if the task was cancelled meanwhile, the guarded step
        # below stops the loop, and the settlement must not be rolled back with it. A call
        # that timed out may have been answered and billed all the same: charged as spent.
        error = {"error": str(exc), "model": provider.model}
        if isinstance(exc, ModelTimedOut):
            budget.budget_settle(task=task, reservation=reservation, actual=reservation.amount)
            error["charged"] = str(reservation.amount)
        else:
            budget.budget_release(task=task, reservation=reservation)
        turn.record(StepKind.ERROR, error)
        misconfigured = isinstance(exc, ModelMisconfigured)
        status = TaskStatus.MODEL_MISCONFIGURED if misconfigured else TaskStatus.MODEL_UNAVAILABLE
        turn.park(status, str(exc))
    except BaseException:
        budget.budget_release(task=task, reservation=reservation)
        raise
    _own_call_ids(turn, completion)
    llm_payload = {
        "message": completion.as_message(),
        "model": completion.model,
        "offline": completion.offline,
        "warnings": completion.warnings,
        "reserved": str(reservation.amount),
    }
    if fitted.changed:
        llm_payload["context"] = fitted.report()
    if turn.recall_unrecorded:
        if turn.memories:  # a resumed task without them recalls nothing either
            llm_payload["recalled"] = turn.memories
        if turn.recall_warning:
            llm_payload["warnings"] = [*llm_payload["warnings"], turn.recall_warning]
    numbers = {
        "tokens_in": completion.prompt_tokens,
        "tokens_out": completion.completion_tokens,
        "cost": completion.cost,
        "latency_ms": completion.latency_ms,
    }
    try:
        if completion.tool_calls:
            # The call happened and cost money: settle even if the step cannot be written.
            settle = _settle(task, reservation, completion)
            turn.record(StepKind.LLM_CALL, llm_payload, after=settle, **numbers)
            turn.recall_unrecorded = False
        else:
            _finish(turn, completion, llm_payload, numbers, reservation)
    except Parked:
        raise
    except BaseException:
        _settle_answered(task=task, reservation=reservation, completion=completion)
        raise
    return completion


def _fit_prompt(
    turn: Turn, provider, messages: list[dict], limits: budget.CallLimits, tools_chars: int
) -> Fitted:
    """The prompt made to fit the model's window (see tasks.context_window for the policy)."""
    if getattr(provider, "offline", False):
        return Fitted(messages=messages, window=limits.window)  # it reads every message
    try:
        return fit_to_window(
            messages,
            window=limits.window,
            output_tokens=limits.output_tokens,
            tools_chars=tools_chars,
        )
    except ContextTooSmall as exc:
        turn.record(StepKind.ERROR, {"error": str(exc), "model": provider.model})
        turn.park(TaskStatus.FAILED, str(exc))


def _settle(task: Task, reservation, completion):
    """The statement parts that settle an answered call, to write with its step."""
    return settle(
        task=task,
        reservation=reservation,
        cost=completion.cost,
        tokens_in=completion.prompt_tokens,
        tokens_out=completion.completion_tokens,
    )


def _settle_answered(*, task: Task, reservation, completion) -> None:
    """Settle an answered call whose step was not (or could not be) written: it cost money."""
    budget.budget_settle(
        task=task,
        reservation=reservation,
        actual=completion.cost,
        tokens_in=completion.prompt_tokens,
        tokens_out=completion.completion_tokens,
    )


def _own_call_ids(turn: Turn, completion) -> None:
    """Tool calls are matched to their results by id: never trust an empty or repeated one."""
    seen = {
        call["id"]
        for step in turn.steps
        if step.kind == StepKind.LLM_CALL
        for call in step.payload["message"].get("tool_calls", [])
    }
    calls = []
    for number, call in enumerate(completion.tool_calls, start=1):
        if not call.id or call.id in seen:
            call = type(call)(
                id=f"call_{turn.next_seq}_{number}", name=call.name, arguments=call.arguments
            )
        seen.add(call.id)
        calls.append(call)
    completion.tool_calls = calls


def _hand_back_connection() -> None:
    """With a connection pool, give the connection back while we wait for the model."""
    if connection.settings_dict["OPTIONS"].get("pool") and not connection.in_atomic_block:
        connection.close()


def _finish(turn: Turn, completion, llm_payload: dict, numbers: dict, reservation) -> None:
    """Record the final answer: model step, final step, settlement, release, audit, at once.

    Both steps record the same model response and nothing happens between them, so they
    commit together, and only if the task is still this worker's.
    """
    if completion.refusal:
        _escalate_refusal(turn, completion, llm_payload, numbers, reservation)
    # The model's words may hold what PostgreSQL cannot store (a NUL): kept, replaced by U+FFFD.
    result = storable_copy((completion.content or "").strip()) or "(no summary)"
    if completion.offline and not result.startswith(OFFLINE_LABEL):
        result = f"{OFFLINE_LABEL} {result}"
    # The task's settlement also releases it, if still ours; all that follows depends on it.
    still_ours = "EXISTS (SELECT 1 FROM settle_task)"
    settled = settle(
        task=turn.task,
        reservation=reservation,
        cost=completion.cost,
        tokens_in=completion.prompt_tokens,
        tokens_out=completion.completion_tokens,
        release=Release(worker=turn.worker, status=TaskStatus.DONE, result=result),
    )
    # The audit entry waits for the day row (the count makes it read settle_day first): the
    # audit chain lock is taken last, as in the reservation that carries a tool's step, so
    # the two cannot deadlock on the day row of an employee running tasks in parallel.
    audit_when = f"{still_ours} AND (SELECT count(*) FROM settle_day) >= 0"  # noqa: S608
    final_payload = {"result": result, "offline": completion.offline}
    citations = cited_memories(result, _offered_memories(turn))
    if citations:
        final_payload["citations"] = citations
    # An evaluation leaves no memory of itself.
    episode = (
        [] if turn.evaluating else episode_part(task=turn.task, result=result, when=still_ours)
    )
    llm_step = step_write(
        task=turn.task,
        run=turn.run,
        seq=turn.next_seq,
        kind=StepKind.LLM_CALL,
        payload=llm_payload,
        before=settled,
        after=[
            (
                "final_step",
                f"{STEP_INSERT} WHERE {still_ours}",
                step_params(
                    task=turn.task,
                    run=turn.run,
                    seq=turn.next_seq + 1,
                    kind=StepKind.FINAL,
                    payload=final_payload,
                ),
            ),
            (
                "run_finished",
                "UPDATE tasks_run SET status = 'finished', finished_at = now() "  # noqa: S608
                f"WHERE id = %s AND {still_ours}",
                [turn.run.pk],
            ),
            turn.audit(
                "task.completed",
                {"status": TaskStatus.DONE, "citations": citations, "episode": bool(episode)},
                when=audit_when,
            ),
            *episode,
        ],
        when=still_ours,
        **numbers,
    )
    if llm_step is None:
        # Cancelled or reclaimed meanwhile: the answer is not recorded, but its cost is.
        _settle_answered(task=turn.task, reservation=reservation, completion=completion)
        raise Parked
    if episode:
        request_embedding()  # the episode's vector, outside the loop
    turn.steps.append(llm_step)
    turn.next_seq += 2
    if turn.on_step:
        turn.on_step(llm_step)
        turn.on_step(
            Step(
                task=turn.task,
                run=turn.run,
                seq=llm_step.seq + 1,
                kind=StepKind.FINAL,
                payload=final_payload,
            )
        )
    turn.task.status = TaskStatus.DONE
    turn.outcome = TaskStatus.DONE


def _offered_memories(turn: Turn) -> set[int]:
    """Memory ids the model was shown: recalled at the start or returned by `recall`."""
    shown = [*turn.memories, *recall_tool_memories(turn.steps)]
    return {memory["id"] for memory in shown}


def _escalate_refusal(
    turn: Turn, completion, llm_payload: dict, numbers: dict, reservation
) -> NoReturn:
    """The model declined: its refusal is recorded as its answer and a person decides.

    The model step (with its settlement), the escalation and the parking commit together.
    """
    refusal = completion.refusal.strip()
    task = turn.task
    settle = _settle(task, reservation, completion)

    def ask() -> None:
        payload = {**llm_payload, "refusal": refusal}
        turn.record(StepKind.LLM_CALL, payload, after=settle, **numbers)
        escalation = escalation_create(
            task=task,
            summary=f"{task.employee.name} declined the task: {refusal}",
            evidence=[refusal],
            options=STOP_OPTIONS,
            recommendation="",
        )
        why = f"the model declined: {refusal}"
        turn.record(StepKind.ESCALATION, {"escalation_id": escalation.pk, "summary": why})

    try:
        turn.park_with(TaskStatus.WAITING_ESCALATION, f"The model declined: {refusal}", ask)
    except Parked:
        if turn.outcome != TaskStatus.WAITING_ESCALATION:
            # No longer ours, so nothing was recorded; the call still cost money.
            _settle_answered(task=task, reservation=reservation, completion=completion)
        raise
