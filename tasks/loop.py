"""The agent loop: claim, then reserve → call the model → record → act on tool calls, repeatedly.

Every step is committed before the next begins. A task that must wait (an approval, an
escalation, a budget raise, a paused employee) is parked and the worker released; when it is
resumed the loop rebuilds its transcript from the recorded steps, so no model call is repeated
and no side effect is executed twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from aiworkforce.audit import Actor, audit_insert_sql, redact
from aiworkforce.llm import (
    OFFLINE_LABEL,
    ModelMisconfigured,
    ModelTimedOut,
    ModelUnavailable,
    provider_for,
)
from aiworkforce.storable import storable_copy
from employees.embeddings import EmbeddingError
from employees.memory import memories_still_visible, memory_recall, request_embedding
from employees.models import EmployeeStatus, ToolGrant, ToolPolicy
from tasks import budget, loop_delegation, services
from tasks.context import (
    Transcript,
    cited_memories,
    rebuild,
    recall_tool_memories,
    system_prompt,
)
from tasks.context_window import ContextTooSmall, Fitted, fit_to_window
from tasks.episodes import episode_part
from tasks.models import Run, RunStatus, Step, StepKind, Task, TaskStatus
from tasks.steps import (
    GUARDED,
    GUARDS,
    STEP_INSERT,
    Carry,
    Part,
    guard_part,
    parts_write,
    release_part,
    root_settle_parts,
    settle_parts,
    step_params,
    step_parts,
    step_write,
)
from tasks.tools import ToolContext, UnknownToolError, get_tool, validate_arguments

logger = logging.getLogger(__name__)

StepCallback = Callable[[Step], None]


EXPIRED_ERROR = "Nobody decided on this action before its deadline; it was not executed."


class Parked(Exception):
    """Raised inside the loop to stop it; the task has already been released."""


@dataclass
class LoopState:
    task: Task
    run: Run
    worker: str
    grants: dict[str, ToolGrant]
    on_step: StepCallback | None
    # The task's steps, read once when the run starts and appended to as they are recorded.
    steps: list[Step] = field(default_factory=list)
    outcome: str = TaskStatus.RUNNING
    next_seq: int = 1
    # The loop breaker counts only what happened since a person last said "continue".
    reset_seq: int = 0
    # Memories recalled for this task (payload dicts); `recall_unrecorded` until the first
    # model step carries them, so a resumed task sees exactly what it saw then.
    memories: list[dict] = field(default_factory=list)
    recall_unrecorded: bool = False
    recall_warning: str = ""
    # Delegated tasks (id → handle) this run found still working: the task waits for them.
    awaiting: dict[int, str] = field(default_factory=dict)
    # A tool's outcome not yet written: the next statement carries it (see _record's `hold`).
    held: Carry | None = None


def run_task(
    task_id: int, *, worker: str | None = None, on_step: StepCallback | None = None
) -> str | None:
    """Run one task until it finishes or parks. Returns its status, or None if not claimed."""
    worker = worker or services.worker_id()
    claimed = services.task_claim(task_id=task_id, worker=worker)
    if claimed is None:
        return None
    task, run = claimed
    grants = {
        grant.tool_name: grant
        for grant in task.claimed_grants  # read by the claim statement
        if grant.policy != ToolPolicy.NEVER
    }
    state = LoopState(
        task=task,
        run=run,
        worker=worker,
        grants=grants,
        on_step=on_step,
        # A first run has no steps yet: no need to ask.
        steps=list(Step.objects.filter(task=task).order_by("seq")) if run.number > 1 else [],
    )
    try:
        _check_employee(state)
        _loop(state)
    except Parked:
        pass
    except Exception as exc:  # a bug or an outage: never leave the task "running" forever
        logger.exception("task %s failed", task.pk)
        try:
            _record(state, StepKind.ERROR, {"error": f"{type(exc).__name__}: {exc}"[:2000]})
        except Parked:
            return None  # no longer ours: whoever holds it now carries on
        services.task_release(
            task=task,
            status=TaskStatus.FAILED,
            reason=f"Internal error: {type(exc).__name__}",
            worker=worker,
        )
        Run.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED, finished_at=timezone.now(), error=str(exc)[:2000]
        )
        loop_delegation.report_to_parent(task, TaskStatus.FAILED)
        return TaskStatus.FAILED
    if state.outcome == TaskStatus.DONE:
        loop_delegation.report_to_parent(task, state.outcome)
        return state.outcome  # the final statement closed the run
    finished = state.outcome in (TaskStatus.FAILED, TaskStatus.CANCELLED)
    Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        status=RunStatus.FINISHED if finished else RunStatus.PARKED, finished_at=timezone.now()
    )
    loop_delegation.report_to_parent(task, state.outcome)
    return state.outcome


def _loop(state: LoopState) -> None:
    task = state.task
    provider = provider_for(task)
    tool_names = [name for name in state.grants if _tool_or_none(name)]
    tools = [get_tool(name).schema_for_model() for name in tool_names]
    tools_json = json.dumps(tools)
    tools_chars, tools_bytes = len(tools_json), len(tools_json.encode())
    state.memories = _memories_for(state)
    if getattr(provider, "offline", False):
        provider.memories = state.memories  # the offline engine applies lessons literally
    system = system_prompt(task, tool_names, memories=state.memories)
    while True:
        transcript = rebuild(task, state.steps, system, state.memories)
        state.next_seq = transcript.next_seq
        state.reset_seq = transcript.reset_seq
        if transcript.open_escalation is not None:
            _resume_system_escalation(state, transcript.open_escalation)
            continue
        if transcript.pending:
            for call in transcript.pending:
                _handle_call(state, transcript, call)
            if state.awaiting:
                loop_delegation.wait_for_children(state)
            continue
        if transcript.llm_calls >= settings.MAX_STEPS_PER_TASK:
            _escalate_loop(
                state, f"It used its {settings.MAX_STEPS_PER_TASK} model calls without finishing."
            )
        completion = _call_model(
            state, provider, transcript.messages, tools, (tools_chars, tools_bytes)
        )
        if not completion.tool_calls:
            return


def _memories_for(state: LoopState) -> list[dict]:
    """What the employee remembers about this task: recalled once, when the task starts."""
    for step in state.steps:
        if step.kind == StepKind.LLM_CALL:
            # A resumed task sees what it saw then, less what people have forgotten since.
            recalled = step.payload.get("recalled", [])
            if not recalled:
                return []
            kept = memories_still_visible(
                employee=state.task.employee, ids=[m["id"] for m in recalled]
            )
            return [memory for memory in recalled if memory["id"] in kept]
    task = state.task
    state.recall_unrecorded = True
    try:
        recalled = memory_recall(
            employee=task.employee, query=f"{task.title}\n{task.input}", k=settings.MEMORY_RECALL_K
        )
    except EmbeddingError as exc:
        # The work goes on without memories; the first step says so on the task page.
        logger.warning("task %s: recall failed: %s", task.pk, exc)
        state.recall_warning = f"Nothing was recalled: {exc}"[:500]
        return []
    return [memory.as_payload() for memory in recalled]


def _tool_or_none(name: str):
    try:
        return get_tool(name)
    except UnknownToolError:
        return None


def _check_employee(state: LoopState, status: str | None = None) -> None:
    """Paused employees take no new step; offboarded ones stop for good."""
    employee = state.task.employee
    status = status or employee.status
    employee.status = status
    if status == EmployeeStatus.PAUSED:
        _park(state, TaskStatus.PAUSED, f"{employee.name} was paused.")
    if status in (EmployeeStatus.OFFBOARDED, EmployeeStatus.DRAFT):
        _park(state, TaskStatus.CANCELLED, f"{employee.name} is {status}.")


def _record(
    state: LoopState,
    kind: str,
    payload: dict,
    *,
    before: list[Part] = (),
    after: list[Part] = (),
    guard: str | None = "owned",
    hold: bool = False,
    **numbers,
) -> Step:
    """Write one step (with whatever must commit with it) in one statement.

    With a guard the step is written only if the task is still this worker's (and, for
    "acting", the employee may still act); otherwise the loop stops here (see _stop).

    With `hold`, the statement is kept and run with the next one: the next turn's budget
    reservation, or a flush before anything else is written or any tool runs (_flush). Only
    for a tool's outcome recorded outside a transaction (a read-only tool, or an HTTP call
    after its intent), so that nothing but computing the next prompt can come between and the
    step is still committed before the next one begins; this saves a round trip and a commit
    per turn.
    """
    _flush(state)
    parts = [guard_part(guard, task=state.task, worker=state.worker), *before] if guard else before
    step, parts = step_parts(
        task=state.task,
        run=state.run,
        seq=state.next_seq,
        kind=kind,
        payload=payload,
        before=parts,
        after=after,
        when=GUARDED if guard else "",
        **numbers,
    )
    if hold:
        state.held = (step, parts)
    elif not parts_write(step, parts):
        _stop(state)
    state.steps.append(step)
    state.next_seq += 1
    if state.on_step and not hold:
        state.on_step(step)
    return step


def _flush(state: LoopState) -> None:
    """Write the held step, if any, on its own."""
    if state.held is None:
        return
    step, parts = state.held
    state.held = None
    if step.id is not None:
        return  # the statement that carried it wrote it already
    if not parts_write(step, parts):
        _stop(state)
    if state.on_step:
        state.on_step(step)


def _stop(state: LoopState) -> None:
    """A guarded write found the task no longer ours, or its employee unable to act."""
    row = (
        Task.objects.filter(pk=state.task.pk)
        .values("status", "lease_owner", "employee__status")
        .first()
    )
    if row is None or row["status"] != TaskStatus.RUNNING or row["lease_owner"] != state.worker:
        # Cancelled (or finished by a person), or reclaimed by another worker: write nothing
        # more, and report what the task is now, so this run is not left looking parked.
        if row is not None:
            state.outcome = row["status"]
        raise Parked
    _check_employee(state, row["employee__status"])
    raise Parked


def _audit_part(state: LoopState, action: str, data: dict, when: str = GUARDED) -> Part:
    sql, params = audit_insert_sql(
        action=action,
        actor=Actor.for_employee(state.task.employee),
        subject=state.task,
        data=data,
        when=when,
    )
    return ("audit", sql, params)


def _park(state: LoopState, status: str, reason: str) -> None:
    _flush(state)
    if not services.task_release(
        task=state.task, status=status, reason=reason, worker=state.worker
    ):
        _stop(state)  # cancelled or reclaimed meanwhile: report what it is now
    state.outcome = status
    raise Parked


def _park_with(state: LoopState, status: str, reason: str, write) -> None:
    """Create what the task waits for (an approval, an escalation) and park, atomically.

    A decision made the moment the request exists then finds the task already parked, so
    its resume cannot be lost.
    """
    _flush(state)
    with transaction.atomic():
        write()
        released = services.task_release(
            task=state.task, status=status, reason=reason, worker=state.worker
        )
        if not released:
            transaction.set_rollback(True)
    if not released:
        _stop(state)  # cancelled or reclaimed meanwhile: nothing was written
    state.outcome = status
    raise Parked


def _call_model(
    state: LoopState, provider, messages: list[dict], tools: list[dict], tools_size: tuple[int, int]
):
    task = state.task
    tools_chars, tools_bytes = tools_size
    limits = budget.call_limits(task=task, model=provider.model)
    fitted = _fit_prompt(state, provider, messages, limits, tools_chars)
    messages = fitted.messages
    carried = state.held
    reservation = budget.budget_reserve(
        task=task,
        model=provider.model,
        prompt_tokens=budget.prompt_token_ceiling(messages, tools_bytes, limits.billable_prompt),
        output_tokens=limits.output_tokens,
        worker=state.worker,
        carry=carried,
    )
    # Only now: if the reservation raised, the held step is still there for the error path.
    state.held = None
    if carried is not None:
        if carried[0].id is None:
            _stop(state)  # the held step was not written: the task is no longer ours
        if state.on_step:
            state.on_step(carried[0])
    if isinstance(reservation, budget.NotOurs):
        if reservation.employee_status is None:
            _stop(state)  # cancelled or reclaimed: stop without writing anything
        _check_employee(state, reservation.employee_status)
    if isinstance(reservation, budget.BudgetRefusal):
        _ask_for_budget(state, reservation)
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
        _record(state, StepKind.ERROR, error)
        misconfigured = isinstance(exc, ModelMisconfigured)
        status = TaskStatus.MODEL_MISCONFIGURED if misconfigured else TaskStatus.MODEL_UNAVAILABLE
        _park(state, status, str(exc))
    except BaseException:
        budget.budget_release(task=task, reservation=reservation)
        raise
    _own_call_ids(state, completion)
    llm_payload = {
        "message": completion.as_message(),
        "model": completion.model,
        "offline": completion.offline,
        "warnings": completion.warnings,
        "reserved": str(reservation.amount),
    }
    if fitted.changed:
        llm_payload["context"] = fitted.report()
    if state.recall_unrecorded:
        if state.memories:  # a resumed task without them recalls nothing either
            llm_payload["recalled"] = state.memories
        if state.recall_warning:
            llm_payload["warnings"] = [*llm_payload["warnings"], state.recall_warning]
    numbers = {
        "tokens_in": completion.prompt_tokens,
        "tokens_out": completion.completion_tokens,
        "cost": completion.cost,
        "latency_ms": completion.latency_ms,
    }
    settle = settle_parts(
        task=task,
        reservation=reservation,
        cost=completion.cost,
        tokens_in=completion.prompt_tokens,
        tokens_out=completion.completion_tokens,
    )
    try:
        if completion.tool_calls:
            # The call happened and cost money: settle even if the step cannot be written.
            _record(state, StepKind.LLM_CALL, llm_payload, after=settle, **numbers)
            state.recall_unrecorded = False
        else:
            _finish(state, completion, llm_payload, numbers, reservation)
    except Parked:
        raise
    except BaseException:
        _settle_answered(task=task, reservation=reservation, completion=completion)
        raise
    return completion


def _fit_prompt(
    state: LoopState, provider, messages: list[dict], limits: budget.CallLimits, tools_chars: int
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
        _record(state, StepKind.ERROR, {"error": str(exc), "model": provider.model})
        _park(state, TaskStatus.FAILED, str(exc))


def _settle_answered(*, task: Task, reservation, completion) -> None:
    """Settle an answered call whose step was not (or could not be) written: it cost money."""
    budget.budget_settle(
        task=task,
        reservation=reservation,
        actual=completion.cost,
        tokens_in=completion.prompt_tokens,
        tokens_out=completion.completion_tokens,
    )


def _own_call_ids(state: LoopState, completion) -> None:
    """Tool calls are matched to their results by id: never trust an empty or repeated one."""
    seen = {
        call["id"]
        for step in state.steps
        if step.kind == StepKind.LLM_CALL
        for call in step.payload["message"].get("tool_calls", [])
    }
    calls = []
    for number, call in enumerate(completion.tool_calls, start=1):
        if not call.id or call.id in seen:
            call = type(call)(
                id=f"call_{state.next_seq}_{number}", name=call.name, arguments=call.arguments
            )
        seen.add(call.id)
        calls.append(call)
    completion.tool_calls = calls


def _hand_back_connection() -> None:
    """With a connection pool, give the connection back while we wait for the model."""
    if connection.settings_dict["OPTIONS"].get("pool") and not connection.in_atomic_block:
        connection.close()


def _finish(state: LoopState, completion, llm_payload: dict, numbers: dict, reservation) -> None:
    """Record the final answer: model step, final step, settlement, release, audit, at once.

    Both steps record the same model response and nothing happens between them, so they
    commit together, and only if the task is still this worker's.
    """
    if completion.refusal:
        _escalate_refusal(state, completion, llm_payload, numbers, reservation)
    # The model's words may hold what PostgreSQL cannot store (a NUL): kept, replaced by U+FFFD.
    result = storable_copy((completion.content or "").strip()) or "(no summary)"
    if completion.offline and not result.startswith(OFFLINE_LABEL):
        result = f"{OFFLINE_LABEL} {result}"
    still_ours = "EXISTS (SELECT 1 FROM released)"
    settle = (
        reservation.amount,
        completion.cost,
        completion.prompt_tokens,
        completion.completion_tokens,
    )
    released = release_part(
        task=state.task,
        worker=state.worker,
        status=TaskStatus.DONE,
        reason="",
        result=result,
        finished=True,
        settle=settle,
    )
    settle_day = (
        "settle_day",
        "UPDATE tasks_dailyspend SET reserved = GREATEST(reserved - %s, 0), spent = spent + %s "
        "WHERE employee_id = %s AND day = %s AND EXISTS (SELECT 1 FROM released) RETURNING 1",
        [reservation.amount, completion.cost, state.task.employee_id, reservation.day],
    )
    # The audit entry waits for the day row (the count makes it read settle_day first): the
    # audit chain lock is taken last, as in the reservation that carries a tool's step, so
    # the two cannot deadlock on the day row of an employee running tasks in parallel.
    audit_when = "EXISTS (SELECT 1 FROM released) AND (SELECT count(*) FROM settle_day) >= 0"
    final_payload = {"result": result, "offline": completion.offline}
    citations = cited_memories(result, _offered_memories(state))
    if citations:
        final_payload["citations"] = citations
    episode = episode_part(task=state.task, result=result, when=still_ours)
    llm_step = step_write(
        task=state.task,
        run=state.run,
        seq=state.next_seq,
        kind=StepKind.LLM_CALL,
        payload=llm_payload,
        before=[
            released,
            settle_day,
            *root_settle_parts(
                task=state.task,
                reserved=reservation.amount,
                cost=completion.cost,
                when=still_ours,
            ),
        ],
        after=[
            (
                "final_step",
                STEP_INSERT + " WHERE EXISTS (SELECT 1 FROM released)",  # noqa: S608
                step_params(
                    task=state.task,
                    run=state.run,
                    seq=state.next_seq + 1,
                    kind=StepKind.FINAL,
                    payload=final_payload,
                ),
            ),
            (
                "run_finished",
                "UPDATE tasks_run SET status = 'finished', finished_at = now() "
                "WHERE id = %s AND EXISTS (SELECT 1 FROM released)",
                [state.run.pk],
            ),
            _audit_part(
                state,
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
        _settle_answered(task=state.task, reservation=reservation, completion=completion)
        raise Parked
    request_embedding()  # the episode's vector, outside the loop
    state.steps.append(llm_step)
    state.next_seq += 2
    if state.on_step:
        state.on_step(llm_step)
        state.on_step(
            Step(
                task=state.task,
                run=state.run,
                seq=llm_step.seq + 1,
                kind=StepKind.FINAL,
                payload=final_payload,
            )
        )
    state.task.status = TaskStatus.DONE
    state.outcome = TaskStatus.DONE


def _offered_memories(state: LoopState) -> set[int]:
    """Memory ids the model was shown: recalled at the start or returned by `recall`."""
    shown = [*state.memories, *recall_tool_memories(state.steps)]
    return {memory["id"] for memory in shown}


# --- tool calls -------------------------------------------------------------------------------


def _handle_call(state: LoopState, transcript: Transcript, call: dict) -> None:
    call_id = call["id"]
    name = call["function"]["name"]
    raw_arguments = call["function"].get("arguments") or "{}"
    if call_id in transcript.waits:
        _resume_waiting_call(state, transcript.waits[call_id], call_id, name)
        return
    if call_id in transcript.intents:
        _result(
            state,
            call_id,
            name,
            transcript.intents[call_id].payload.get("arguments"),
            "unknown",
            {
                "error": "The outcome of this call is unknown (the worker stopped while it ran); "
                "it was not repeated."
            },
        )
        return
    grant = state.grants.get(name)
    tool = _tool_or_none(name)
    if grant is None or tool is None:
        _result(
            state,
            call_id,
            name,
            raw_arguments,
            "refused",
            {"error": f"Tool '{name}' is not available to you. Use only your granted tools."},
            audit=("tool.refused", {"tool": name, "reason": "not granted"}),
        )
        _maybe_break_loop(state)
        return
    try:
        arguments = json.loads(raw_arguments)
    except ValueError as exc:
        _result(
            state,
            call_id,
            name,
            raw_arguments,
            "error",
            {"error": f"The arguments are not valid JSON ({exc}). Send a JSON object."},
        )
        _maybe_break_loop(state)
        return
    problem = validate_arguments(tool, arguments)
    if problem is None and tool.check_scope:
        refusal = tool.check_scope(arguments, grant.scope)
        if refusal:
            _result(
                state,
                call_id,
                name,
                arguments,
                "refused",
                {"error": f"Not allowed: {refusal}"},
                audit=("tool.refused", {"tool": name, "reason": refusal}),
            )
            _maybe_break_loop(state)
            return
    if problem:
        _result(
            state, call_id, name, arguments, "error", {"error": f"Invalid arguments: {problem}"}
        )
        _maybe_break_loop(state)
        return
    _check_repeats(state, transcript, name, arguments)
    if tool.side_effects and state.task.employee.status == EmployeeStatus.SHADOW:
        _propose(state, call_id, name, arguments)
        return
    if tool.delegates:
        loop_delegation.delegate(state, call_id, tool, grant, arguments, transcript)
        return
    if tool.parks_task:
        _escalate_call(state, call_id, arguments)
    if grant.policy == ToolPolicy.NEEDS_APPROVAL:
        _ask_for_approval(state, call_id, tool, arguments, transcript)
    _execute(state, call_id, tool, grant, arguments)


def _result(
    state: LoopState,
    call_id: str,
    name: str,
    arguments,
    status: str,
    result: dict,
    *,
    audit: tuple[str, dict] | None = None,
    guard: str = "owned",
    hold: bool = False,
) -> Step:
    """Record a tool call's outcome (and its audit entry, in the same statement)."""
    after = [_audit_part(state, audit[0], audit[1])] if audit else []
    return _record(
        state,
        StepKind.TOOL_CALL,
        _tool_payload(call_id, name, arguments, status, result),
        after=after,
        guard=guard,
        hold=hold,
    )


