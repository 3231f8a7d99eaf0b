"""anymail's `inbound` signal, sent once per verified, parsed inbound message: handed to the
service, nothing else (STYLE: no business logic in signals)."""

from __future__ import annotations

from mailboxes.services import inbound_mail_receive


class InboundMailFailed(Exception):
    """Our service failed on a parsed message: a 500, so the ESP retries it (the inbound view
    answers 400 only for what anymail cannot parse)."""


def on_inbound_mail(sender, event, esp_name: str, **kwargs) -> None:
    try:
        inbound_mail_receive(message=event.message, esp_name=esp_name, event_id=event.event_id)
    except Exception as exc:
        # Whatever it is (a KeyError or ValueError too), it is ours, not the payload's.
        raise InboundMailFailed(f"{type(exc).__name__}: {exc}") from exc
