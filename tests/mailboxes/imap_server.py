"""A minimal IMAP4rev1 server over TLS that serves one folder: the edge of the world for the
IMAP polling tests. It speaks what imaplib sends for a poll (CAPABILITY, LOGIN, SELECT, UID
SEARCH UNSEEN, UID FETCH BODY.PEEK[], UID STORE +FLAGS, LOGOUT) over a real socket, with a
self-signed certificate the client is told to trust."""

from __future__ import annotations

import datetime
import ipaddress
import re
import socketserver
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "imap-cert.pem", directory / "imap-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: FakeIMAPServer = self.server.owner  # type: ignore[attr-defined]
        self._send("* OK [CAPABILITY IMAP4rev1] fake-imap ready")
        logged_in = False
        while line := self.rfile.readline():
            tag, _, rest = line.decode().strip().partition(" ")
            command, _, args = rest.partition(" ")
            command = command.upper()
            if command == "UID":
                command, _, args = args.partition(" ")
                command = "UID " + command.upper()
            if command == "CAPABILITY":
                self._send("* CAPABILITY IMAP4rev1", f"{tag} OK done")
            elif command == "LOGIN":
                user, password = [part.strip('"') for part in args.split(" ", 1)]
                logged_in = (user, password) == (server.username, server.password)
                self._send(f"{tag} OK logged in" if logged_in else f"{tag} NO bad credentials")
            elif not logged_in and command != "LOGOUT":
                self._send(f"{tag} BAD log in first")
            elif command == "SELECT":
                self._send(f"* {len(server.messages)} EXISTS", f"{tag} OK [READ-WRITE] selected")
            elif command == "UID SEARCH":
                with server.lock:
                    unseen = [str(uid) for uid in server.messages if uid not in server.seen]
                self._send(f"* SEARCH {' '.join(unseen)}".rstrip(), f"{tag} OK searched")
            elif command == "UID FETCH":
                uid = int(args.split(" ", 1)[0])
                raw = server.messages[uid]
                self.wfile.write(f"* {uid} FETCH (UID {uid} BODY[] {{{len(raw)}}}\r\n".encode())
                self.wfile.write(raw + b")\r\n")
                self._send(f"{tag} OK fetched")
            elif command == "UID STORE":
                uid = int(args.split(" ", 1)[0])
                if re.search(r"\+FLAGS.*\\Seen", args):
                    with server.lock:
                        server.seen.add(uid)
                self._send(f"* {uid} FETCH (UID {uid} FLAGS (\\Seen))", f"{tag} OK stored")
            elif command == "LOGOUT":
                self._send("* BYE", f"{tag} OK bye")
                return
            else:
                self._send(f"{tag} BAD unknown command")

    def _send(self, *lines: str) -> None:
        self.wfile.write("".join(f"{line}\r\n" for line in lines).encode())
        self.wfile.flush()


class _TLSServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, context: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self.socket = context.wrap_socket(self.socket, server_side=True)


class FakeIMAPServer:
    def __init__(self, directory: Path, *, username: str, password: str) -> None:
        self.cert_path, key_path = self_signed_certificate(directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, key_path)
        self.username, self.password = username, password
        self.messages: dict[int, bytes] = {}
        self.seen: set[int] = set()
        self.lock = threading.Lock()
        self._server = _TLSServer(("127.0.0.1", 0), _Handler, context)
        self._server.owner = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]

    def add(self, raw: bytes) -> int:
        with self.lock:
            uid = max(self.messages, default=0) + 1
            self.messages[uid] = raw
        return uid

    def __enter__(self) -> FakeIMAPServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
