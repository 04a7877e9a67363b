"""Placeholder until built (issue 16)."""

from __future__ import annotations

import typer

app = typer.Typer()
