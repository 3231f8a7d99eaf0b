"""The agent loop: claim, then reserve → call the model → record → act on tool calls, repeatedly.

Modules, each importing only those above it in this list:
- `state`: the `Turn` (a run in progress) and how it records steps, stops and parks;
- `waits`: approvals, budget raises, escalations, the loop breaker;
- `delegation`: a `delegate` call's child task and the wait for it;
- `tool_calls`: checking, proposing, approving and executing the model's tool calls;
- `model`: calling the model, settling its cost, and finishing the task;
- `run`: `run_task`, the entry point (claim, recall, turn after turn).
"""

from tasks.loop.run import run_task

__all__ = ["run_task"]
