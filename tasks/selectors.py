"""Reads of tasks: those a person may see (their teams' employees'), and linked request trees."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Value
from django.db.models.functions import StrIndex, Upper
from django.db.models.lookups import GreaterThan
from django.http import Http404
from django.utils import timezone
from django.utils.timesince import timeuntil

from employees.models import Duty, TeamMembership
from employees.profile.words import hours_now, when_text
from mailboxes.models import InboundMail
from tasks.models import (
    FINISHED_STATUSES,
    Step,
    StepKind,
    Task,
    TaskSource,
    TaskStatus,
    WebhookEndpoint,
)

# How a page names an employee of a team the person is not in.
OTHER_TEAMS_EMPLOYEE = "another team's employee"


def tasks_visible_to(user) -> QuerySet[Task]:
    qs = Task.objects.select_related("employee", "employee__team", "requested_by_employee")
    if user.is_superuser:
        return qs
    return qs.filter(employee__team__in=TeamMembership.objects.filter(user=user).values("team"))


# A tool call that went wrong: it failed, was refused (not granted, invalid), or its outcome is
# unknown (the worker stopped while it ran). A person's rejection is a decision, not a failure.
FAILED_TOOL_STATUSES = ("error", "refused", "unknown")

# Statuses in which nothing happens until something outside the task does (a person decides,
# working hours begin, the delegated work finishes, a budget is raised): pages stop polling.
PARKED_STATUSES = frozenset(
    {
        TaskStatus.WAITING_APPROVAL,
        TaskStatus.WAITING_ESCALATION,
        TaskStatus.WAITING_CHILDREN,
        TaskStatus.WAITING_HOURS,
        TaskStatus.PAUSED,
        TaskStatus.BUDGET_EXHAUSTED,
        TaskStatus.MODEL_MISCONFIGURED,
        *FINISHED_STATUSES,
    }
)


def failed_steps_exist() -> Exists:
    """Per task row: has it a failed tool call? (an index lookup by task, cheap for a page)."""
    return Exists(
        Step.objects.filter(
            task=OuterRef("pk"),
            kind=StepKind.TOOL_CALL,
            payload__status__in=FAILED_TOOL_STATUSES,
        )
    )


def with_failed_steps(tasks: QuerySet[Task]) -> QuerySet[Task]:
    """The tasks annotated with `has_failed_steps` (what makes a done task "Done with errors")."""
    return tasks.annotate(has_failed_steps=failed_steps_exist())


def is_failed_step(step: Step) -> bool:
    return step.kind == StepKind.ERROR or (
        step.kind == StepKind.TOOL_CALL and step.payload.get("status") in FAILED_TOOL_STATUSES
    )


def task_is_live(task: Task, now=None) -> bool:
    """Whether the task may change by itself soon (its page keeps polling)."""
    if task.status in PARKED_STATUSES:
        return False
    if task.status == TaskStatus.QUEUED and task.due_at is not None:
        return task.due_at <= (now or timezone.now())
    return True


def working_hours_resume(task: Task, now: datetime | None = None) -> str:
    """When a task waiting for working hours starts: the next window in the employee's zone."""
    now = now or timezone.now()
    employee = task.employee
    hours = hours_now(
        always_on=employee.always_on,
        tz=employee.tzinfo,
        tz_name=employee.timezone,
        windows=list(employee.working_windows.all()),
        now=now,
    )
    if hours.on_duty:
        return "Working hours have begun: the task starts within a minute."
    if hours.change_at is None:
        return (
            f"{employee.name} has no working hours set, so only urgent tasks run: set working "
            "hours on the profile, or assign the task again as urgent."
        )
    return (
        f"Work resumes {when_text(hours.change_at, employee.timezone)} "
        f"(in {timeuntil(hours.change_at, now)})."
    )


def task_for_user(user, pk: int) -> Task:
    """The task if the person may see it; 404 otherwise (never 403, which would confirm it exists)."""
    task = tasks_visible_to(user).filter(pk=pk).first()
    if task is None:
        raise Http404("No such task.")
    return task


def task_memories(task: Task, steps: list) -> dict:
    """What the task recalled and which of it the final answer cited (for the task page).

    The texts are the ones the employee saw then; `forgotten` marks memories deleted since
    (or no longer the employee's to recall: of a team it has left).
    """
    from employees.memory.selectors import memories_still_visible
    from tasks.context import recall_tool_memories
    from tasks.models import StepKind

    shown: dict[int, dict] = {}
    recalled: list[dict] = []
    citations: list[int] = []
    for step in steps:
        payload = step.payload
        if step.kind == StepKind.LLM_CALL and "recalled" in payload:
            recalled = payload["recalled"]
            shown.update((m["id"], m) for m in recalled)
        elif step.kind == StepKind.FINAL:
            citations = payload.get("citations", [])
    shown.update((m["id"], m) for m in recall_tool_memories(steps))
    ids = set(shown) | set(citations)
    existing = memories_still_visible(employee=task.employee, ids=ids)
    cited = [
        {**shown.get(pk, {"id": pk, "kind": "", "text": ""}), "forgotten": pk not in existing}
        for pk in citations
    ]
    return {
        "recalled": [
            {**m, "cited": m["id"] in citations, "forgotten": m["id"] not in existing}
            for m in recalled
        ],
        "citations": cited,
    }