def _propose(state: LoopState, call_id: str, name: str, arguments: dict) -> None:
    """Shadow mode: record what would have been done, do nothing."""
    _result(
        state,
        call_id,
        name,
        arguments,
        "proposed",
        {
            "summary": "proposed only: the employee is in shadow mode, nothing was executed",
            "proposed_arguments": arguments,
        },
        audit=("tool.proposed", {"tool": name, "arguments": arguments}),
    )


def _execute(state: LoopState, call_id: str, tool, grant: ToolGrant, arguments: dict) -> None:
    """Run a granted, valid, approved call once; only while the task and employee may act."""
    _flush(state)  # no tool runs before the steps before it are committed
    if tool.delegates:
        loop_delegation.start(state, call_id, tool, grant, arguments)
        return
    context = ToolContext(
        task=state.task, employee=state.task.employee, call_id=call_id, scope=grant.scope
    )

    def record(result: dict, hold: bool = False) -> None:
        status = "error" if "error" in result else "ok"
        _result(
            state,
            call_id,
            tool.name,
            arguments,
            status,
            result,
            audit=("tool.executed", {"tool": tool.name, "arguments": arguments, "status": status}),
            hold=hold,
        )

    if not tool.transactional:
        # Not undoable: record the intent first (only while the employee may act), so a crash
        # mid-call is never retried blindly.
        _result(state, call_id, tool.name, arguments, "started", {}, guard="acting")
        # The outcome may ride with the next statement: a crash before that leaves the
        # call "unknown", as a crash during it would, and it is never repeated.
        record(_run_tool(tool, context, arguments), hold=True)
    elif tool.writes_database:
        # The tool's own writes (outbox row, follow-up task) commit with its step, or not at
        # all; the task row stays locked meanwhile, so a cancel or pause waits for us.
        try:
            with transaction.atomic():
                if not _lock_while_acting(state):
                    transaction.set_rollback(True)
                    raise Parked
                record(tool.execute(context, arguments))
        except Parked:
            _stop(state)
        except Exception as exc:
            logger.warning("tool %s failed: %s", tool.name, exc)
            record({"error": f"The tool failed: {type(exc).__name__}: {exc}"[:1000]})
    else:
        # Read-only: its result may ride with the next statement (running it again after a
        # crash before that is harmless).
        record(_run_tool(tool, context, arguments), hold=True)
    if state.steps[-1].payload["status"] == "error":
        _maybe_break_loop(state)


