"""The http_request tool: scope checks, no redirects, size cap, and no reaching internal hosts."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings

from tasks.tools import ToolContext, get_tool

TOOL = get_tool("http_request")


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/big":
            body = b"x" * 5000
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://evil.example.net/")
            self.end_headers()
            return
        else:
            body = f"host={self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _run(url: str, scope: dict, **extra) -> dict:
    arguments = {"method": "GET", "url": url, **extra}
    refusal = TOOL.check_scope(arguments, scope)
    if refusal:
        return {"refused": refusal}
    return TOOL.execute(ToolContext(task=None, employee=None, call_id="c1", scope=scope), arguments)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://allowed.example@evil.example.net/", "credentials"),
        ("http://allowed.example\\@evil.example.net/", "backslashes"),
        ("http://allowed.example:99999/", "not a valid host and port"),
        ("file:///etc/passwd", "Only http and https"),
        ("http://other.example/", "not among the allowed hosts"),
    ],
)
def test_urls_outside_the_grant_are_refused(url, message):
    assert message in _run(url, {"allowed_hosts": ["allowed.example"]})["refused"]


def test_method_must_be_allowed():
    result = _run(
        "http://allowed.example/", {"allowed_hosts": ["allowed.example"]}, method="DELETE"
    )
    assert "Method DELETE is not allowed" in result["refused"]


def test_a_named_internal_host_is_reachable_and_the_host_header_cannot_be_forged(site):
    result = _run(
        f"http://{site}/", {"allowed_hosts": ["127.0.0.1"]}, headers={"Host": "admin.internal"}
    )
    assert result["status"] == 200 and result["body"] == f"host={site}"


def test_an_internal_address_needs_the_host_named_literally():
    from tasks.tools.http import _internal_address_refusal

    # "localhost" resolves to loopback: a wildcard grant (which a DNS record could point
    # anywhere) does not reach it, naming the host does.
    refusal = _internal_address_refusal("localhost", ["*.localhost", "*.example.com"])
    assert "resolves to the internal address 127.0.0.1" in refusal
    assert _internal_address_refusal("localhost", ["localhost"]) is None
    assert _internal_address_refusal("localhost", ["localhost:8000"]) is None


def test_redirects_are_reported_not_followed(site):
    result = _run(f"http://{site}/redirect", {"allowed_hosts": ["127.0.0.1"]})
    assert result["status"] == 302 and result["redirect_not_followed"] == "http://evil.example.net/"


@override_settings(HTTP_TOOL_MAX_BYTES=1000)
def test_large_responses_are_cut_at_the_cap(site):
    result = _run(f"http://{site}/big", {"allowed_hosts": ["127.0.0.1"]})
    assert len(result["body"]) == 1000 and result["truncated"] is True


def test_unreachable_hosts_give_a_readable_error():
    result = _run("http://127.0.0.1:9/", {"allowed_hosts": ["127.0.0.1"], "timeout_seconds": 2})
    assert result["error"].startswith("request failed")