def task_requester_for(user, task: Task) -> str:
    """Who delegated the task, as the person may see it: a handle only within their teams."""
    requester = task.requested_by_employee
    if requester is None:
        return ""
    if (
        user.is_superuser
        or TeamMembership.objects.filter(user=user, team=requester.team_id).exists()
    ):
        return f"@{requester.handle}"
    return OTHER_TEAMS_EMPLOYEE


# --- linked requests: the tree a delegated task is part of --------------------------------------


def ancestors(task: Task) -> list[Task]:
    """The tasks above this one, nearest first (the depth limit keeps the chain short)."""
    chain, current = [], task
    while current.parent_id is not None:
        current = Task.objects.select_related("employee").get(pk=current.parent_id)
        chain.append(current)
    return chain


@dataclass
class TreeNode:
    task: Task
    level: int
    visible: bool
    relation: str  # "this", "parent", "sibling", "child", or "" for further relatives
    # What the page may show of it: a task of a team the person is not in keeps its status,
    # but not its title, nor who works on it.
    who: str = ""
    title: str = ""


def task_tree(task: Task, *, visible_ids: set[int] | None = None) -> list[TreeNode]:
    """The whole linked request this task is part of, depth first from its root."""
    root_id = task.root_id or task.pk
    tasks = list(
        Task.objects.filter(Q(pk=root_id) | Q(root=root_id))
        .select_related("employee")
        .order_by("pk")
    )
    if len(tasks) <= 1:
        return []
    by_parent: dict[int | None, list[Task]] = {}
    for item in tasks:
        by_parent.setdefault(item.parent_id if item.pk != root_id else None, []).append(item)
    nodes: list[TreeNode] = []

    def relation(item: Task) -> str:
        if item.pk == task.pk:
            return "this"
        if item.pk == task.parent_id:
            return "parent"
        if item.parent_id == task.pk:
            return "child"
        if task.parent_id is not None and item.parent_id == task.parent_id:
            return "sibling"
        return ""

    def walk(parent_id: int | None, level: int) -> None:
        for item in by_parent.get(parent_id, []):
            visible = visible_ids is None or item.pk in visible_ids
            who, title = (
                (f"@{item.employee.handle}", item.title) if visible else (OTHER_TEAMS_EMPLOYEE, "")
            )
            nodes.append(TreeNode(item, level, visible, relation(item), who, title))
            walk(item.pk, level + 1)

    walk(None, 0)
    return nodes


def task_tree_for(user, task: Task) -> list[TreeNode]:
    """The linked requests of a task (its whole tree), marking those the person may open."""
    root_id = task.root_id or task.pk
    visible = set(
        tasks_visible_to(user).filter(Q(pk=root_id) | Q(root=root_id)).values_list("pk", flat=True)
    )
    return task_tree(task, visible_ids=visible)


def tree_is_live(nodes: list[TreeNode]) -> bool:
    """Whether any task of the tree is at work (parked trees are not polled)."""
    return any(task_is_live(node.task) for node in nodes)


# --- the tasks list: filters, nesting, who assigned each task -----------------------------------

DONE_WITH_ERRORS = "done_with_errors"  # a pseudo-status of the list's filter
CHILD_TITLE_LENGTH = 80


@dataclass(frozen=True)
class TaskListFilters:
    query: str = ""
    employee_id: int | None = None
    team_id: int | None = None
    status: str = ""  # a TaskStatus, or DONE_WITH_ERRORS
    source: str = ""
    created_from: datetime | None = None  # inclusive
    created_before: datetime | None = None  # exclusive

    @property
    def narrowed(self) -> bool:
        return any(
            (
                self.query,
                self.employee_id,
                self.team_id,
                self.status,
                self.source,
                self.created_from,
                self.created_before,
            )
        )


# A search PostgreSQL expects to match more tasks than this is asked as one text: the list's
# page then walks the newest-first index and stops after 50 (words asked apart would make it
# expect fewer, and read and sort every match instead).
WORDS_APART_AT_MOST = 1000