def _lock_while_acting(state: LoopState) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(GUARDS["acting"], [state.task.pk, state.worker])
        return cursor.fetchone() is not None


def _tool_payload(call_id: str, name: str, arguments, status: str, result: dict) -> dict:
    return {
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
        "result": result,
    }


def _run_tool(tool, context: ToolContext, arguments: dict) -> dict:
    try:
        return tool.execute(context, arguments)
    except Exception as exc:
        logger.warning("tool %s failed: %s", tool.name, exc)
        return {"error": f"The tool failed: {type(exc).__name__}: {exc}"[:1000]}


# --- waiting for people -------------------------------------------------------------------------


def _ask_for_approval(
    state: LoopState, call_id: str, tool, arguments: dict, transcript: Transcript
) -> None:
    from approvals.services import approval_request_create

    reason = next(
        (
            m["content"]
            for m in reversed(transcript.messages)
            if m["role"] == "assistant" and m.get("content")
        ),
        "",
    )

    def ask() -> None:
        approval = approval_request_create(
            task=state.task,
            tool_name=tool.name,
            arguments=arguments,
            risk=tool.default_risk,
            reason=reason,
            call_id=call_id,
        )
        _record(
            state,
            StepKind.APPROVAL_WAIT,
            {
                "call_id": call_id,
                "name": tool.name,
                "arguments": arguments,
                "approval_id": approval.pk,
            },
        )

    _park_with(state, TaskStatus.WAITING_APPROVAL, f"Waiting for approval of {tool.name}.", ask)


