"""A minimal SMTP server that stores what it receives: the edge of the world for email tests.

It speaks enough ESMTP (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) for Django's SMTP
backend, so delivery goes over a real socket exactly as it would to a mail relay.
"""

from __future__ import annotations

import email
import socketserver
import threading
from dataclasses import dataclass
from email.message import Message


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: Message


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: FakeSMTPServer = self.server.owner  # type: ignore[attr-defined]
        self._send("220 fake-smtp ready")
        sender, recipients = "", []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            command = line.decode("utf-8", "replace").strip()
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self._send("250-fake-smtp", "250 8BITMIME")
            elif verb in ("HELO", "NOOP"):
                self._send("250 OK")
            elif verb == "MAIL":
                sender, recipients = command.split(":", 1)[1].strip(" <>"), []
                self._send("250 OK")
            elif verb == "RCPT":
                recipients.append(command.split(":", 1)[1].strip(" <>"))
                self._send("250 OK")
            elif verb == "DATA":
                self._send("354 End data with <CR><LF>.<CR><LF>")
                lines = []
                while (data := self.rfile.readline()) not in (b".\r\n", b""):
                    lines.append(data[1:] if data.startswith(b"..") else data)
                with server.lock:
                    server.received.append(
                        Received(
                            sender, list(recipients), email.message_from_bytes(b"".join(lines))
                        )
                    )
                self._send("250 OK: queued")
            elif verb == "RSET":
                sender, recipients = "", []
                self._send("250 OK")
            elif verb == "QUIT":
                self._send("221 Bye")
                return
            else:
                self._send("502 Command not implemented")

    def _send(self, *lines: str) -> None:
        self.wfile.write("".join(f"{line}\r\n" for line in lines).encode())


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeSMTPServer:
    """`port=` brings a stopped server back on its old port (a mail relay after an outage)."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self._server = _TCPServer(("127.0.0.1", port), _Handler)
        self._server.owner = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeSMTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
