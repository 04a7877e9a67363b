"""DAQ writers keep within a volume's max_bytes quota as they would within a disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from gozen.config import parse_config
from gozen.daq.volumes import NoVolume, VolumeChooser

MiB = 2**20


def chooser(tmp_path: Path, quota1: int | None, quota2: int | None) -> VolumeChooser:
    cfg = parse_config(
        {
            "data_dir": str(tmp_path / "var"),
            "daq_volumes": [
                {"name": "vol1", "path": str(tmp_path / "vol1"), "max_bytes": quota1},
                {"name": "vol2", "path": str(tmp_path / "vol2"), "max_bytes": quota2},
            ],
            "daq": {"reserve_bytes": 0},
        }
    )
    return VolumeChooser(cfg, cfg.hosts[0].name)


def test_a_volume_at_its_quota_is_skipped_and_files_go_to_the_other(tmp_path: Path) -> None:
    volumes = chooser(tmp_path, 10 * MiB, None)
    (tmp_path / "vol1").mkdir()
    (tmp_path / "vol1" / "old.fits").write_bytes(b"\0" * (9 * MiB))
    chosen, skipped = volumes.choose(2 * MiB)
    assert chosen.name == "vol2"
    assert any(s.startswith("vol1: full") for s in skipped), skipped


def test_files_chosen_since_the_last_measurement_count_against_the_quota(tmp_path: Path) -> None:
    volumes = chooser(tmp_path, 5 * MiB, 5 * MiB)
    names = [volumes.choose(2 * MiB)[0].name for _ in range(4)]  # nothing written yet: only the choices count
    assert sorted(names) == ["vol1", "vol1", "vol2", "vol2"]
    with pytest.raises(NoVolume, match="full"):
        volumes.choose(2 * MiB)