def _ask_for_budget(state: LoopState, refusal: budget.BudgetRefusal) -> None:
    from approvals.services import budget_raise_request_create

    def ask() -> None:
        approval = budget_raise_request_create(task=state.task, refusal=refusal)
        _record(
            state,
            StepKind.APPROVAL_WAIT,
            {"budget": refusal.scope, "approval_id": approval.pk, "message": refusal.message},
        )

    _park_with(state, TaskStatus.BUDGET_EXHAUSTED, refusal.message, ask)


def _escalate_call(state: LoopState, call_id: str, arguments: dict) -> None:
    from approvals.services import escalation_create

    def ask() -> None:
        escalation = escalation_create(
            task=state.task,
            summary=arguments["summary"],
            evidence=arguments.get("evidence", []),
            options=arguments["options"],
            recommendation=arguments.get("recommendation", ""),
        )
        _record(
            state,
            StepKind.ESCALATION,
            {"call_id": call_id, "escalation_id": escalation.pk, "summary": arguments["summary"]},
        )

    _park_with(state, TaskStatus.WAITING_ESCALATION, f"Escalated: {arguments['summary']}", ask)


def _escalate_loop(state: LoopState, why: str) -> None:
    """The loop breaker: stop before burning more money, and ask a person."""
    from approvals.services import escalation_create

    def ask() -> None:
        escalation = escalation_create(
            task=state.task,
            summary=f"{state.task.employee.name} stopped: {why}",
            evidence=[why],
            options=["Let it continue", "Stop the task"],
            recommendation="Stop the task",
        )
        _record(state, StepKind.ESCALATION, {"escalation_id": escalation.pk, "summary": why})

    _park_with(state, TaskStatus.WAITING_ESCALATION, f"Loop breaker: {why}", ask)


