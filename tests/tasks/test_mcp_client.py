"""The MCP client against real MCP servers (tests/fakes/mcp_servers.py) over stdio and HTTP.

No database. Servers are shared per module where a test leaves them healthy; a test that kills
or stalls a server uses a spec of its own (a different name is a different session).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import select
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tasks.mcp import client
from tasks.mcp.client import (
    CallResult,
    McpError,
    McpTimeout,
    McpUnavailable,
    ServerSpec,
    ToolDefinition,
    call_tool,
    close_sessions,
    list_tools,
)
from tests.fakes.mcp_servers import (
    BIG_TEXT,
    CHANGED_DESCRIPTION,
    INJECTION,
    SCREENSHOT_TEXT,
    SCRIPT,
    free_port,
    http_server,
    http_spec,
    stdio_spec,
)

TOKEN = "tok-4f9a1c2e7b"
TOOLS = ["lookup_order", "refund_order", "fetch_ticket", "crash", "sleep"]


@pytest.fixture(scope="module", autouse=True)
def _close_sessions_after_the_module():
    yield
    close_sessions()


@pytest.fixture(scope="module")
def sink_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mcp-sinks")


@pytest.fixture(scope="module")
def http_url(sink_dir):
    with http_server(token=TOKEN, env={"MCP_SINK": str(sink_dir / "http.jsonl")}) as url:
        yield url
        close_sessions()  # end our sessions as a client would, before their server goes


@pytest.fixture(scope="module", params=["stdio", "http"])
def spec(request, sink_dir) -> ServerSpec:
    """A healthy server over each transport, its session shared by the module's tests."""
    if request.param == "stdio":
        return stdio_spec({"MCP_SINK": str(sink_dir / "stdio.jsonl")})
    return http_spec(request.getfixturevalue("http_url"), TOKEN)


def call(spec: ServerSpec, tool: str, max_bytes: int = 4000, timeout: float = 5, **arguments):
    return call_tool(spec, tool, arguments, timeout=timeout, max_bytes=max_bytes)


def server_pid(spec: ServerSpec, timeout: float = 5) -> int:
    """The pid of the process serving this spec's session (the sleep tool names it)."""
    text = call(spec, "sleep", seconds=0, timeout=timeout).text
    return int(re.search(r"in process (\d+)", text).group(1))


