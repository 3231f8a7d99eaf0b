"""Serve the workforce to an MCP client over stdio, acting as one person.

Who: a personal API token in the environment (`AIW_API_TOKEN`), the same token the HTTP endpoint
takes, so the person's own rules and revocation apply; or `--user NAME` for an operator on this
server (whoever can run manage.py here can already reach the database, so it grants nothing
new). There is no --token option: a secret on a command line shows in `ps` and shell history.
The identity is checked again on every call, so revoking the token or deactivating the person
stops a running server at its next call.
"""

from __future__ import annotations

import os

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections, connections

from aiworkforce.api_tokens import PREFIX_LENGTH, api_token_authenticate
from aiworkforce.mcp_server.tools import Identity, NotAuthenticated, build_server
from aiworkforce.mcp_server.workforce import Via

TOKEN_VARIABLE = "AIW_API_TOKEN"  # noqa: S105 - a variable name, not a secret
NO_IDENTITY = (
    f"mcp_serve acts as one person; say who: set {TOKEN_VARIABLE} to a personal API token "
    "(made on your Security page, under Personal API tokens), or, as an operator on this "
    "server, pass --user USERNAME."
)


class Command(BaseCommand):
    help = (
        f"Serve the workforce over MCP (stdio) as one person: {TOKEN_VARIABLE}=aiw_... "
        "mcp_serve, or mcp_serve --user USERNAME."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--user",
            metavar="USERNAME",
            help=f"Act as this active user (for an operator on the server; else {TOKEN_VARIABLE}).",
        )

    def handle(self, *args, user: str | None, **options) -> None:
        token = os.environ.get(TOKEN_VARIABLE, "").strip()
        if token and user:
            raise CommandError(f"Give either {TOKEN_VARIABLE} or --user, not both.")
        if token:
            identity = _token_identity(token)
        elif user:
            identity = _user_identity(user)
        else:
            raise CommandError(NO_IDENTITY)
        person = identity.user()
        server = build_server(lambda: identity)
        server.middleware.append(_fresh_database_connection)
        # stdout carries the protocol; anything for people goes to stderr.
        self.stderr.write(f"Serving the workforce over MCP (stdio) as {person.get_username()}.")
        # The tools use connections of their own threads: this one would sit idle for hours.
        connections.close_all()
        server.run("stdio")


def _token_identity(token: str) -> Identity:
    if api_token_authenticate(token) is None:
        raise CommandError(
            f"{TOKEN_VARIABLE} is not a valid API token: it was revoked, its owner deactivated, "
            "or it never existed. Make a new one on your Security page."
        )

    def current_user():
        person = api_token_authenticate(token)
        if person is None:
            raise NotAuthenticated(
                "This server's API token was revoked (or its owner deactivated): restart it "
                "with a valid token."
            )
        return person

    return Identity(
        user=current_user, via=Via(transport="stdio", token_prefix=token[:PREFIX_LENGTH])
    )


def _user_identity(username: str) -> Identity:
    model = get_user_model()
    if not model.objects.filter(username=username, is_active=True).exists():
        raise CommandError(f"No active user {username!r}.")

    def current_user():
        person = model.objects.filter(username=username, is_active=True).first()
        if person is None:
            raise NotAuthenticated(f"User {username!r} is no longer active.")
        return person

    return Identity(user=current_user, via=Via(transport="stdio"))


async def _fresh_database_connection(ctx, call_next):
    """A long-lived process: drop a broken or too old connection before each message, as Django
    does before each web request (in the one thread that runs every tool's database work)."""
    await sync_to_async(close_old_connections, thread_sensitive=True)()
    return await call_next(ctx)
