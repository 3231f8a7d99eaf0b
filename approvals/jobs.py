"""django-q2 jobs of the approvals app: emails to approvers. Thin, take ids, safe to run twice."""

from __future__ import annotations

import logging

from django.core.mail import EmailMessage
from django.utils import timezone

from approvals.models import (
    ApprovalRequest,
    ApprovalStatus,
    NotificationMode,
    NotificationPreference,
)
from approvals.notifications import (
    approval_email,
    approval_recipients,
    approvals_new_for,
    digest_email,
)

logger = logging.getLogger(__name__)


def notify_new_approval(approval_id: int) -> str:
    """Email a new request to each approver who wants every request at once; only once."""
    now = timezone.now()
    # Claim first, so two runs of this job never both send.
    claimed = ApprovalRequest.objects.filter(
        pk=approval_id, status=ApprovalStatus.PENDING, notified_at__isnull=True
    ).update(notified_at=now)
    if not claimed:
        return "already notified, or no longer pending"
    approval = ApprovalRequest.objects.select_related("employee__team", "task").get(pk=approval_id)
    subject, body = approval_email(approval)
    addresses = list(
        approval_recipients(approval, mode=NotificationMode.IMMEDIATE).values_list(
            "email", flat=True
        )
    )
    try:
        for address in addresses:
            EmailMessage(subject=subject, body=body, to=[address]).send()
    except Exception:
        # Give the claim back for django-q2's retry: a second email beats none.
        ApprovalRequest.objects.filter(pk=approval_id, notified_at=now).update(notified_at=None)
        raise
    return f"sent to {len(addresses)}"


def send_digests() -> int:
    """Send each digest reader one email with the pending requests new since their last one."""
    readers = (
        NotificationPreference.objects.filter(mode=NotificationMode.DIGEST, user__is_active=True)
        .exclude(user__email="")
        .values_list("pk", flat=True)
    )
    return sum(_send_digest(preference_id) for preference_id in list(readers))


def _send_digest(preference_id: int) -> int:
    preference = NotificationPreference.objects.select_related("user").get(pk=preference_id)
    now, previous = timezone.now(), preference.last_digest_at
    approvals = list(approvals_new_for(preference.user, since=previous, until=now))
    if not approvals:
        return 0
    # Claim the period first (compare-and-swap), so a concurrent run sends nothing.
    claimed = NotificationPreference.objects.filter(
        pk=preference_id, mode=NotificationMode.DIGEST, last_digest_at=previous
    ).update(last_digest_at=now)
    if not claimed:
        return 0
    subject, body = digest_email(approvals)
    try:
        EmailMessage(subject=subject, body=body, to=[preference.user.email]).send()
    except Exception as exc:
        # Give the period back: these requests go out with the next digest.
        NotificationPreference.objects.filter(pk=preference_id, last_digest_at=now).update(
            last_digest_at=previous
        )
        logger.warning("digest for %s failed: %s", preference.user, exc)
        return 0
    return 1
