"""The order supervisord starts and stops gozen's groups in, as supervisord itself reads the rendered conf."""

from __future__ import annotations

from pathlib import Path

from supervisor.options import ServerOptions

from gozen.config import parse_config
from gozen.supervise.render import render_supervisord_conf


def test_device_simulators_start_before_and_stop_after_the_monitors_that_read_them(tmp_path: Path) -> None:
    cfg = parse_config({"data_dir": str(tmp_path)})  # the simulated observatory
    (tmp_path / "log").mkdir()
    conf = tmp_path / "supervisord.conf"
    conf.write_text(render_supervisord_conf(cfg, cfg.hosts[0], None, tmp_path))
    opts = ServerOptions()
    opts.configfile = str(conf)
    opts.process_config(do_usage=False)
    priority = {g.name: g.priority for g in opts.process_group_configs}
    assert priority["sim"] < priority["monitor"], priority  # started first, stopped last
    programs = {g: p for g, p in priority.items() if g not in ("sim", "supervise")}  # supervise: the listener
    assert priority["sim"] < min(programs.values()), priority
