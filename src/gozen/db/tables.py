"""Table definitions (SQLAlchemy Core). Every table and column carries a comment,
because BI tools (Metabase, Grafana) read this schema directly; docs/database.md
is generated from these comments by `gozen db docs`."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from gozen.db.types import BigId, UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True, comment="Event number, increasing."),
    Column("time", UtcDateTime, nullable=False, comment="When it happened (UTC)."),
    Column("host", String(128), nullable=False, comment="Host where it happened (config hosts[].name)."),
    Column("source", String(64), nullable=False, comment="What reported it, e.g. supervisord, dfmonitor."),
    Column("kind", String(64), nullable=False, comment="What happened, e.g. process_exited, process_state."),
    Column("subject", String(256), nullable=False, comment="What it happened to, e.g. group:program or a volume."),
    Column("severity", String(16), nullable=False, comment="info, warning or error."),
    Column("message", Text, nullable=False, comment="One line for a person."),
    Column("data", JSON, nullable=True, comment="Details as reported (JSON)."),
    comment="Things that happened on any host: process state changes, faults, thresholds crossed.",
)
Index(None, events.c.time)
Index(None, events.c.kind, events.c.time)

exposures = Table(
    "exposures",
    metadata,
    Column(
        "exp_id", Integer, primary_key=True, autoincrement=True, comment="Exposure id (EXP_ID; 8 digits in file names)."
    ),
    Column("state", String(16), nullable=False, comment="queued, armed, done, incomplete or failed."),
    Column("object", String(128), nullable=False, comment="OBJECT: target or field name."),
    Column("data_type", String(16), nullable=False, comment="DATA-TYP: OBJECT, FLAT or DARK."),
    Column("obs_mode", String(32), nullable=False, comment="OBS-MOD, e.g. high-cadence survey."),
    Column("filter", String(16), nullable=False, comment="FILTER."),
    Column("project", String(64), nullable=False, comment="PROJECT."),
    Column("observer", String(64), nullable=False, comment="OBSERVER."),
    Column("n_frames", Integer, nullable=False, comment="Frames per chip (NAXIS3)."),
    Column("fps", Float, nullable=False, comment="Frames per second (DATA-FPS)."),
    Column("ra_deg", Float, nullable=True, comment="Requested pointing RA (deg, ICRS), if any."),
    Column("dec_deg", Float, nullable=True, comment="Requested pointing Dec (deg, ICRS), if any."),
    Column("recipe_uuid", String(36), nullable=True, comment="Queue recipe that asked for it."),
    Column("recipe_name", String(128), nullable=True, comment="Name of that recipe."),
    Column("requested_at", UtcDateTime, nullable=False, comment="When it was asked for."),
    Column("start_at", UtcDateTime, nullable=True, comment="GPS time of the first frame (set when armed)."),
    Column("end_at", UtcDateTime, nullable=True, comment="End of the last frame."),
    Column("finished_at", UtcDateTime, nullable=True, comment="When every chip's file was accounted for."),
    Column("chips", JSON, nullable=True, comment="Detector ids expected (set when armed)."),
    Column("snapshot", JSON, nullable=True, comment="Status at exposure start: the FITS header values."),
    Column(
        "stop_at",
        UtcDateTime,
        nullable=True,
        comment="When it was asked to stop early (unsafe weather, an abort): it ends at the next frame boundary.",
    ),
    Column("stop_reason", Text, nullable=True, comment="Why it was asked to stop early, and by whom."),
    comment="Exposures of the whole camera: one file per chip each.",
)
Index(None, exposures.c.state, exposures.c.exp_id)
Index(None, exposures.c.start_at)

daq_files = Table(
    "daq_files",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True, comment="File number."),
    Column("exp_id", Integer, ForeignKey("exposures.exp_id"), nullable=False, comment="Exposure (EXP_ID)."),
    Column("det_id", Integer, nullable=False, comment="Detector id (DET-ID)."),
    Column("state", String(16), nullable=False, comment="written, or lost (no file could be made)."),
    Column("path", Text, nullable=True, comment="Absolute path on the DAQ host."),
    Column("filename", String(64), nullable=False, comment="TMQ<q><YYYYMMDD><exp id><chip>.fits"),
    Column("daq_host", String(128), nullable=False, comment="Host that wrote it."),
    Column("daq_volume", String(128), nullable=True, comment="DAQ volume (config daq_volumes[].name)."),
    Column("size_bytes", BigInteger, nullable=False, comment="File size."),
    Column(
        "checksum_xxh3", String(16), nullable=True, comment="xxh3-64 of the whole file (hex), computed while writing."
    ),
    Column("frames_expected", Integer, nullable=False, comment="Frames the exposure asked for."),
    Column("frames_written", Integer, nullable=False, comment="Frames with pixels from the camera (damaged included)."),
    Column(
        "frames_missing",
        Integer,
        nullable=False,
        comment="Frames never received (camera miss, ring full, writer lost).",
    ),
    Column("frames_damaged", Integer, nullable=False, comment="Frames received with a link error."),
    Column("naxis1", Integer, nullable=False, comment="NAXIS1"),
    Column("naxis2", Integer, nullable=False, comment="NAXIS2"),
    Column("naxis3", Integer, nullable=False, comment="NAXIS3"),
    Column("writer", String(64), nullable=False, comment="Writer program that made it."),
    Column("created_at", UtcDateTime, nullable=False, comment="When it got its final name."),
    Column(
        "overscan_median",
        Float,
        nullable=True,
        comment="Median of the frames' overscan medians, ADU (NULL: a light-only readout has no overscan).",
    ),
    Column(
        "overscan_noise",
        Float,
        nullable=True,
        comment="Median of the frames' overscan noise (1.4826 x MAD), ADU (NULL: no overscan).",
    ),
    UniqueConstraint("exp_id", "det_id"),
    comment="FITS files written by the DAQ: one per chip per exposure.",
)
Index(None, daq_files.c.created_at)

quicklook = Table(
    "quicklook",
    metadata,
    Column("exp_id", Integer, ForeignKey("exposures.exp_id"), primary_key=True, comment="Exposure (EXP_ID)."),
    Column("det_id", Integer, primary_key=True, comment="Detector id (DET-ID)."),
    Column("daq_host", String(128), nullable=False, comment="DAQ host whose daq:quicklook made it."),
    Column("made_at", UtcDateTime, nullable=False, comment="When it was made."),
    Column("binning", Integer, nullable=False, comment="Pixels binned (mean) into one, on each axis."),
    Column("width", Integer, nullable=False, comment="Width of the binned picture, pixels."),
    Column("height", Integer, nullable=False, comment="Height of the binned picture, pixels."),
    Column("z1", Float, nullable=False, comment="Lower display limit (zscale), ADU."),
    Column("z2", Float, nullable=False, comment="Upper display limit (zscale), ADU."),
    Column("png", LargeBinary, nullable=False, comment="The binned first frame, 8-bit grey PNG scaled z1..z2."),
    Column("sky_adu", Float, nullable=True, comment="Median sky level of the first frame, ADU."),
    Column("noise_adu", Float, nullable=True, comment="Sky noise (background RMS) of the first frame, ADU."),
    Column("n_stars", Integer, nullable=True, comment="Sources detected (sep) on the first frame (NULL: not counted)."),
    Column(
        "fwhm_px",
        Float,
        nullable=True,
        comment="Median FWHM of those sources, unbinned pixels (NULL: none found or not measured).",
    ),
    comment="Quick look of each chip's first frame per exposure (daq:quicklook): a picture and sky statistics.",
)
Index(None, quicklook.c.made_at)

nightly_reports = Table(
    "nightly_reports",
    metadata,
    Column(
        "night", String(10), primary_key=True, comment="The night, named by the local date of its evening (YYYY-MM-DD)."
    ),
    Column("host", String(128), nullable=False, comment="Web host whose www:report made it (the files are there)."),
    Column("made_at", UtcDateTime, nullable=False, comment="When it was made."),
    Column("start_at", UtcDateTime, nullable=False, comment="Start of the span reported (UTC)."),
    Column("end_at", UtcDateTime, nullable=False, comment="End of the span reported (UTC)."),
    Column("path", Text, nullable=False, comment="Directory of its index.html and PNG plots on that host."),
    Column("exposures", Integer, nullable=False, comment="Exposures started in the night."),
    Column("frames", BigInteger, nullable=False, comment="Frames written (all chips)."),
    Column("frames_lost", BigInteger, nullable=False, comment="Frames missing or dropped (all chips)."),
    Column("bytes", BigInteger, nullable=False, comment="Bytes of FITS files written."),
    Column("summary", Text, nullable=False, comment="The one-line summary posted with the link."),
    Column("slack_state", String(16), nullable=False, comment="pending, posted, failed or off (no Slack to post to)."),
    Column("slack_error", Text, nullable=True, comment="Why the last post failed."),
    Column("posted_at", UtcDateTime, nullable=True, comment="When it was posted to Slack."),
    comment="Nightly reports (www:report): one per night, with its totals and whether it reached Slack.",
)

readout_reports = Table(
    "readout_reports",
    metadata,
    Column("exp_id", Integer, ForeignKey("exposures.exp_id"), primary_key=True, comment="Exposure."),
    Column("det_id", Integer, primary_key=True, comment="Detector id."),
    Column("readout", String(64), nullable=False, comment="Readout program."),
    Column("recognised", Boolean, nullable=False, comment="False: the chip did not answer at start."),
    Column("frames_read", Integer, nullable=False, comment="Frames the camera delivered."),
    Column("frames_missed", Integer, nullable=False, comment="Frames the camera did not deliver."),
    Column("frames_damaged", Integer, nullable=False, comment="Frames delivered with a link error."),
    Column("frames_dropped", Integer, nullable=False, comment="Frames lost because the ring to the writer was full."),
    Column("created_at", UtcDateTime, nullable=False, comment="When the readout finished the chip."),
    Column(
        "daq_host",
        String(128),
        nullable=True,
        comment="DAQ host of the readout (NULL: reported before the camera could be split over hosts).",
    ),
    comment="What each readout saw of each chip in each exposure.",
)

files = Table(
    "files",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True, comment="Catalog number."),
    Column("filename", String(64), nullable=False, unique=True, comment="File name (unique observatory-wide)."),
    Column("daq_file_id", BigInteger, nullable=True, comment="daq_files.id it came from (NULL: found by scanning)."),
    Column("exp_id", Integer, nullable=True, comment="Exposure (EXP_ID)."),
    Column("det_id", Integer, nullable=True, comment="Detector id."),
    Column("size_bytes", BigInteger, nullable=False, comment="Size."),
    Column("checksum_xxh3", String(16), nullable=False, comment="xxh3-64 (hex) every copy must match."),
    Column("daq_host", String(128), nullable=False, comment="DAQ host holding the original."),
    Column("daq_volume", String(128), nullable=True, comment="DAQ volume holding it."),
    Column("daq_path", Text, nullable=False, comment="Path of the original on the DAQ host."),
    Column(
        "daq_state",
        String(16),
        nullable=False,
        comment="present, deleted (by the janitor), or missing (gone from the DAQ volume without the janitor; "
        "found by audit).",
    ),
    Column("registered_at", UtcDateTime, nullable=False, comment="When transfer:push catalogued it."),
    Column("daq_deleted_at", UtcDateTime, nullable=True, comment="When the janitor removed the DAQ copy."),
    comment="The catalog: every file the DAQ wrote, registered once.",
)
Index(None, files.c.daq_state, files.c.registered_at)

replicas = Table(
    "replicas",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True, comment="Replica number."),
    Column("file_id", BigInteger, ForeignKey("files.id"), nullable=False, comment="The file (files.id)."),
    Column(
        "node", String(128), nullable=True, comment="Storage node (config storage_nodes[].name); NULL until placed."
    ),
    Column("path", Text, nullable=True, comment="Path on the node."),
    Column(
        "state",
        String(16),
        nullable=False,
        comment="queued, copying, copied (on the node and fsynced, waiting for its proof on the node's host), "
        "verified, failed, lost, or expired (removed by the node's retention).",
    ),
    Column("attempts", Integer, nullable=False, comment="Copies tried."),
    Column("last_error", Text, nullable=True, comment="Why the last attempt failed."),
    Column("claimed_by", String(128), nullable=True, comment="Agent copying it (host:program:pid)."),
    Column("claimed_at", UtcDateTime, nullable=True, comment="When it was claimed."),
    Column("next_try_at", UtcDateTime, nullable=True, comment="Not to be tried before this (backoff)."),
    Column("queued_at", UtcDateTime, nullable=False, comment="When it was queued."),
    Column("verified_at", UtcDateTime, nullable=True, comment="When its checksum was verified on the node."),
    Column("expired_at", UtcDateTime, nullable=True, comment="When retention removed it from the node."),
    Column(
        "proved_at",
        UtcDateTime,
        nullable=True,
        comment="When the copy was last proven whole: its checksum read from the node's disk on the node's own host "
        "(or, for a node without a gozen host, an rsync checksum pass). The janitor trusts only recent proofs.",
    ),
    UniqueConstraint("file_id", "node"),
    comment="Copies of catalogued files on storage nodes, and the copy jobs that make them.",
)
Index(None, replicas.c.state, replicas.c.next_try_at)
Index(None, replicas.c.file_id)

exports = Table(
    "exports",
    metadata,
    Column("file_id", BigInteger, ForeignKey("files.id"), primary_key=True, comment="The file (files.id)."),
    Column(
        "state",
        String(16),
        nullable=False,
        comment="not_selected (not for the archive), packaged, exported (sent and verified), "
        "acknowledged (the archive took it) or rejected (to be sent again).",
    ),
    Column("package", String(64), nullable=True, comment="Package name: <night>-<host>-<nnn>."),
    Column("night", String(8), nullable=True, comment="Observing night YYYYMMDD (from the file name)."),
    Column("data_type", String(16), nullable=True, comment="DATA-TYP from the header."),
    Column("project", String(64), nullable=True, comment="PROJECT from the header."),
    Column("manifest", JSON, nullable=True, comment="The file's manifest entry: size, checksum, key header values."),
    Column("source_path", Text, nullable=True, comment="Replica it was sent from."),
    Column("packaged_at", UtcDateTime, nullable=False, comment="When it was put in a package (or not selected)."),
    Column("exported_at", UtcDateTime, nullable=True, comment="When the archive copy was verified."),
    Column("acknowledged_at", UtcDateTime, nullable=True, comment="When the archive's receipt named it."),
    Column("last_error", Text, nullable=True, comment="Why the last send or the archive refused it."),
    comment="Export of raw files to the public archive, in nightly packages with manifests.",
)
Index(None, exports.c.state, exports.c.package)

status = Table(
    "status",
    metadata,
    Column(
        "key", String(128), primary_key=True, comment="What is measured, e.g. df.node0.used_pct, weather.humidity_pct."
    ),
    Column("value", JSON, nullable=True, comment="Latest value (number, text or true/false)."),
    Column("unit", String(16), nullable=False, comment="Unit, e.g. %, B, degC."),
    Column("source", String(64), nullable=False, comment="Program that measured it, e.g. storage:dfmonitor."),
    Column("time", UtcDateTime, nullable=False, comment="When it was measured (UTC)."),
    Column("max_age_s", Float, nullable=False, comment="Older than this, the value is stale."),
    comment="The status board: the latest value of everything monitored.",
)

status_history = Table(
    "status_history",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True, comment="Reading number."),
    Column("key", String(128), nullable=False, comment="status.key"),
    Column("value", JSON, nullable=True, comment="Value then."),
    Column("time", UtcDateTime, nullable=False, comment="When it was measured (UTC)."),
    comment="Every reading of the status board, for plots and BI tools.",
)
Index(None, status_history.c.key, status_history.c.time)

recipes = Table(
    "recipes",
    metadata,
    Column("uuid", String(36), primary_key=True, comment="Recipe UUID (given or assigned at submission)."),
    Column("name", String(128), nullable=False, comment="Recipe name, e.g. Queue-Observer INB 11 45+01."),
    Column("priority", String(16), nullable=False, comment="low, normal, high or interrupt."),
    Column("priority_rank", Integer, nullable=False, comment="0 interrupt, 1 high, 2 normal, 3 low: ordering key."),
    Column(
        "state",
        String(16),
        nullable=False,
        comment="queued, executing, done, failed, aborted, interrupted, expired or cancelled.",
    ),
    Column("project", String(64), nullable=False, comment="PROJECT."),
    Column("observer", String(64), nullable=False, comment="OBSERVER."),
    Column("not_before", UtcDateTime, nullable=True, comment="Window start (UTC)."),
    Column("not_after", UtcDateTime, nullable=True, comment="Window end (UTC): expires after it."),
    Column("ra_deg", Float, nullable=True, comment="First target RA (deg), for scheduling."),
    Column("dec_deg", Float, nullable=True, comment="First target Dec (deg), for scheduling."),
    Column("body", JSON, nullable=False, comment="The recipe as validated (JSON)."),
    Column("progress", JSON, nullable=True, comment="Steps done and exposures done in the current step."),
    Column("submitted_at", UtcDateTime, nullable=False, comment="When it was submitted."),
    Column("submitted_by", String(64), nullable=False, comment="Who submitted it (user, token or cli)."),
    Column("started_at", UtcDateTime, nullable=True, comment="When it last started executing."),
    Column("finished_at", UtcDateTime, nullable=True, comment="When it ended (done, failed, aborted, ...)."),
    Column("message", Text, nullable=True, comment="Outcome or why it waits / failed."),
    Column(
        "revision",
        Integer,
        nullable=False,
        server_default="0",
        comment="0 as submitted; +1 each time a queued recipe is changed (moved up, updated by a new alert).",
    ),
    comment="Queue recipes: what remote observers submitted, and where each stands.",
)
Index(None, recipes.c.state, recipes.c.priority_rank, recipes.c.submitted_at)
Index(None, recipes.c.state, recipes.c.uuid)

recipe_events = Table(
    "recipe_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True, comment="Event number."),
    Column("recipe_uuid", String(36), nullable=False, comment="recipes.uuid"),
    Column("time", UtcDateTime, nullable=False, comment="When (UTC)."),
    Column(
        "kind",
        String(32),
        nullable=False,
        comment="submitted, started, step, preempted, interrupted, requeued, done, failed, aborted, cancelled, "
        "expired.",
    ),
    Column("message", Text, nullable=False, comment="One line for a person."),
    comment="The full history of every recipe.",
)
Index(None, recipe_events.c.recipe_uuid, recipe_events.c.id)

queue_state = Table(
    "queue_state",
    metadata,
    Column("key", String(64), primary_key=True, comment="mode, paused, server, activity."),
    Column("value", JSON, nullable=True, comment="Its value (JSON)."),
    Column("updated_at", UtcDateTime, nullable=False, comment="When it was set."),
    comment="The queue server's state: mode (normal / maintenance), paused, pid and what it is doing.",
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True, comment="Alert number."),
    Column("feed", String(16), nullable=False, comment="cneos, gaia, maxi or mpec."),
    Column("key", String(128), nullable=False, comment="Its identity in the feed (designation + time, name, id)."),
    Column("title", String(256), nullable=False, comment="Name or designation."),
    Column("event_time", UtcDateTime, nullable=True, comment="When it happened (close approach, alert, issue)."),
    Column("ra_deg", Float, nullable=True, comment="Position RA (deg), if any."),
    Column("dec_deg", Float, nullable=True, comment="Position Dec (deg), if any."),
    Column("data", JSON, nullable=False, comment="Its fields as read from the feed."),
    Column("seen_at", UtcDateTime, nullable=False, comment="When a courier first read it."),
    Column("followup_uuid", String(36), nullable=True, comment="The queue recipe a follow-up rule made of it."),
    UniqueConstraint("feed", "key"),
    comment="What the alert feeds said, each once: a restarted courier never posts twice.",
)
Index(None, alerts.c.feed, alerts.c.seen_at)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True, comment="Message number."),
    Column("kind", String(32), nullable=False, comment="cneos, gaia, mpec, failure, snippet ... (for routing)."),
    Column("notifier", String(64), nullable=False, comment="config notifiers[].name it goes to."),
    Column("text", Text, nullable=False, comment="Plain text (also the fallback of rich messages)."),
    Column("blocks", JSON, nullable=True, comment="Slack Block Kit blocks, if any."),
    Column(
        "state",
        String(16),
        nullable=False,
        comment="pending, sent, failed (given up) or unrouted (no notifier takes its kind: never posted).",
    ),
    Column("attempts", Integer, nullable=False, comment="Posts tried."),
    Column("next_try_at", UtcDateTime, nullable=False, comment="Not to be tried before this (backoff)."),
    Column("created_at", UtcDateTime, nullable=False, comment="When it was made."),
    Column("sent_at", UtcDateTime, nullable=True, comment="When the service took it."),
    Column("last_error", Text, nullable=True, comment="Why the last post failed."),
    comment="Messages to Slack and other services: kept until delivered, retried with backoff.",
)
Index(None, outbox.c.state, outbox.c.next_try_at)

feed_state = Table(
    "feed_state",
    metadata,
    Column("feed", String(16), primary_key=True, comment="cneos, gaia, maxi or mpec."),
    Column("etag", String(256), nullable=True, comment="ETag of the last response (conditional GET)."),
    Column("last_modified", String(64), nullable=True, comment="Last-Modified of the last response."),
    Column("checked_at", UtcDateTime, nullable=False, comment="When it was last read."),
    Column("status", String(256), nullable=False, comment="ok, not modified, or what went wrong."),
    Column("cursor", BigInteger, nullable=True, comment="For feed 'events': the last event turned into messages."),
    comment="Each feed's last read, for conditional GETs and the Alerts page.",
)