def _escalate_refusal(
    state: LoopState, completion, llm_payload: dict, numbers: dict, reservation
) -> NoReturn:
    """The model declined: its refusal is recorded as its answer and a person decides.

    The model step (with its settlement), the escalation and the parking commit together.
    """
    from approvals.services import escalation_create

    refusal = completion.refusal.strip()
    task = state.task
    settle = settle_parts(
        task=task,
        reservation=reservation,
        cost=completion.cost,
        tokens_in=completion.prompt_tokens,
        tokens_out=completion.completion_tokens,
    )

    def ask() -> None:
        payload = {**llm_payload, "refusal": refusal}
        _record(state, StepKind.LLM_CALL, payload, after=settle, **numbers)
        escalation = escalation_create(
            task=task,
            summary=f"{task.employee.name} declined the task: {refusal}",
            evidence=[refusal],
            options=["Let it continue", "Stop the task"],
            recommendation="",
        )
        why = f"the model declined: {refusal}"
        _record(state, StepKind.ESCALATION, {"escalation_id": escalation.pk, "summary": why})

    try:
        _park_with(state, TaskStatus.WAITING_ESCALATION, f"The model declined: {refusal}", ask)
    except Parked:
        if state.outcome != TaskStatus.WAITING_ESCALATION:
            # No longer ours, so nothing was recorded; the call still cost money.
            _settle_answered(task=task, reservation=reservation, completion=completion)
        raise


