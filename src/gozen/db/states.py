"""Every state column's values, as `StrEnum`s: compare and store members, never bare strings.

A member *is* its string (`ReplicaState.VERIFIED == "verified"`), so rows written before these
existed read back equal, and BI tools see the same words the table comments document.
"""

from __future__ import annotations

from enum import StrEnum


class ExposureState(StrEnum):
    """exposures.state"""

    QUEUED = "queued"
    ARMED = "armed"
    DONE = "done"
    INCOMPLETE = "incomplete"
    FAILED = "failed"


class DaqFileState(StrEnum):
    """daq_files.state: a file the writer made, or one it could not make."""

    WRITTEN = "written"
    LOST = "lost"


class DaqCopyState(StrEnum):
    """files.daq_state: the original on the DAQ volume."""

    PRESENT = "present"
    DELETED = "deleted"  # by the janitor
    MISSING = "missing"  # gone without the janitor; found by audit


class ReplicaState(StrEnum):
    """replicas.state"""

    QUEUED = "queued"
    COPYING = "copying"
    COPIED = "copied"  # on the node and fsynced, waiting for its proof read on the node's own host
    VERIFIED = "verified"
    FAILED = "failed"
    LOST = "lost"
    EXPIRED = "expired"  # removed by the node's retention


class ExportState(StrEnum):
    """exports.state"""

    NOT_SELECTED = "not_selected"
    PACKAGED = "packaged"
    EXPORTED = "exported"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"


class RecipeState(StrEnum):
    """recipes.state"""

    QUEUED = "queued"
    EXECUTING = "executing"
    DONE = "done"
    FAILED = "failed"
    ABORTED = "aborted"
    INTERRUPTED = "interrupted"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class QueueMode(StrEnum):
    """queue_state['mode']"""

    NORMAL = "normal"
    MAINTENANCE = "maintenance"


class OutboxState(StrEnum):
    """outbox.state"""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # given up
    UNROUTED = "unrouted"  # no notifier takes its kind: kept, shown, never posted


class Severity(StrEnum):
    """events.severity"""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
