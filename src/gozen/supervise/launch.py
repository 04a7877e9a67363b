"""`gozen run GROUP:NAME`: give a program of the registry its Context and start its entry."""

from __future__ import annotations

import inspect

from gozen.config import Config
from gozen.service import Service, make_context, run_service
from gozen.supervise.programs import Program, find_program, load_entry


def is_entry(entry: object) -> bool:
    """A Service subclass, or a function taking the Context alone."""
    if isinstance(entry, type):
        return issubclass(entry, Service)
    if not callable(entry):
        return False
    params = list(inspect.signature(entry).parameters.values())
    return len(params) == 1 and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD)


def run_program(cfg: Config, name: str) -> int:
    """Run the program named `GROUP:NAME` in this process until it stops; its exit code."""
    program = find_program(cfg, name)
    return start(cfg, program)


def start(cfg: Config, program: Program) -> int:
    entry = load_entry(program)
    if not is_entry(entry):
        raise TypeError(f"{program.full_name}: {program.entry} is neither a Service nor a function main(ctx)")
    ctx = make_context(cfg, program.full_name, dict(program.args))
    if isinstance(entry, type):
        return run_service(entry(ctx))
    try:
        entry(ctx)
    except KeyboardInterrupt:
        pass  # Ctrl-C at `gozen up` reaches the whole process group: stop quietly
    return 0
