"""Secrets out of gozen.yaml: `${ENV_VAR}` anywhere, `KEY_file: PATH` for a secret key; `config show` masks them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gozen.config import ConfigError, load_config

PG = "postgresql://gozen:s3cret-pw@127.0.0.1:5432/gozen"


def gozen(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gozen", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "gozen.yaml"
    f.write_text(f"data_dir: {tmp_path / 'var'}\n{text}")
    return f


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_an_environment_variable_gives_a_whole_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOZEN_TEST_DB", PG)
    cfg = load_config(write(tmp_path, 'database: {url: "${GOZEN_TEST_DB}"}\n'))
    assert cfg.database_url == PG


def test_an_environment_variable_can_sit_inside_a_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOZEN_TEST_PW", "s3cret-pw")
    cfg = load_config(write(tmp_path, 'database: {url: "postgresql://gozen:${GOZEN_TEST_PW}@127.0.0.1:5432/gozen"}\n'))
    assert cfg.database_url == PG


def test_a_doubled_dollar_is_a_literal_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME_OF_X", "expanded")
    cfg = load_config(write(tmp_path, 'site: {name: "Kiso $${HOME_OF_X} ${HOME_OF_X}"}\n'))
    assert cfg.site.name == "Kiso ${HOME_OF_X} expanded"


def test_a_missing_environment_variable_names_the_key_and_the_variable(tmp_path: Path) -> None:
    f = write(tmp_path, 'hosts: [{name: a, supervisor: {password: "${GOZEN_TEST_UNSET_VAR}"}}]\n')
    os.environ.pop("GOZEN_TEST_UNSET_VAR", None)
    with pytest.raises(ConfigError, match=r"hosts\[0\]\.supervisor\.password: the environment variable "):
        load_config(f)
    r = gozen("config", "check", str(f))
    assert r.returncode == 2
    assert "hosts[0].supervisor.password: the environment variable GOZEN_TEST_UNSET_VAR is not set" in r.stderr


def test_an_unclosed_reference_is_an_error_not_a_literal(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"site\.name: an unclosed \$\{"):
        load_config(write(tmp_path, 'site: {name: "Kiso ${HOME"}\n'))


def test_a_secret_file_relative_to_the_config_gives_the_value_without_its_newline(tmp_path: Path) -> None:
    secret_file(tmp_path / "secrets" / "db-url", PG + "\n")
    cfg = load_config(write(tmp_path, "database: {url_file: secrets/db-url}\n"))
    assert cfg.database_url == PG
    assert cfg.secret_files == {"database.url_file": tmp_path / "secrets" / "db-url"}


def test_every_secret_key_takes_a_file(tmp_path: Path) -> None:
    names = ("sup", "rsync", "hook", "bot", "gcn", "web")
    s = {name: secret_file(tmp_path / name, f"{name}-value\n") for name in names}
    cfg = load_config(
        write(
            tmp_path,
            f"hosts: [{{name: a, supervisor: {{password_file: {s['sup']}}}}}]\n"
            f"transfer: {{rsync_password_file: {s['rsync']}}}\n"
            f"notifiers: [{{name: ops, url_file: {s['hook']}, bot_token_file: {s['bot']}}}]\n"
            f"couriers: {{gcn: {{client_id: me, client_secret_file: {s['gcn']}}}}}\n"
            f"web: {{session_secret_file: {s['web']}}}\n",
        )
    )
    from gozen.supervise.access import supervisor_password

    assert supervisor_password(cfg.hosts[0]) == "sup-value"  # supervisor.password_file: its own, older key
    assert cfg.transfer.rsync_password == cfg.rsync_password() == "rsync-value"
    assert (cfg.notifiers[0].url, cfg.notifiers[0].bot_token) == ("hook-value", "bot-value")
    assert cfg.couriers.gcn is not None and cfg.couriers.gcn.client_secret == "gcn-value"
    assert cfg.web.session_secret == "web-value"


def test_an_unreadable_secret_file_names_the_key_and_the_file(tmp_path: Path) -> None:
    f = write(tmp_path, "web: {session_secret_file: /nonexistent/gozen-secret}\n")
    r = gozen("config", "check", str(f))
    assert r.returncode == 2
    assert "web.session_secret_file: cannot read /nonexistent/gozen-secret: No such file or directory" in r.stderr


def test_a_secret_and_its_file_together_are_refused(tmp_path: Path) -> None:
    secret_file(tmp_path / "pw", "x" * 20)
    with pytest.raises(ConfigError, match=r"transfer\.rsync_password_file: give either rsync_password or"):
        load_config(write(tmp_path, "transfer: {rsync_password: abc, rsync_password_file: pw}\n"))


def test_a_file_for_a_key_that_is_no_secret_is_an_unknown_key(tmp_path: Path) -> None:
    secret_file(tmp_path / "name", "Kiso")
    with pytest.raises(ConfigError, match=r"site\.name_file: unknown key"):
        load_config(write(tmp_path, "site: {name_file: name}\n"))


def test_config_check_warns_about_a_secret_file_others_can_read(tmp_path: Path) -> None:
    secret_file(tmp_path / "db-url", PG, mode=0o644)
    r = gozen("config", "check", str(write(tmp_path, "database: {url_file: db-url}\n")))
    assert r.returncode == 0, r.stderr
    assert f"database.url_file: {tmp_path / 'db-url'} can be read by other users (chmod 600 it)" in r.stderr
    (tmp_path / "db-url").chmod(0o600)
    assert "can be read by other users" not in gozen("config", "check", str(tmp_path / "gozen.yaml")).stderr


def test_config_show_masks_every_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = write(
        tmp_path,
        f"database: {{url: '{PG}'}}\n"
        "hosts: [{name: a, supervisor: {password: sup-s3cret-value}}]\n"
        "transfer: {rsync_password: rsync-s3cret-value}\n"
        "notifiers: [{name: ops, url: 'https://hooks.slack.com/services/T0/B0/s3cret', bot_token: xoxb-s3cret}]\n"
        "couriers: {gcn: {client_id: me, client_secret: gcn-s3cret}}\n"
        "web: {session_secret: web-s3cret}\n",
    )
    r = gozen("--config", str(f), "config", "show")
    assert r.returncode == 0, r.stderr
    assert "s3cret" not in r.stdout
    assert "url: postgresql://gozen:***@127.0.0.1:5432/gozen" in r.stdout
    assert r.stdout.count("'***'") == 6, r.stdout  # supervisor, rsync, webhook, bot token, GCN, session
    assert "client_id: me" in r.stdout  # the rest is shown as it is
