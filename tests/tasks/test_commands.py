"""The operator commands: assign (with --wait --json), run_task and run_due, run as an operator would."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tasks.models import Task, TaskStatus
from tasks.services import task_create
from tests.aiworkforce.helpers import BASE_DIR, clean_env, manage
from tests.factories import EmployeeFactory
from tests.fakes.openai_server import dynamic, error, reply
from tests.tasks.test_workers import _test_database_url

pytestmark = pytest.mark.django_db(transaction=True)


def _env(model_server=None) -> dict[str, str]:
    env = {"DATABASE_URL": _test_database_url()}
    if model_server is not None:
        env.update(OPENAI_API_KEY="sk-test-not-a-real-key", OPENAI_BASE_URL=model_server.base_url)
    else:
        env["OPENAI_API_KEY"] = ""
    return env


def test_assign_wait_json_runs_against_an_openai_compatible_server(model_server):
    EmployeeFactory(handle="writer")
    model_server.enqueue(reply("Drafted the reply.", prompt_tokens=300, completion_tokens=40))
    result = manage(
        "assign",
        "@writer",
        "Draft a reply to the customer",
        "--wait",
        "--json",
        env=_env(model_server),
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "done" and outcome["result"] == "Drafted the reply."
    assert outcome["tokens"] == 340 and outcome["cost_usd"] == "0.000069"
    assert model_server.calls == 1


def test_assign_wait_works_offline_and_says_so():
    EmployeeFactory(handle="offliner", sop=[{"text": "Acknowledge the request"}])
    result = manage("assign", "offliner", "Say hello", "--wait", "--json", env=_env())
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "done"
    assert outcome["result"].startswith("[offline mode]")


def test_assign_reports_a_parked_task_and_why(model_server):
    from employees.models import ToolPolicy
    from tests.factories import ToolGrantFactory

    employee = EmployeeFactory(handle="careful")
    ToolGrantFactory(
        employee=employee,
        tool_name="send_email",
        scope={"allowed_domains": ["example.com"]},
        policy=ToolPolicy.NEEDS_APPROVAL,
    )
    model_server.enqueue(
        reply(tool_calls=[("send_email", {"to": ["a@example.com"], "subject": "s", "body": "b"})])
    )
    result = manage("assign", "careful", "Email a", "--wait", env=_env(model_server))
    assert result.returncode == 0, result.stderr
    assert (
        "Waiting for approval" in result.stdout
        and "why: Waiting for approval of send_email." in result.stdout
    )


def test_assign_wait_stops_at_once_on_wrong_model_settings_and_says_what_to_fix(model_server):
    EmployeeFactory(handle="typo", model_name="gpt-4o-mnii")
    message = "The model `gpt-4o-mnii` does not exist or you do not have access to it."
    model_server.enqueue(dynamic(lambda body: error(404, message, code="model_not_found")))
    # Before, --wait kept waiting for a status it did not know, until its timeout.
    args = ("assign", "typo", "Summarise the orders", "--wait", "--timeout", "30")
    result = manage(*args, env=_env(model_server))
    assert result.returncode == 1  # a person must act: a script sees it
    assert "Task #" in result.stdout and ": Model settings wrong" in result.stdout
    assert f"why: Configuration problem: {message}" in result.stdout
    assert "next: fix the model settings" in result.stdout and "OPENAI_API_KEY" in result.stdout
    assert "stopped because the model settings are wrong, not because the model is down" in (
        result.stderr
    )
    assert "still" not in result.stderr
    assert model_server.calls == 1

    result = manage(*args, "--json", env=_env(model_server))
    assert result.returncode == 1
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "model_misconfigured"
    assert outcome["reason"].startswith(f"Configuration problem: {message}")
    assert model_server.calls == 2


def test_assign_refuses_unknown_handles_and_offboarded_employees_clearly():
    EmployeeFactory(handle="known")
    result = manage("assign", "nobody", "x", env=_env())
    assert result.returncode == 1
    assert "No employee with handle 'nobody'. Known handles: known." in result.stderr
    EmployeeFactory(handle="gone", status="offboarded")
    result = manage("assign", "gone", "x", env=_env())
    assert "has been offboarded and takes no new tasks" in result.stderr
    result = manage("assign", "known", "   ", env=_env())
    assert "A task needs instructions." in result.stderr
    assert not Task.objects.exists()


# --- instructions longer than the shell allows: --file PATH and - (standard input) -------------

# Over Linux's 128 kB limit for one command-line argument, and several lines long.
LONG = "\n".join(
    f"Line {n}: check invoice {n:06d} against the order and note any gap." for n in range(3_000)
)


def _assign_with_stdin(data: bytes, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "assign", *args],
        env=clean_env(**_env()),
        input=data,
        capture_output=True,
        timeout=60,
        cwd=BASE_DIR,
    )


def test_long_instructions_are_refused_by_the_shell_as_an_argument():
    """Why --file and - exist: the kernel refuses an argument this long before Python starts."""
    assert len(LONG.encode()) > 200_000
    with pytest.raises(OSError, match="Argument list too long"):
        subprocess.run([sys.executable, "-c", "pass", LONG], timeout=60)


def test_assign_reads_200_kb_of_instructions_from_standard_input():
    EmployeeFactory(handle="clerk")
    result = _assign_with_stdin(LONG.encode(), "clerk", "-", "--json")
    assert result.returncode == 0, result.stderr.decode()
    task = Task.objects.get(pk=json.loads(result.stdout)["task"])
    assert (
        task.input == LONG
        and task.title == "Line 0: check invoice 000000 against the order and note any gap."
    )


def test_assign_reads_200_kb_of_instructions_from_a_file(tmp_path):
    EmployeeFactory(handle="clerk")
    path = tmp_path / "instructions.md"
    path.write_text(LONG, encoding="utf-8")
    result = manage("assign", "clerk", "--file", str(path), "--title", "Invoices", env=_env())
    assert result.returncode == 0, result.stderr
    task = Task.objects.get()
    assert task.input == LONG and task.title == "Invoices"


def test_assign_file_errors_say_what_to_do(tmp_path):
    EmployeeFactory(handle="clerk")
    missing = tmp_path / "nope.txt"
    result = manage("assign", "clerk", "--file", str(missing), env=_env())
    assert result.returncode == 1
    assert (
        f"Cannot read the instructions file {missing}: No such file or directory" in result.stderr
    )
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Caf\xe9 order".encode("latin-1"))
    result = manage("assign", "clerk", "--file", str(latin1), env=_env())
    assert f"{latin1} is not UTF-8 text (byte 0xe9 at position 3)" in result.stderr
    assert "save it as UTF-8" in result.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n\n", encoding="utf-8")
    result = manage("assign", "clerk", "--file", str(empty), env=_env())
    assert f"{empty} is empty: write the instructions in it" in result.stderr
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"Order 7\x00 shipped")
    result = manage("assign", "clerk", "--file", str(binary), env=_env())
    assert (
        "The instructions cannot be stored because of the NUL character (U+0000)" in result.stderr
    )
    result = manage("assign", "clerk", "Do it", "--file", str(binary), env=_env())
    assert "either as an argument, as - (standard input) or with --file, not both" in result.stderr
    result = manage("assign", "clerk", env=_env())
    assert "Give the instructions" in result.stderr and "--file PATH" in result.stderr
    result = manage("assign", "clerk", "--file", str(tmp_path), env=_env())
    assert f"Cannot read the instructions file {tmp_path}: Is a directory" in result.stderr
    assert not Task.objects.exists()


def test_assign_standard_input_errors_say_what_to_do():
    EmployeeFactory(handle="clerk")
    result = _assign_with_stdin(b"", "clerk", "-")
    assert result.returncode == 1
    assert "Standard input is empty: pipe the instructions in" in result.stderr.decode()
    result = _assign_with_stdin(b"\xff\xfe", "clerk", "-")
    assert "Standard input is not UTF-8 text (byte 0xff at position 0)" in result.stderr.decode()
    assert not Task.objects.exists()


def test_run_task_prints_each_step_as_it_happens(model_server):
    employee = EmployeeFactory(handle="stepper")
    from employees.models import ToolPolicy
    from tests.factories import ToolGrantFactory

    ToolGrantFactory(employee=employee, tool_name="create_task", scope={}, policy=ToolPolicy.AUTO)
    task, _ = task_create(
        employee=employee, title="", input="Plan a follow-up", urgent=True, dispatch=False
    )
    model_server.enqueue(
        reply(
            tool_calls=[("create_task", {"title": "Later", "instructions": "Check"})],
            prompt_tokens=100,
            completion_tokens=10,
        ),
        reply("Planned."),
    )
    result = manage("run_task", str(task.pk), env=_env(model_server))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "[1] Model call (gpt-4o-mini) asks for create_task — 100+10 tokens" in "\n".join(lines)
    assert any("create_task done: follow-up task" in line for line in lines)
    assert any("Final answer" in line for line in lines)
    assert lines[-2] == "=> Done"


def test_run_task_explains_why_a_task_cannot_run():
    employee = EmployeeFactory(handle="idle")
    task, _ = task_create(employee=employee, title="", input="x", urgent=True, dispatch=False)
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.DONE)
    result = manage("run_task", str(task.pk), env=_env())
    assert result.returncode == 1
    assert "is done and cannot be run now" in result.stderr
    assert "There is no task #999999." in manage("run_task", "999999", env=_env()).stderr


def test_run_due_makes_one_batch_pass():
    result = manage("run_due", env=_env())
    assert result.returncode == 0, result.stderr
    assert "duty tasks created" in result.stdout and "expired leases reclaimed" in result.stdout