def _escalate_expired(state: LoopState, call_id: str, name: str, arguments: dict) -> None:
    """Nobody decided in time: the call is answered "not executed" and a person is told.

    The result and the escalation commit together, so the call is no longer pending when
    the task resumes after the answer, and an expiry is never escalated twice.
    """
    from approvals.services import escalation_create

    summary = f"The approval of {name} expired without a decision."
    proposal = f"{state.task.employee.name} proposed {name}: {json.dumps(redact(arguments))}"

    def ask() -> None:
        _result(state, call_id, name, arguments, "rejected", {"error": EXPIRED_ERROR})
        escalation = escalation_create(
            task=state.task,
            summary=summary,
            evidence=[proposal[:1000]],
            options=["Let it continue", "Stop the task"],
            recommendation="Let it continue",
        )
        _record(state, StepKind.ESCALATION, {"escalation_id": escalation.pk, "summary": summary})

    _park_with(state, TaskStatus.WAITING_ESCALATION, summary, ask)


def _check_repeats(state: LoopState, transcript: Transcript, name: str, arguments: dict) -> None:
    same = sum(
        1
        for step in transcript.finished_calls
        if step.payload.get("name") == name and step.payload.get("arguments") == arguments
    )
    if same + 1 >= settings.LOOP_BREAKER_REPEATS:
        _escalate_loop(state, f"it called {name} with the same arguments {same + 1} times.")