def sink_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_until_gone(pid: int, within: float) -> bool:
    """Whether the process ended within the time. A zombie has ended: a server that exits while
    no request runs the client's loop is reaped by the next request."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not is_running(pid):
            return True
        time.sleep(0.05)
    return False


def is_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- listing ----------------------------------------------------------------------------------


def test_lists_the_tools_with_descriptions_schemas_and_annotations(spec):
    tools = {tool.name: tool for tool in list_tools(spec, timeout=10)}

    assert list(tools) == TOOLS
    lookup = tools["lookup_order"]
    assert isinstance(lookup, ToolDefinition)
    assert lookup.description == "Look an order up by its id: items, total, shipping."
    assert lookup.input_schema["required"] == ["order_id"]
    assert lookup.input_schema["properties"]["order_id"]["type"] == "string"
    assert lookup.annotations == {"readOnlyHint": True, "openWorldHint": False}
    assert tools["refund_order"].annotations == {
        "title": "Refund an order",
        "readOnlyHint": False,
        "destructiveHint": True,
    }
    assert tools["refund_order"].input_schema["required"] == ["order_id", "amount"]
    assert tools["fetch_ticket"].annotations == {"readOnlyHint": True, "openWorldHint": False}
    assert tools["sleep"].annotations == {"readOnlyHint": True}
    assert tools["crash"].annotations == {}


def test_a_pinned_definition_is_stable_and_a_changed_one_differs(sink_dir):
    pinned = [tool.as_json() for tool in list_tools(stdio_spec(), timeout=10)]
    again = [tool.as_json() for tool in list_tools(stdio_spec(), timeout=10)]
    changed = list_tools(stdio_spec({"MCP_VARIANT": "changed"}), timeout=10)

    assert json.dumps(pinned, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert set(pinned[0]) == {"name", "description", "input_schema", "annotations"}
    rug = changed[0].as_json()
    assert rug["name"] == "lookup_order"
    assert rug["description"] == CHANGED_DESCRIPTION != pinned[0]["description"]
    assert rug["input_schema"]["required"] == ["order_id", "customer_email"]


def test_listing_follows_pagination_cursors():
    paged = stdio_spec({"MCP_PAGE_SIZE": "2"}, name="paged")

    assert [tool.name for tool in list_tools(paged, timeout=10)] == TOOLS


# --- calling ----------------------------------------------------------------------------------


def test_a_call_returns_the_text_and_the_structured_content(spec):
    result = call(spec, "lookup_order", order_id="A-1001")

    expected = "Order A-1001: 2 items, $84.00, shipped 2026-11-28 to Berlin."
    assert result == CallResult(
        text=expected, is_error=False, structured={"result": expected}, truncated=False
    )
    assert call(spec, "fetch_ticket", ticket_id="7").text == INJECTION


def test_other_content_is_summarised(spec):
    result = call(spec, "fetch_ticket", ticket_id="SCREENSHOT")

    assert result.text == f"{SCREENSHOT_TEXT}\n[image image/png, 1,234 bytes]"


@pytest.mark.parametrize("max_bytes", [2000, 2001, 2002])  # one of them falls inside a "€"
def test_a_big_result_is_cut_to_max_bytes_on_a_character_boundary_with_a_marker(spec, max_bytes):
    result = call(spec, "lookup_order", order_id="BIG", max_bytes=max_bytes)

    assert result.truncated
    assert len(result.text.encode()) <= max_bytes
    assert result.structured is None  # its JSON is over max_bytes too
    kept, marker = result.text.rsplit("\n", 1)
    omitted = int(re.fullmatch(r"\[… cut: (\d+) bytes more\]", marker).group(1))
    assert BIG_TEXT.startswith(kept)
    assert len(kept.encode()) + omitted == len(BIG_TEXT.encode()) > 60_000


def test_a_tool_failure_is_a_result_with_is_error(spec):
    result = call(spec, "lookup_order", order_id="NOPE")
    unknown = call(spec, "no_such_tool")

    assert result.is_error
    assert "Order NOPE does not exist." in result.text
    assert unknown.is_error  # MCPServer answers an unknown tool with isError, not JSON-RPC
    assert "Unknown tool" in unknown.text


def test_a_protocol_error_is_an_mcp_error_with_the_servers_message(spec):
    with pytest.raises(McpError) as raised:
        call(spec, "lookup_order", order_id="RPC-ERROR")

    assert not isinstance(raised.value, McpUnavailable | McpTimeout)
    assert "order_id RPC-ERROR is malformed" in str(raised.value)
    assert str(raised.value).startswith("MCP server 'orders' ")
    assert call(spec, "lookup_order", order_id="A-1").text.startswith("Order A-1:")


def test_one_stdio_process_serves_every_call_exactly_once(sink_dir):
    sink = sink_dir / "once.jsonl"
    once = stdio_spec({"MCP_SINK": str(sink)}, name="once")

    first = call(once, "refund_order", order_id="A-1001", amount=12.5)
    second = call(once, "refund_order", order_id="A-1002", amount=3)

    assert first.text == "Refunded $12.50 on order A-1001."
    assert second.text == "Refunded $3.00 on order A-1002."
    lines = sink_lines(sink)
    assert [(line["order_id"], line["amount"]) for line in lines] == [
        ("A-1001", 12.5),
        ("A-1002", 3),
    ]
    assert lines[0]["pid"] == lines[1]["pid"] == server_pid(once)


def test_calls_from_eight_threads_at_once_share_one_session(sink_dir):
    sink = sink_dir / "busy.jsonl"
    busy = stdio_spec({"MCP_SINK": str(sink)}, name="busy")
    start = threading.Barrier(8)

    def refund(i: int) -> str:
        start.wait()
        return call(busy, "refund_order", order_id=f"T-{i}", amount=i, timeout=10).text

    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(refund, range(8)))

    assert texts == [f"Refunded ${i:.2f} on order T-{i}." for i in range(8)]
    lines = sink_lines(sink)
    assert sorted(line["order_id"] for line in lines) == [f"T-{i}" for i in range(8)]
    assert len({line["pid"] for line in lines}) == 1  # eight racing callers, one server started


def test_a_slow_call_in_one_thread_does_not_hold_up_another_threads_call(spec):
    slowpoke = stdio_spec(name="slowpoke")
    server_pid(slowpoke)

    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(call, slowpoke, "sleep", seconds=2, timeout=10)
        time.sleep(0.3)  # under way: its thread runs the client's loop while it waits
        started = time.monotonic()
        quick = call(spec, "lookup_order", order_id="A-7")
        took = time.monotonic() - started
        still_sleeping = not slow.done()

    assert quick.text.startswith("Order A-7:")
    assert took < 1.5 and still_sleeping
    assert slow.result().text.startswith("Slept 2.0 s")


def test_a_call_waiting_behind_another_threads_call_goes_on_when_that_one_is_done():
    relay = stdio_spec(name="relay")
    pid = server_pid(relay)

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(call, relay, "sleep", seconds=0.5, timeout=30)
        time.sleep(0.2)
        started = time.monotonic()
        second = call(relay, "sleep", seconds=1.5, timeout=30)
        took = time.monotonic() - started

    assert first.result().text == f"Slept 0.5 s in process {pid}."
    assert second.text == f"Slept 1.5 s in process {pid}."  # one session for both threads
    # Nobody ran the loop for the second call once the first thread was done with it: the
    # second took it over (else it would have waited out its 30 s and more).
    assert took < 5


# --- failures ---------------------------------------------------------------------------------


def test_a_crash_mid_call_is_unavailable_and_the_next_call_reconnects(caplog):
    caplog.set_level(logging.DEBUG, logger="tasks.mcp")
    crashy = stdio_spec(name="crashy")
    before = server_pid(crashy)

    with pytest.raises(McpUnavailable, match="'crashy' closed the connection during the call"):
        call(crashy, "crash", reason="testing")

    assert server_pid(crashy) != before
    # The server's stderr went to our log at DEBUG, not to our stdout.
    deadline = time.monotonic() + 2
    while "crashing on purpose: testing" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "crashing on purpose: testing" in caplog.text


def test_a_server_that_died_between_calls_is_replaced_without_a_failed_call():
    flaky = stdio_spec(name="flaky")
    before = server_pid(flaky)

    os.kill(before, signal.SIGKILL)
    assert wait_until_gone(before, within=2)
    time.sleep(0.2)  # the client sees its end of the pipe close

    assert server_pid(flaky) != before


def test_a_timeout_raises_promptly_and_the_server_is_replaced():
    slow = stdio_spec(name="slow")
    before = server_pid(slow)
    started = time.monotonic()

    with pytest.raises(McpTimeout, match=r"'slow' did not answer within 0.5 s"):
        call(slow, "sleep", seconds=30, timeout=0.5)

    assert time.monotonic() - started < 1.5
    assert server_pid(slow) != before  # the worker is not stuck: the next call just works
    assert wait_until_gone(before, within=3)  # the hung server was stopped in the background


def test_a_server_that_never_answers_initialize_times_out_connecting():
    mute = ServerSpec(
        name="mute",
        transport="stdio",
        command=sys.executable,
        args=("-c", "import time; time.sleep(60)"),
    )
    started = time.monotonic()

    with pytest.raises(McpTimeout, match=r"'mute' did not connect within 0.5 s"):
        list_tools(mute, timeout=0.5)

    assert time.monotonic() - started < 1.5


def test_a_missing_executable_is_a_clear_unavailable_without_secrets():
    missing = ServerSpec(
        name="orders", transport="stdio", command="ordersd", env=(("ORDERS_KEY", "sk-live-9f8e7d"),)
    )

    with pytest.raises(McpUnavailable) as raised:
        call(missing, "lookup_order", order_id="A-1")

    assert str(raised.value) == (
        "MCP server 'orders' could not be started: [Errno 2] No such file or directory: 'ordersd'"
    )


@pytest.mark.parametrize("token", ["wrong-token-1234", None], ids=["bad", "missing"])
def test_a_refused_token_is_unavailable_naming_401_without_the_token(http_url, token, caplog):
    caplog.set_level(logging.DEBUG)

    with pytest.raises(McpUnavailable) as raised:
        list_tools(http_spec(http_url, token), timeout=5)

    message = str(raised.value)
    assert message == "MCP server 'orders' refused the credentials (HTTP 401)"
    assert "wrong-token" not in message + caplog.text
    assert TOKEN not in message + caplog.text


def test_a_call_whose_session_the_restarted_server_forgot_is_not_sent_twice(sink_dir):
    port, sink = free_port(), sink_dir / "restarted.jsonl"
    with http_server(port=port) as url:
        restarted = http_spec(url, name="restarted")
        assert call(restarted, "lookup_order", order_id="A-1").text.startswith("Order A-1:")

    with http_server(port=port, env={"MCP_SINK": str(sink)}):
        with pytest.raises(McpUnavailable, match=r"forgot its session .*outcome is unknown"):
            call(restarted, "refund_order", order_id="A-1", amount=5)
        assert sink_lines(sink) == []  # a 404 for the old session: the server did not run it

        result = call(restarted, "refund_order", order_id="A-2", amount=5)  # a new session
        assert result.text == "Refunded $5.00 on order A-2."
        assert len(sink_lines(sink)) == 1


def test_a_listing_whose_session_the_restarted_server_forgot_is_renewed():
    port = free_port()
    with http_server(port=port) as url:
        restarted = http_spec(url, name="relisted")
        assert list_tools(restarted, timeout=10)

    with http_server(port=port):
        assert "lookup_order" in [tool.name for tool in list_tools(restarted, timeout=10)]


def test_an_unreachable_http_server_is_unavailable():
    url = f"http://127.0.0.1:{free_port()}/mcp?api_key=sk-in-the-url"

    with pytest.raises(
        McpUnavailable, match=r"could not be reached at http://127\.0\.0\.1:\d+/mcp:"
    ) as raised:
        list_tools(ServerSpec(name="gone", transport="http", url=url), timeout=5)

    assert "sk-in-the-url" not in str(raised.value)


def test_the_repr_of_a_spec_shows_no_secret():
    stdio = stdio_spec({"ORDERS_KEY": "sk-live-9f8e7d"})
    http = ServerSpec(
        name="orders",
        transport="http",
        url="https://orders.example/mcp?key=sk-query-1",
        headers=(("Authorization", f"Bearer {TOKEN}"),),
    )

    assert "ORDERS_KEY" in repr(stdio) and "sk-live-9f8e7d" not in repr(stdio)
    assert "Authorization" in repr(http) and TOKEN not in repr(http)
    assert "sk-query-1" not in repr(http) and "sk-query-1" not in str(http)


# --- processes --------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_its_own_session_and_leaves_the_parents_alone():
    forked = stdio_spec(name="forked")
    parent_server = server_pid(forked)
    read_end, write_end = os.pipe()

    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            report = {"server": server_pid(forked)}
            close_sessions()
        except BaseException as exc:
            report = {"error": repr(exc)}
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)

    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 15)
        report = json.loads(os.read(read_end, 10_000)) if ready else {"error": "child hung"}
    finally:
        os.close(read_end)
        if not ready:
            os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)

    assert "error" not in report, report
    assert report["server"] != parent_server  # the child started a server of its own
    assert server_pid(forked) == parent_server  # and never touched the parent's


def _call_from_a_worker(spec: ServerSpec) -> None:
    call(spec, "lookup_order", order_id="A-1")  # then the worker process ends


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_worker_process_closes_its_sessions_when_it_exits(tmp_path):
    """A django-q2 worker is a multiprocessing child, which runs no atexit hooks. Its server
    here survives the end of its stdin (the shell sleeps on), so only a close stops it."""
    pid_file = tmp_path / "server.pid"
    stubborn = ServerSpec(
        name="stubborn",
        transport="stdio",
        command="/bin/sh",
        args=("-c", f'echo $$ > "{pid_file}"; "{sys.executable}" "{SCRIPT}" stdio; sleep 60'),
    )
    worker = multiprocessing.get_context("fork").Process(
        target=_call_from_a_worker, args=(stubborn,)
    )
    worker.start()
    worker.join(30)

    assert worker.exitcode == 0
    assert wait_until_gone(int(pid_file.read_text()), within=10)


def test_a_session_left_idle_is_closed(monkeypatch):
    monkeypatch.setattr(client, "IDLE_TIMEOUT", 0.3)
    idle = stdio_spec(name="idle")
    before = server_pid(idle)
    time.sleep(0.4)

    with pytest.raises(McpUnavailable):  # any request looks for idle sessions first
        list_tools(ServerSpec(name="other", transport="stdio", command="ordersd"), timeout=5)

    assert wait_until_gone(before, within=3)
