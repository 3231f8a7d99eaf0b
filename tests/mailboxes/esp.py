"""Inbound deliveries as each ESP makes them, signed as each ESP signs them.

Shapes follow the ESPs' documentation and django-anymail's own test payloads: Mailgun's
"forward()" route (fully parsed fields, or raw MIME at .../inbound_mime/) signed with HMAC-SHA256
of timestamp+token under the webhook signing key (and, as anymail advises, the shared basic auth
in the route's URL too); Postmark's inbound JSON behind basic auth;
SendGrid's Inbound Parse multipart form (parsed, or "Send Raw") behind basic auth.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from django.core.files.uploadedfile import SimpleUploadedFile

WEBHOOK_SECRET = "esp-user:esp-pass-7b1f"
MAILGUN_SIGNING_KEY = "mailgun-signing-key-for-tests-3c9d"
DOMAIN = "mail.acme.test"


def basic_auth(credentials: str = WEBHOOK_SECRET) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(credentials.encode()).decode()}


def raw_mime(
    *,
    sender: str,
    to: str,
    subject: str,
    text: str,
    message_id: str | None = None,
    in_reply_to: str = "",
    references: str = "",
    attachments: list[tuple[str, str, bytes]] = (),
    headers: dict[str, str] | None = None,
) -> tuple[bytes, str]:
    """An RFC 5322 message and its Message-ID."""
    message = EmailMessage()
    message_id = message_id or make_msgid(domain="customer.example")
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = references
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text)
    for filename, content_type, content in attachments:
        maintype, subtype = content_type.split("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes(), message_id


def _mailgun_signature(key: str = MAILGUN_SIGNING_KEY) -> dict[str, str]:
    timestamp, token = str(int(time.time())), secrets.token_hex(25)
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": signature}


def mailgun_parsed(
    client,
    *,
    sender: str,
    recipient: str,
    subject: str,
    text: str,
    message_id: str,
    attachments: list[tuple[str, str, bytes]] = (),
    key: str = MAILGUN_SIGNING_KEY,
    extra_headers: list[list[str]] = (),
):
    """Mailgun's forward() of a fully parsed message (multipart/form-data)."""
    headers = [
        ["From", sender],
        ["To", recipient],
        ["Subject", subject],
        ["Message-Id", message_id],
        ["Date", "Mon, 02 Mar 2026 09:30:00 +0000"],
        *extra_headers,
    ]
    data = {
        "recipient": recipient,
        "sender": sender,
        "from": sender,
        "subject": subject,
        "body-plain": text,
        "stripped-text": text,
        "message-headers": json.dumps(headers),
        **_mailgun_signature(key),
    }
    if attachments:
        data["attachment-count"] = str(len(attachments))
        for n, (filename, content_type, content) in enumerate(attachments, start=1):
            data[f"attachment-{n}"] = SimpleUploadedFile(filename, content, content_type)
    return client.post("/mail/mailgun/inbound/", data, **basic_auth())


def mailgun_mime(
    client, *, recipient: str, sender: str, mime: bytes, key: str = MAILGUN_SIGNING_KEY
):
    """Mailgun's forward() to a URL containing "mime": the message, bytes as they came, as the
    body-mime field of a multipart form written by hand (the test client would encode it)."""
    boundary = "----mailgun-" + secrets.token_hex(8)
    fields = {"recipient": recipient, "sender": sender, **_mailgun_signature(key)}
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + (value if isinstance(value, bytes) else value.encode())
        + b"\r\n"
        for name, value in {**fields, "body-mime": mime}.items()
    )
    body += f"--{boundary}--\r\n".encode()
    return client.generic(
        "POST",
        "/mail/mailgun/inbound_mime/",
        body,
        content_type=f"multipart/form-data; boundary={boundary}",
        **basic_auth(),
    )


def postmark_payload(
    *,
    sender: str,
    recipient: str,
    subject: str,
    text: str,
    message_id: str,
    attachments: list[tuple[str, str, bytes]] = (),
) -> dict:
    """Postmark's inbound webhook JSON (https://postmarkapp.com/developer/webhooks/inbound-webhook)."""
    return {
        "FromName": "Ana Client",
        "From": sender,
        "FromFull": {"Email": sender, "Name": "Ana Client", "MailboxHash": ""},
        "To": recipient,
        "ToFull": [{"Email": recipient, "Name": "", "MailboxHash": ""}],
        "Cc": "",
        "CcFull": [],
        "OriginalRecipient": recipient,
        "Subject": subject,
        "MessageID": "22c74902-a0c1-4511-804f-341342852c90",
        "ReplyTo": "",
        "Date": "Mon, 2 Mar 2026 09:30:00 +0000",
        "TextBody": text,
        "HtmlBody": "",
        "StrippedTextReply": "",
        "Tag": "",
        "Headers": [
            {"Name": "Return-Path", "Value": f"<{sender}>"},
            {"Name": "X-Spam-Status", "Value": "No"},
            {"Name": "X-Spam-Score", "Value": "-0.1"},
            {"Name": "Message-ID", "Value": message_id},
        ],
        "Attachments": [
            {
                "Name": filename,
                "Content": base64.b64encode(content).decode(),
                "ContentType": content_type,
                "ContentLength": len(content),
            }
            for filename, content_type, content in attachments
        ],
    }


def postmark(client, payload: dict, credentials: str = WEBHOOK_SECRET):
    return client.post(
        "/mail/postmark/inbound/",
        json.dumps(payload),
        content_type="application/json",
        **basic_auth(credentials),
    )


def sendgrid_parsed(
    client,
    *,
    sender: str,
    recipient: str,
    subject: str,
    text: str,
    message_id: str,
    attachments: list[tuple[str, str, bytes]] = (),
    credentials: str = WEBHOOK_SECRET,
):
    """SendGrid Inbound Parse, default (parsed) format."""
    raw_headers = (
        f"From: {sender}\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
        f"Message-ID: {message_id}\r\nDate: Mon, 2 Mar 2026 09:30:00 +0000\r\n"
    )
    data = {
        "headers": raw_headers,
        "text": text,
        "from": sender,
        "to": recipient,
        "subject": subject,
        "envelope": json.dumps({"to": [recipient], "from": sender}),
        "charsets": json.dumps(
            {"to": "UTF-8", "subject": "UTF-8", "from": "UTF-8", "text": "UTF-8"}
        ),
        "SPF": "pass",
        "spam_score": "0.1",
    }
    if attachments:
        info = {}
        for n, (filename, content_type, content) in enumerate(attachments, start=1):
            data[f"attachment{n}"] = SimpleUploadedFile(filename, content, content_type)
            info[f"attachment{n}"] = {"filename": filename, "type": content_type}
        data["attachments"] = str(len(attachments))
        data["attachment-info"] = json.dumps(info)
    return client.post("/mail/sendgrid/inbound/", data, **basic_auth(credentials))


def sendgrid_raw(
    client, *, recipient: str, sender: str, mime: bytes, credentials: str = WEBHOOK_SECRET
):
    """SendGrid Inbound Parse with "Send Raw": the full MIME message as the email field."""
    data = {
        "email": mime.decode("utf-8", errors="surrogateescape"),
        "envelope": json.dumps({"to": [recipient], "from": sender}),
        "charsets": json.dumps({"email": "UTF-8"}),
    }
    return client.post("/mail/sendgrid/inbound/", data, **basic_auth(credentials))
