from __future__ import annotations

import os

from django.apps import AppConfig

# Pools a forked child inherited: kept referenced, because closing them (or letting them be
# collected) would close sockets the parent process is still using.
_INHERITED_POOLS: list = []


def _forget_inherited_pools() -> None:
    """After a fork (django-q2 forks its workers) a child must open connections of its own."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    _INHERITED_POOLS.extend(DatabaseWrapper._connection_pools.values())
    DatabaseWrapper._connection_pools.clear()


class AiWorkforceConfig(AppConfig):
    name = "aiworkforce"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        os.register_at_fork(after_in_child=_forget_inherited_pools)
