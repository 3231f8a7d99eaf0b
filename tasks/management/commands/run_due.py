"""One batch pass for cron or systemd: due duties, expired approvals, runnable tasks, leases."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from tasks.jobs import run_due


class Command(BaseCommand):
    help = (
        "Materialise due duties, expire undecided approvals, escalate late delegations, "
        "dispatch runnable tasks, "
        "reclaim expired leases, retry outbox emails and list granted MCP servers' tools again "
        "(one pass)."
    )

    def handle(self, *args, **options) -> None:
        counts = run_due()
        self.stdout.write(
            f"{counts['duty_tasks']} duty tasks created, "
            f"{counts['expired_approvals']} approvals expired, "
            f"{counts['overdue_delegations']} late delegations escalated, "
            f"{counts['dispatched']} tasks dispatched, "
            f"{counts['reclaimed']} expired leases reclaimed, "
            f"{counts['paused_by_anomaly_rules']} employees paused by anomaly rules, "
            f"{counts['resumed_documents']} stalled documents asked to be read again, "
            f"{counts['emails_sent']} outbox emails sent on a retry, "
            f"{counts['emails_retrying']} to try again later, "
            f"{counts['emails_failed']} given up, "
            f"{counts['suspended_mcp_grants']} MCP grants suspended (their tool changed)."
        )
