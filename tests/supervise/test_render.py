"""supervisord.conf rendered from gozen.yaml."""

from __future__ import annotations

import configparser
from pathlib import Path

from gozen import __version__
from gozen.config import parse_config
from gozen.supervise.render import render_supervisord_conf


def test_programs_are_named_group_program_and_logs_are_per_host(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "data_dir": str(tmp_path),
            "hosts": [
                {
                    "name": "gozen-master",
                    "roles": ["web"],
                    "supervisor": {"port": 9101, "password": "p%ss"},
                    "programs": [{"group": "bi", "name": "metabase", "command": "java -jar 'metabase 1.jar'"}],
                },
                {"name": "buf0", "roles": [], "supervisor": {"port": 9102}},
            ],
        }
    )
    text = render_supervisord_conf(cfg, cfg.host("gozen-master"), tmp_path / "gozen.yaml", tmp_path)
    ini = configparser.RawConfigParser()
    ini.read_string(text)
    assert ini["inet_http_server"]["port"] == "127.0.0.1:9101"
    assert ini["inet_http_server"]["password"] == "p%%ss"  # supervisord expands %(..)s
    assert ini["group:www"]["programs"] == "www-dashboard,www-report"
    assert ini["program:www-dashboard"]["process_name"] == "dashboard"
    assert ini["program:www-dashboard"]["command"].endswith("-m gozen run www:dashboard")
    assert ini["program:bi-metabase"]["command"] == "java -jar 'metabase 1.jar'"
    assert ini["eventlistener:supervise"]["events"] == "PROCESS_STATE,TICK_60"
    assert "gozen-master-www-dashboard.out.log" in ini["program:www-dashboard"]["stdout_logfile"]
    assert f'GOZEN_CONFIG="{tmp_path / "gozen.yaml"}"' in ini["supervisord"]["environment"]
    assert ini["supervisord"]["identifier"] == f"gozen-{__version__}-gozen-master"  # `gozen fleet check` reads it

    buf = render_supervisord_conf(cfg, cfg.host("buf0"), None, tmp_path)
    assert "www-dashboard" not in buf and "GOZEN_CONFIG" not in buf and "[eventlistener:supervise]" in buf
