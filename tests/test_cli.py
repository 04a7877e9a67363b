"""The `gozen` command as a whole: options anywhere, this host from $GOZEN_HOST, and one line (exit 1)
instead of a traceback when there is no database or it does not answer."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from gozen.cli import app
from gozen.cli.root import root_options_first
from tests.conftest import free_port

runner = CliRunner()


def gozen(*args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(
        app, list(args), env={"GOZEN_CONFIG": None, "GOZEN_HOST": None, "COLUMNS": "200", **(env or {})}
    )


def write(tmp_path: Path, data: dict[str, object]) -> str:
    f = tmp_path / "gozen.yaml"
    f.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "var"), **data}))
    return str(f)


def test_root_options_are_moved_before_the_subcommand() -> None:
    assert root_options_first(["queue", "ls", "--config", "x.yaml", "-v"]) == [
        "--config",
        "x.yaml",
        "-v",
        "queue",
        "ls",
    ]
    assert root_options_first(["queue", "submit", "--", "--config"]) == ["queue", "submit", "--", "--config"]
    assert root_options_first(["db", "upgrade", "--config=x.yaml"]) == ["--config=x.yaml", "db", "upgrade"]


def test_config_works_before_or_after_the_subcommand(tmp_path: Path) -> None:
    config = write(tmp_path, {})
    assert gozen("db", "upgrade", "--config", config).exit_code == 0
    for args in (
        ["--config", config, "queue", "ls"],
        ["queue", "ls", "--config", config],
        ["queue", "ls", "-c", config],
    ):
        r = gozen(*args)
        assert r.exit_code == 0, r.output
        assert "Recipes in the Queue (0)" in r.stdout


def test_outside_a_data_directory_a_command_says_which_database_it_would_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    r = gozen("transfer", "status")
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [
        f"gozen: no database at sqlite:///{tmp_path}/var/gozen.db: this directory has no gozen data (no --config or "
        "$GOZEN_CONFIG: the built-in simulated observatory keeps its data under ./var; `gozen up` starts it)"
    ]
    assert not (tmp_path / "var").exists()  # no new empty database left behind


def test_a_database_that_does_not_answer_is_one_line_without_its_password(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    config = write(tmp_path, {"database": {"url": f"postgresql://gozen:s3cret@127.0.0.1:{port}/test"}})
    for args in (["transfer", "status"], ["queue", "ls"], ["daq", "stats"], ["db", "upgrade"]):
        r = gozen("--config", config, *args)
        assert r.exit_code == 1, r.output
        assert r.stderr.splitlines() == [
            f"gozen: database unavailable (postgresql://gozen:***@127.0.0.1:{port}/test): connection refused"
        ], r.stderr
        assert "s3cret" not in r.output


def test_gozen_host_names_this_host_when_several_are_configured(tmp_path: Path) -> None:
    config = write(
        tmp_path, {"hosts": [{"name": "a1", "supervisor": {"port": 9101}}, {"name": "a2", "roles": ["web"]}]}
    )
    assert gozen("db", "upgrade", "-c", config).exit_code == 0
    r = gozen("transfer", "janitor", "--dry-run", "-c", config)
    assert r.exit_code == 2 and "pass --host" in r.stderr
    r = gozen("transfer", "janitor", "--dry-run", "-c", config, env={"GOZEN_HOST": "a2"})
    assert r.exit_code == 0, r.output
    assert "would delete 0 files" in r.stdout
    r = gozen("transfer", "janitor", "--dry-run", "-c", config, env={"GOZEN_HOST": "mars"})
    assert r.exit_code == 2 and "no host named 'mars'" in r.stderr
