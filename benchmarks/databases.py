"""Each benchmark's own database on the embedded server, so tests and the demo are left alone."""

from __future__ import annotations


def bench_database_url(name: str) -> str:
    """The URL of database `name` on the embedded server, created if missing."""
    from urllib.parse import quote

    import psycopg

    from aiworkforce import embedded_db

    socket_dir = embedded_db.ensure_running()
    with psycopg.connect(
        host=socket_dir, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgres://postgres@{quote(socket_dir, safe='')}/{name}"
