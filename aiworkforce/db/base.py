"""PostgreSQL backend for the embedded server: starts it (if needed) before each new connection.

Starting lazily, at connection time rather than at settings import, keeps commands that never
touch the database (`check`, `stop_db`) from starting a server.
"""

from __future__ import annotations

from django.db.backends.postgresql.base import DatabaseWrapper as PostgresDatabaseWrapper

from aiworkforce import embedded_db


class DatabaseWrapper(PostgresDatabaseWrapper):
    def get_connection_params(self) -> dict:
        params = super().get_connection_params()
        params["host"] = embedded_db.ensure_running()
        return params
