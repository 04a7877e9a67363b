"""Where the CLI prints: stdout for results, stderr for errors and warnings."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: message` and return the Exit to raise (2: bad input, 1: the command failed)."""
    # Messages quote config values and YAML text: `[...]` in them is text, never rich markup.
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, markup=True)
    return typer.Exit(code)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, markup=True)


def say(message: str) -> None:
    """One plain line on stderr, `gozen: ...` (no markup: it may quote anything)."""
    err.print(f"gozen: {message}", markup=False, highlight=False)