def _maybe_break_loop(state: LoopState) -> None:
    limit = settings.LOOP_BREAKER_ERRORS
    recent = [
        step.payload.get("status")
        for step in state.steps
        if step.kind == StepKind.TOOL_CALL
        and step.seq > state.reset_seq
        and step.payload.get("status") != "started"
    ][-limit:]
    if len(recent) == limit and all(status in ("error", "refused") for status in recent):
        _escalate_loop(state, f"its last {limit} tool calls failed or were refused.")


def _resume_waiting_call(state: LoopState, wait: Step, call_id: str, name: str) -> None:
    from approvals.models import ApprovalRequest, ApprovalStatus, Escalation, EscalationStatus

    if wait.payload.get("delegated_task"):
        loop_delegation.resume(state, wait, call_id, name)
        return
    if wait.kind == StepKind.ESCALATION:
        escalation = Escalation.objects.get(pk=wait.payload["escalation_id"])
        if escalation.status == EscalationStatus.OPEN:
            _park(state, TaskStatus.WAITING_ESCALATION, "Waiting for an answer to its escalation.")
        _result(
            state,
            call_id,
            name,
            {},
            "ok",
            {
                "answer": escalation.answer,
                "chosen_option": escalation.chosen_option,
                "answered_by": escalation.answered_by.get_username()
                if escalation.answered_by
                else "",
                "summary": f"a person answered: {escalation.chosen_option or escalation.answer}"[
                    :300
                ],
            },
        )
        return
    approval = ApprovalRequest.objects.get(pk=wait.payload["approval_id"])
    if approval.status == ApprovalStatus.PENDING:
        _park(state, TaskStatus.WAITING_APPROVAL, f"Waiting for approval of {name}.")
    if approval.status == ApprovalStatus.EXPIRED:
        _escalate_expired(state, call_id, name, approval.arguments)
    if approval.status != ApprovalStatus.APPROVED:
        verb = "rejected" if approval.status == ApprovalStatus.REJECTED else "cancelled"
        _result(
            state,
            call_id,
            name,
            approval.arguments,
            "rejected",
            {
                "error": f"A person {verb} this action."
                + (f" Reason: {approval.decision_comment}" if approval.decision_comment else ""),
            },
        )
        return
    arguments = (
        approval.approved_arguments
        if approval.approved_arguments is not None
        else approval.arguments
    )
    tool = get_tool(name)
    grant = state.grants.get(name)
    # The approved (possibly edited) arguments are checked again against the schema and grant.
    problem = validate_arguments(tool, arguments) if grant else "the grant was revoked"
    refusal = (
        tool.check_scope(arguments, grant.scope)
        if grant and not problem and tool.check_scope
        else None
    )
    if problem or refusal:
        _result(
            state,
            call_id,
            name,
            arguments,
            "refused",
            {"error": f"Not executed: {problem or refusal}"},
        )
        return
    if tool.side_effects and state.task.employee.status == EmployeeStatus.SHADOW:
        _propose(state, call_id, name, arguments)  # put in shadow mode since it was approved
        return
    _execute(state, call_id, tool, grant, arguments)


def _resume_system_escalation(state: LoopState, step: Step) -> None:
    from approvals.models import Escalation, EscalationStatus

    escalation = Escalation.objects.get(pk=step.payload["escalation_id"])
    if escalation.status == EscalationStatus.OPEN:
        _park(state, TaskStatus.WAITING_ESCALATION, "Waiting for an answer to its escalation.")
    answer = escalation.answer or escalation.chosen_option
    _record(
        state,
        StepKind.NOTE,
        {
            "escalation_id": escalation.pk,
            "message": {"role": "user", "content": f"A person answered your escalation: {answer}"},
        },
    )
    if (
        escalation.chosen_option == "Stop the task"
        or escalation.status == EscalationStatus.TAKEN_OVER
    ):
        _park(
            state,
            TaskStatus.CANCELLED,
            f"Stopped by {escalation.answered_by or 'a person'}: {answer}",
        )