def _search(text: str) -> Q:
    """Tasks whose title or input contains `text`, any case: see _contains."""
    whole = Q(title__icontains=text) | Q(input__icontains=text)
    if len(_words(text)) < 2:
        return whole
    plan = json.loads(Task.objects.filter(whole).explain(format="json"))
    if plan[0]["Plan"]["Plan Rows"] > WORDS_APART_AT_MOST:
        return whole
    return _contains("title", text) | _contains("input", text)


def _words(text: str) -> list[str]:
    """The words of `text` the trigram index has trigrams of (letters and digits, 3 or more)."""
    return list(dict.fromkeys(w for w in re.findall(r"[^\W_]+", text) if len(w) >= 3))


def _contains(field: str, text: str) -> Q:
    """`field` contains `text`, any case (as `icontains`), asked so the trigram index answers fast.

    The index finds rows by the trigrams of each word (run of letters and digits); asked for a
    long text at once, PostgreSQL's GIN scan of all its trigrams as one key is slow when most
    are in every row (an e-mail address: "example", "com"): 45 ms at 100,000 tasks, against
    2 ms asked word by word. So each word of three or more characters is its own condition,
    and the exact text is tested on the rows they find (strpos: literal, never a wildcard).
    """
    words = _words(text)
    if not words or words == [text]:
        return Q(**{f"{field}__icontains": text})
    return Q(
        *(Q(**{f"{field}__icontains": word}) for word in words),
        GreaterThan(StrIndex(Upper(field), Upper(Value(text))), 0),
    )


def tasks_listed_for(user, filters: TaskListFilters) -> QuerySet[Task]:
    """The list's rows, newest first: matching tasks when filtered, else the tops of the trees.

    Unfiltered, a delegated task is shown under its parent (task_list_rows), so only tasks
    without a parent the person may see are rows here. The search is a case-insensitive
    substring of the title or the input, served by the trigram indexes on both.
    """
    qs = tasks_visible_to(user).select_related("requested_by_user").defer("input", "result")
    if filters.query:
        qs = qs.filter(_search(filters.query))
    if filters.employee_id:
        qs = qs.filter(employee_id=filters.employee_id)
    if filters.team_id:
        qs = qs.filter(employee__team_id=filters.team_id)
    if filters.status == DONE_WITH_ERRORS:
        qs = qs.filter(failed_steps_exist(), status=TaskStatus.DONE)
    elif filters.status:
        qs = qs.filter(status=filters.status)
    if filters.source:
        qs = qs.filter(source=filters.source)
    if filters.created_from:
        qs = qs.filter(created_at__gte=filters.created_from)
    if filters.created_before:
        qs = qs.filter(created_at__lt=filters.created_before)
    if not filters.narrowed:
        if user.is_superuser:
            qs = qs.filter(parent__isnull=True)
        else:
            mine = TeamMembership.objects.filter(user=user).values("team")
            qs = qs.filter(Q(parent__isnull=True) | ~Q(parent__employee__team__in=mine))
    return with_failed_steps(qs).order_by("-created_at", "-pk")


def search_count_at_most(tasks: QuerySet[Task], cap: int) -> int:
    """How many of a search's `tasks` there are, counted up to `cap` + 1 only.

    Read through the trigram indexes' bitmap: PostgreSQL would rather read the table (or the
    newest-first index) until `cap` + 1 rows match, as the LIMIT looks cheap, but testing
    UPPER(input) LIKE on each row costs more than it estimates (a word in 1 of 15 tasks: 26 ms
    that way, 5 ms from the bitmap, at 100,000 tasks). The settings last this statement only.
    """
    limited = tasks.order_by().values("pk")[: cap + 1]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off")
        try:
            return limited.count()
        finally:
            cursor.execute("RESET enable_seqscan; RESET enable_indexscan")


@dataclass
class TaskRow:
    task: Task
    level: int  # 0: a row of the list; 1, 2, ...: delegated below the row above
    visible: bool
    title: str
    assigned_by: str
    parent_id: int | None = None  # shown in a filtered (flat) list: "part of #12"


def short_title(task: Task) -> str:
    """A delegated task's title without the 'For @handle: ' its parent's row makes obvious."""
    title = task.title
    if task.parent_id is not None and title.startswith("For @"):
        title = title.partition(": ")[2] or title
    if len(title) > CHILD_TITLE_LENGTH:
        title = title[: CHILD_TITLE_LENGTH - 1].rstrip() + "…"
    return title


