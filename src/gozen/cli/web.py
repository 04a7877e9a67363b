"""`gozen web hash-password | new-token`: credentials for gozen.yaml's web section."""

from __future__ import annotations

import secrets
from typing import Annotated

import typer

app = typer.Typer(help="Web users and API tokens.", no_args_is_help=True)


@app.command("hash-password")
def web_hash_password(
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
) -> None:
    """Print the password_hash to put under web.users in gozen.yaml."""
    from gozen.web.auth import hash_password

    typer.echo(hash_password(password))


@app.command("new-token")
def web_new_token(name: str) -> None:
    """Make an API token: prints the token (give it to the client) and the config lines (keep the hash)."""
    from gozen.web.auth import token_sha256

    token = secrets.token_urlsafe(32)
    typer.echo(
        f"token: {token}\nconfig:\n  web:\n    api_tokens:\n      - name: {name}\n"
        f"        token_sha256: {token_sha256(token)}\n        role: operator"
    )
