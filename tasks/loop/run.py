"""Running one task: claim it, recall what the employee remembers, then turn after turn.

Every step is committed before the next begins. A task that must wait (an approval, an
escalation, a budget raise, a paused employee) is parked and the worker released; when it is
resumed the loop rebuilds its transcript from the recorded steps, so no model call is repeated
and no side effect is executed twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from django.conf import settings
from django.utils import timezone

from aiworkforce.llm import provider_for
from employees.memory.embeddings import EmbeddingError
from employees.memory.recall import memory_recall
from employees.memory.selectors import memories_still_visible
from employees.models import ToolPolicy
from tasks import services
from tasks.claims import Claim, task_claim, worker_id
from tasks.context import rebuild, system_prompt
from tasks.leases import lease_heartbeat
from tasks.loop.delegation import report_to_parent, wait_for_children
from tasks.loop.model import call_model
from tasks.loop.state import Parked, StepCallback, Turn
from tasks.loop.tool_calls import handle_call, tool_or_none
from tasks.loop.waits import escalate_loop, resume_system_escalation
from tasks.models import Run, RunStatus, Step, StepKind, Task, TaskStatus

logger = logging.getLogger(__name__)


def run_task(
    task_id: int,
    *,
    worker: str | None = None,
    on_step: StepCallback | None = None,
    prepare: Callable[[Task], None] | None = None,
) -> str | None:
    """Run one task until it finishes or parks. Returns its status, or None if not claimed.

    `prepare` adjusts the claimed task in memory before the first turn (an evaluation gives
    its employee the brief and SOP of the version under test).
    """
    worker = worker or worker_id()
    claim = task_claim(task_id=task_id, worker=worker)
    if claim is None:
        return None
    # Renewed while the run goes on (a long model call included), so a killed worker's task is
    # taken over within TASK_LEASE_SECONDS, never in the middle of a live one.
    with lease_heartbeat(task_id=task_id, worker=worker):
        return _run_claimed(claim, worker, on_step, prepare)


def _run_claimed(
    claim: Claim,
    worker: str,
    on_step: StepCallback | None,
    prepare: Callable[[Task], None] | None,
) -> str | None:
    task, run = claim.task, claim.run
    if prepare is not None:
        prepare(task)
    turn = Turn(
        task=task,
        run=run,
        worker=worker,
        # A suspended grant (its MCP tool changed since it was granted) is not offered.
        grants={
            grant.tool_name: grant
            for grant in claim.grants
            if grant.policy != ToolPolicy.NEVER and grant.suspended_at is None
        },
        on_step=on_step,
        # A first run has no steps yet: no need to ask.
        steps=list(Step.objects.filter(task=task).order_by("seq")) if run.number > 1 else [],
    )
    try:
        turn.check_employee()
        _turns(turn)
    except Parked:
        pass
    except Exception as exc:  # a bug or an outage: never leave the task "running" forever
        logger.exception("task %s failed", task.pk)
        try:
            turn.record(StepKind.ERROR, {"error": f"{type(exc).__name__}: {exc}"[:2000]})
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
        report_to_parent(task, TaskStatus.FAILED)
        return TaskStatus.FAILED
    if turn.outcome == TaskStatus.DONE:
        report_to_parent(task, turn.outcome)
        return turn.outcome  # the final statement closed the run
    finished = turn.outcome in (TaskStatus.FAILED, TaskStatus.CANCELLED)
    Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        status=RunStatus.FINISHED if finished else RunStatus.PARKED, finished_at=timezone.now()
    )
    report_to_parent(task, turn.outcome)
    return turn.outcome


def _turns(turn: Turn) -> None:
    """Give every pending call its result, then call the model; until it answers in words."""
    task = turn.task
    turn.memories = _memories_for(turn)
    # The offline engine applies lessons literally, so it is given the same memories.
    provider = provider_for(task, memories=turn.memories)
    granted = [tool for name in turn.grants if (tool := tool_or_none(name))]
    tool_names = [tool.name for tool in granted]
    tools = [tool.schema_for_model() for tool in granted]
    # The model calls some tools by another name (an MCP tool's "mcp:SERVER/TOOL" is not one
    # model APIs accept): calls are mapped back to the tool's own name.
    turn.model_names = {tool.model_name: tool.name for tool in granted if tool.model_name}
    tools_json = json.dumps(tools)
    tools_size = (len(tools_json), len(tools_json.encode()))
    system = system_prompt(task, tool_names, memories=turn.memories)
    while True:
        transcript = rebuild(task, turn.steps, system, turn.memories)
        turn.next_seq = transcript.next_seq
        turn.reset_seq = transcript.reset_seq
        if transcript.open_escalation is not None:
            resume_system_escalation(turn, transcript.open_escalation)
            continue
        if transcript.pending:
            for call in transcript.pending:
                handle_call(turn, transcript, call)
            if turn.awaiting:
                wait_for_children(turn)
            continue
        if transcript.llm_calls >= settings.MAX_STEPS_PER_TASK:
            escalate_loop(
                turn, f"It used its {settings.MAX_STEPS_PER_TASK} model calls without finishing."
            )
        completion = call_model(turn, provider, transcript.messages, tools, tools_size)
        if not completion.tool_calls:
            return


def _memories_for(turn: Turn) -> list[dict]:
    """What the employee remembers about this task: recalled once, when the task starts."""
    for step in turn.steps:
        if step.kind == StepKind.LLM_CALL:
            # A resumed task sees what it saw then, less what people have forgotten since.
            recalled = step.payload.get("recalled", [])
            if not recalled:
                return []
            kept = memories_still_visible(
                employee=turn.task.employee, ids=[m["id"] for m in recalled]
            )
            return [memory for memory in recalled if memory["id"] in kept]
    task = turn.task
    turn.recall_unrecorded = True
    try:
        recalled = memory_recall(
            employee=task.employee, query=f"{task.title}\n{task.input}", k=settings.MEMORY_RECALL_K
        )
    except EmbeddingError as exc:
        # The work goes on without memories; the first step says so on the task page.
        logger.warning("task %s: recall failed: %s", task.pk, exc)
        turn.recall_warning = f"Nothing was recalled: {exc}"[:500]
        return []
    return [memory.as_payload() for memory in recalled]
