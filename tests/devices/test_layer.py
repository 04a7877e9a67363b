"""Only gozen.devices talks to hardware: the Alpaca client is imported nowhere else."""

from __future__ import annotations

import ast
from pathlib import Path

import gozen

SRC = Path(gozen.__file__).parent
HARDWARE_CLIENTS = {"alpaca"}  # alpyca, the ASCOM Alpaca client


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_no_module_outside_devices_imports_a_hardware_client() -> None:
    offenders = [
        f"{path.relative_to(SRC)}: {sorted(found)}"
        for path in sorted(SRC.rglob("*.py"))
        if "devices" not in path.relative_to(SRC).parts[:1] and (found := imported_modules(path) & HARDWARE_CLIENTS)
    ]
    assert offenders == []
