"""Every benchmark in bench/ still runs: each script, found by itself, in its --smoke mode (tiny sizes)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
RATIO = re.compile(r"\d(\.\d+)?x\b|\d%")


def bench_modules() -> list[Path]:
    return sorted(BENCH.glob("*.py"))


def bench_scripts() -> list[Path]:
    """The runnable ones; the rest (cubes.py) are modules the scripts import."""
    return [p for p in bench_modules() if 'if __name__ == "__main__":' in p.read_text()]


def test_bench_folder_has_scripts() -> None:
    assert len(bench_scripts()) >= 5, [p.name for p in bench_modules()]


@pytest.mark.parametrize("module", bench_modules(), ids=lambda p: p.name)
def test_bench_module_shadows_no_other_module(module: Path) -> None:
    # A script's folder comes first on sys.path: bench/queue.py once hid the standard library's
    # queue from every benchmark (astropy imports it), and all of them died at import.
    name = module.stem
    assert name not in sys.stdlib_module_names, f"bench/{module.name} hides the standard library's {name}"
    assert importlib.util.find_spec(name) is None, f"bench/{module.name} hides the installed module {name}"


@pytest.mark.parametrize("script", bench_scripts(), ids=lambda p: p.name)
def test_bench_script_is_named_for_a_benchmark(script: Path) -> None:
    assert script.name.endswith("_bench.py"), f"bench/{script.name}: name benchmark scripts <what>_bench.py"


# Live: the scripts start gozen's programs and supervisord hosts; CI runs them one at a time, not
# beside other tests (.ci/run runs the tests not marked live two at a time).
@pytest.mark.live
@pytest.mark.parametrize("script", bench_scripts(), ids=lambda p: p.name)
def test_bench_script_runs_in_smoke_mode(script: Path, tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    try:
        r = subprocess.run(
            [sys.executable, str(script), "--smoke"],
            cwd=tmp_path,  # relative default dirs (var/...) land here
            capture_output=True,
            text=True,
            timeout=900,  # seconds when idle; generous for a machine with both cores busy
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        output = _tail(e.stdout, e.stderr)
        raise AssertionError(f"{script.name} --smoke still running after 900 s; output:\n{output}") from None
    assert r.returncode == 0, f"{script.name} --smoke exited {r.returncode}:\n{_tail(r.stdout, r.stderr)}"
    assert RATIO.search(r.stdout), f"{script.name} --smoke printed no ratio:\n{_tail(r.stdout, r.stderr)}"


def _tail(stdout: str | bytes | None, stderr: str | bytes | None, lines: int = 40) -> str:
    def text(s: str | bytes | None) -> str:
        return s.decode(errors="replace") if isinstance(s, bytes) else (s or "")

    out = "\n".join(text(stdout).splitlines()[-lines:])
    err = "\n".join(text(stderr).splitlines()[-lines:])
    return f"--- stdout (tail)\n{out}\n--- stderr (tail)\n{err}"