def task_list_rows(user, tasks: list[Task], *, nested: bool) -> list[TaskRow]:
    """The page's rows, each followed by the tasks delegated below it when `nested` (one
    query for all their trees, one for which of them the person may open)."""
    below: dict[int, list[Task]] = {}
    visible_ids: set[int] | None = None
    if nested and tasks:
        roots = {task.root_id or task.pk for task in tasks}
        relatives = with_failed_steps(
            Task.objects.filter(root__in=roots)
            .select_related("employee", "requested_by_employee", "requested_by_user")
            .defer("input", "result")
            .order_by("pk")
        )
        for relative in relatives:
            below.setdefault(relative.parent_id, []).append(relative)
        if not user.is_superuser and below:
            mine = TeamMembership.objects.filter(user=user).values("team")
            visible_ids = set(
                Task.objects.filter(root__in=roots, employee__team__in=mine).values_list(
                    "pk", flat=True
                )
            )
    ordered: list[tuple[Task, int]] = []

    def walk(task: Task, level: int) -> None:
        ordered.append((task, level))
        if level < 10:  # delegation depth is limited far below this
            for child in below.get(task.pk, []):
                walk(child, level + 1)

    for task in tasks:
        walk(task, 0)
    assigners = task_assigners(user, [task for task, _ in ordered])
    rows = []
    for task, level in ordered:
        visible = level == 0 or visible_ids is None or task.pk in visible_ids
        rows.append(
            TaskRow(
                task=task,
                level=level,
                visible=visible,
                title=(short_title(task) if level else task.title) if visible else "",
                assigned_by=assigners.get(task.pk, "") if visible else "",
                parent_id=task.parent_id if not nested else None,
            )
        )
    return rows


def _key_id(task: Task, prefix: str) -> int | None:
    """The row id an idempotency key like 'duty:12:2026-01-05T09:00' names (tasks.triggers,
    tasks.webhooks, mailboxes.services write them)."""
    key = task.idempotency_key or ""
    if not key.startswith(prefix):
        return None
    number = key[len(prefix) :].partition(":")[0]
    return int(number) if number.isascii() and number.isdigit() else None


def task_assigners(user, tasks: list[Task]) -> dict[int, str]:
    """Who or what gave each task, in words: a person, a duty, a webhook, a mail's sender, the
    delegating employee (its handle only within the person's teams). At most four queries."""
    keyed = {"duty:": Duty, "webhook:": WebhookEndpoint, "mail:": InboundMail}
    wanted: dict[str, dict[int, int]] = {prefix: {} for prefix in keyed}
    for task in tasks:
        for prefix in keyed:
            number = _key_id(task, prefix)
            if number is not None:
                wanted[prefix][task.pk] = number
    names: dict[str, dict[int, str]] = {prefix: {} for prefix in keyed}
    if wanted["duty:"]:
        names["duty:"] = dict(
            Duty.objects.filter(pk__in=wanted["duty:"].values()).values_list("pk", "name")
        )
    if wanted["webhook:"]:
        names["webhook:"] = dict(
            WebhookEndpoint.objects.filter(pk__in=wanted["webhook:"].values()).values_list(
                "pk", "name"
            )
        )
    if wanted["mail:"]:
        names["mail:"] = {
            pk: (f"{name} <{sender}>" if name else sender) or "an unknown sender"
            for pk, sender, name in InboundMail.objects.filter(
                pk__in=wanted["mail:"].values()
            ).values_list("pk", "sender", "sender_name")
        }
    my_teams: set[int] | None = None
    if not user.is_superuser and any(task.requested_by_employee_id for task in tasks):
        my_teams = set(TeamMembership.objects.filter(user=user).values_list("team_id", flat=True))

    def handle(task: Task) -> str:
        requester = task.requested_by_employee
        if requester is None:
            return "an employee"
        if my_teams is None or requester.team_id in my_teams:
            return f"@{requester.handle}"
        return OTHER_TEAMS_EMPLOYEE

    def named(prefix: str, task: Task) -> str:
        return names[prefix].get(wanted[prefix].get(task.pk, 0), "")

    said = {}
    for task in tasks:
        person = task.requested_by_user
        who = (person.get_full_name() or person.get_username()) if person else ""
        if task.source == TaskSource.DUTY:
            text = f"Duty “{named('duty:', task)}”" if named("duty:", task) else "A duty"
        elif task.source == TaskSource.WEBHOOK:
            name = named("webhook:", task)
            text = f"Webhook “{name}”" if name else "A webhook"
        elif task.source == TaskSource.EMAIL:
            text = f"E-mail from {named('mail:', task) or 'an unknown sender'}"
            if who:
                text += f", let through by {who}"
        elif task.source == TaskSource.DELEGATION:
            text = f"Delegated by {handle(task)}"
        elif task.source == TaskSource.FOLLOW_UP:
            text = f"Follow-up scheduled by {handle(task)}"
        elif who:
            text = f"Assigned by {who}"
        elif task.source == TaskSource.COMMAND:
            text = "Command line"
        else:
            text = "Assigned by a person"
        said[task.pk] = text
    return said
