"""The ESPs' inbound webhooks: anymail's views (each verifies and parses its ESP's format and
sends the `inbound` signal), behind one guard that refuses clearly what anymail would let
through or answer with a 500.

- An ESP whose only protection is HTTP basic auth is refused (403) until ANYMAIL_WEBHOOK_SECRET
  is set: anymail itself would only warn, and accept mail from anyone.
- A body over MAIL_MAX_BYTES is refused (413): by its Content-Length before it is read, else
  once more than MAIL_MAX_BYTES came. The guard reads the body itself, so a delivery may be up to
  MAIL_MAX_BYTES while DATA_UPLOAD_MAX_MEMORY_SIZE stays small for the rest of the site (in a
  multipart form, Django still caps each text field at DATA_UPLOAD_MAX_MEMORY_SIZE: a 413 too).
- A payload that is not the ESP's inbound format (a tracking webhook pointed here, a missing
  field, bad JSON) is a 400 saying so, not a 500 that the ESP would retry for days. An error of
  our own while storing the mail (mailboxes.receivers.InboundMailFailed) is a 500: the ESP
  retries, and the retry finds whatever was stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from io import BytesIO

from anymail.exceptions import AnymailConfigurationError, AnymailWebhookValidationFailure
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from mailboxes.receivers import InboundMailFailed

logger = logging.getLogger(__name__)


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return 0


def _too_large() -> JsonResponse:
    return JsonResponse(
        {"error": f"The delivery is larger than {settings.MAIL_MAX_BYTES} bytes."}, status=413
    )


def _read_body(request: HttpRequest) -> bool:
    """Read the body (at most MAIL_MAX_BYTES + 1 bytes) and cache it as the request's body, so
    Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not refuse it first; False when it is too large."""
    body = request.read(settings.MAIL_MAX_BYTES + 1)
    if len(body) > settings.MAIL_MAX_BYTES:
        return False
    # What HttpRequest.body caches itself (django/http/request.py): read once, parsed from here.
    request._body = body
    request._stream = BytesIO(body)
    return True


def inbound_view(view_class, *, signed: bool) -> Callable[[HttpRequest], HttpResponse]:
    """anymail's inbound view for one ESP, behind the guard; `signed`: the ESP signs its
    requests itself, so basic auth is optional."""
    view = view_class.as_view()
    esp = view_class.esp_name

    @csrf_exempt
    @login_not_required
    def receive(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not signed and not settings.ANYMAIL.get("WEBHOOK_SECRET"):
            return JsonResponse(
                {
                    "error": f"Inbound mail from {esp} is off: set ANYMAIL_WEBHOOK_SECRET "
                    "(user:password) and put it in the inbound URL you give the ESP "
                    "(https://user:password@host/mail/...)."
                },
                status=403,
            )
        if _declared_length(request) > settings.MAIL_MAX_BYTES or not _read_body(request):
            return _too_large()
        try:
            return view(request, *args, **kwargs)
        except InboundMailFailed:
            raise  # ours, not the payload's: a 500, and the ESP retries
        except RequestDataTooBig:
            return JsonResponse(
                {
                    "error": "A text field of the delivery is larger than "
                    f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes (files may be larger)."
                },
                status=413,
            )
        except AnymailWebhookValidationFailure as exc:
            logger.warning("%s inbound webhook refused: %s", esp, exc)
            return JsonResponse({"error": str(exc)}, status=400)
        except AnymailConfigurationError as exc:
            # anymail says what is wrong: a tracking webhook pointed here, a missing key.
            logger.warning("%s inbound webhook misconfigured: %s", esp, exc)
            return JsonResponse({"error": str(exc)}, status=400)
        except (KeyError, ValueError, TypeError) as exc:
            # Raised while anymail parses a payload that is not the ESP's inbound format; our
            # receiver's own errors arrive as InboundMailFailed, above.
            logger.warning("%s inbound payload not understood: %r", esp, exc)
            return JsonResponse(
                {"error": f"This is not a {esp} inbound mail payload ({type(exc).__name__})."},
                status=400,
            )

    receive.__name__ = f"{view_class.__name__}_guarded"
    return receive
