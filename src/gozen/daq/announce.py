"""An exposure announced in the ring: the BEGIN slots a readout puts before an exposure's frames.

They carry the exposure's whole ExposureInfo (JSON, compressed: the status snapshot holds the
whole board), so a writer learns what its header needs from the ring, not from the database:
frames that come while the database is slow or away are written all the same. An announcement
larger than a frame spans several slots. A writer that did not see it (restarted after it was
taken) asks the database instead.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

from gozen.daq.headers import ExposureInfo
from gozen.daq.ring import BEGIN, Ring, SlotMeta
from gozen.daq.snapshot import StatusSnapshot


def encode(exp: ExposureInfo) -> bytes:
    data: dict[str, Any] = {f.name: getattr(exp, f.name) for f in fields(ExposureInfo)}
    data["start_at"] = exp.start_at.isoformat()
    data["snapshot"] = exp.snapshot.to_json()
    return zlib.compress(json.dumps(data, ensure_ascii=False).encode(), 1)


def decode(payload: bytes) -> ExposureInfo:
    data = json.loads(zlib.decompress(payload))
    data["start_at"] = datetime.fromisoformat(data["start_at"])
    data["snapshot"] = StatusSnapshot.from_json(data["snapshot"])
    return ExposureInfo(**data)


def announce(ring: Ring, exp: ExposureInfo) -> bool:
    """Put the exposure in the ring before its frames; False when the ring is full: its writer then
    asks the database."""
    return ring.publish_bytes(BEGIN, encode(exp), exp_id=exp.exp_id, n_frames=exp.n_frames)


class Announcements:
    """A writer's view of the BEGIN slots: the parts of each ring's announcement, put together."""

    def __init__(self) -> None:
        self._parts: dict[Path, list[bytes]] = {}

    def take(self, ring: Ring, meta: SlotMeta) -> ExposureInfo | None:
        """This part; the exposure once its last part is in (None before, or when a part is missing:
        the writer started after the first ones were taken, and asks the database)."""
        parts = self._parts.setdefault(ring.path, [])
        if meta.index == 0:
            parts.clear()
        if meta.index != len(parts):
            parts.clear()
            return None
        parts.append(ring.payload(meta))
        if len(parts) < meta.parts:
            return None
        payload = b"".join(parts)
        parts.clear()
        return decode(payload)
