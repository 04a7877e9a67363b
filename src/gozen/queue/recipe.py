"""Observation recipes: what a remote observer submits, validated field by field (JSON Schema published).

name: Queue-Observer INB 11 45+01
priority: normal            # low | normal | high | interrupt (a target of opportunity)
window: {not_before: 2026-11-25T10:00:00Z, not_after: 2026-11-25T20:00:00Z}
constraints: {min_alt_deg: 30, max_sun_alt_deg: -12, min_moon_sep_deg: 20, safe_weather: true}
steps:
  - slew: {ra_deg: 176.25, dec_deg: 1.0}      # or {field: INB-11}
  - expose: {object: INB 11 45+01, frames: 12, fps: 2, count: 3}
  - park: {}
"""

from __future__ import annotations

import uuid as uuidlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gozen.config import format_validation_error
from gozen.daq.cardtext import card_text_problem
from gozen.yamltext import YamlTextError, load_yaml_text

Priority = Literal["low", "normal", "high", "interrupt"]
PRIORITY_RANK: dict[str, int] = {"interrupt": 0, "high": 1, "normal": 2, "low": 3}
PRIORITY_OF_RANK: dict[int, str] = {rank: name for name, rank in PRIORITY_RANK.items()}


class RecipeError(Exception):
    """A recipe that cannot be taken: the message names every wrong field by its path."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Validation context of a recipe entering the queue (parse_recipe). Recipes already stored are
# read without it, so one stored before a check existed still loads (and fails at its step).
ENTRY: dict[str, bool] = {"entry": True}


def _header_text(v: str, info: ValidationInfo) -> str:
    """A value bound for a FITS header card: refused at entry if astropy could not write it."""
    if info.context and info.context.get("entry"):
        problem = card_text_problem(v)
        if problem is not None:
            raise ValueError(problem)
    return v


class Window(Model):
    not_before: datetime | None = Field(None, description="Not to start before this (UTC).")
    not_after: datetime | None = Field(None, description="Not to start after this (UTC); then it expires.")

    @field_validator("not_before", "not_after")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-11-25T12:00:00Z")
        return v.astimezone(UTC) if v else v

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.not_before and self.not_after and self.not_after <= self.not_before:
            raise ValueError("not_after must be later than not_before")
        return self


class Constraints(Model):
    min_alt_deg: float | None = Field(30.0, ge=0, le=90, description="Target at least this high.")
    max_airmass: float | None = Field(None, ge=1, le=10, description="Target at most this airmass.")
    max_sun_alt_deg: float | None = Field(None, ge=-90, le=90, description="The Sun at most this high.")
    min_moon_sep_deg: float | None = Field(None, ge=0, le=180, description="At least this far from the Moon.")
    safe_weather: bool = Field(True, description="Only while the safety monitor says safe to observe.")


class SlewArgs(Model):
    ra_deg: float | None = Field(None, ge=0, lt=360, description="Right ascension (ICRS, degrees).")
    dec_deg: float | None = Field(None, ge=-90, le=90, description="Declination (ICRS, degrees).")
    field: str | None = Field(None, description="A named field from the config's queue.fields.")

    @model_validator(mode="after")
    def _one_target(self) -> SlewArgs:
        if self.field is None and (self.ra_deg is None or self.dec_deg is None):
            raise ValueError("give ra_deg and dec_deg, or field")
        if self.field is not None and (self.ra_deg is not None or self.dec_deg is not None):
            raise ValueError("give ra_deg and dec_deg, or field, not both")
        return self


class ExposeArgs(Model):
    object: str = Field(..., min_length=1, max_length=68, description="OBJECT: target or field name (printable ASCII).")
    frames: int = Field(12, ge=1, le=10000, description="Frames per exposure (NAXIS3).")
    fps: float = Field(2.0, gt=0, le=100, description="Frames per second.")
    count: int = Field(1, ge=1, le=10000, description="Exposures.")
    data_type: Literal["OBJECT", "FLAT", "DARK"] = Field("OBJECT", description="DATA-TYP.")
    dither_arcsec: float = Field(0.0, ge=0, le=3600, description="Offset between exposures (a square pattern).")

    @field_validator("object")
    @classmethod
    def _header(cls, v: str, info: ValidationInfo) -> str:
        return _header_text(v, info)


class WaitArgs(Model):
    seconds: float = Field(..., gt=0, le=86400, description="How long to wait.")


class Empty(Model):
    pass


class SlewStep(Model):
    slew: SlewArgs


class ExposeStep(Model):
    expose: ExposeArgs


class WaitStep(Model):
    wait: WaitArgs


class ParkStep(Model):
    park: Empty = Field(default_factory=Empty)


class ShutdownStep(Model):
    shutdown: Empty = Field(default_factory=Empty, description="Stop the queue server cleanly.")


STEP_KINDS = ("slew", "expose", "wait", "park", "shutdown")


def _step_kind(v: Any) -> str | None:
    if isinstance(v, dict) and len(v) == 1 and next(iter(v)) in STEP_KINDS:
        return str(next(iter(v)))
    if isinstance(v, BaseModel):
        return next(iter(type(v).model_fields))
    return None


Step = Annotated[
    Annotated[SlewStep, Tag("slew")]
    | Annotated[ExposeStep, Tag("expose")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[ParkStep, Tag("park")]
    | Annotated[ShutdownStep, Tag("shutdown")],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message=f"a step is a mapping with one key: one of {', '.join(STEP_KINDS)}",
    ),
]


class Recipe(Model):
    name: str = Field(
        ...,
        min_length=1,
        max_length=128,
        description="Shown on the queue page and in headers (RECIPE: printable ASCII, at most 68 characters).",
    )
    uuid: str = Field(default_factory=lambda: str(uuidlib.uuid4()), description="Assigned when absent.")
    description: str = Field("", max_length=2000, description="For people.")
    project: str = Field("survey", max_length=64, description="PROJECT (printable ASCII).")
    observer: str = Field("queue", max_length=64, description="OBSERVER (printable ASCII).")
    priority: Priority = Field("normal", description="interrupt preempts the running recipe at its next step.")
    window: Window = Field(default_factory=Window, description="When it may start.")
    constraints: Constraints = Field(default_factory=Constraints, description="Sky and weather conditions.")
    steps: list[Step] = Field(..., min_length=1, description="Done in order.")

    @field_validator("name", "project", "observer")
    @classmethod
    def _header(cls, v: str, info: ValidationInfo) -> str:
        return _header_text(v, info)

    @field_validator("uuid")
    @classmethod
    def _uuid(cls, v: str) -> str:
        try:
            return str(uuidlib.UUID(v))
        except ValueError:
            raise ValueError(f"not a UUID: {v!r}") from None

    def target(self, fields: dict[str, tuple[float, float]]) -> tuple[float, float] | None:
        """Where the recipe first points (RA, Dec in degrees); None when it never slews."""
        for s in self.steps:
            if isinstance(s, SlewStep):
                a = s.slew
                if a.field is not None:
                    return fields.get(a.field)
                return a.ra_deg, a.dec_deg  # type: ignore[return-value]
        return None

    def duration_s(self) -> float:
        """A planning estimate: exposures, waits, and a minute for each slew or park."""
        total = 0.0
        for s in self.steps:
            if isinstance(s, ExposeStep):
                total += s.expose.count * (s.expose.frames / s.expose.fps + 3.0)
            elif isinstance(s, WaitStep):
                total += s.wait.seconds
            elif isinstance(s, SlewStep | ParkStep):
                total += 60.0
        return total


def step_kind(step: Any) -> str:
    return next(iter(type(step).model_fields))


def parse_recipe(data: Any, source: str = "recipe") -> Recipe:
    """A Recipe from a mapping; RecipeError naming every problem by field path."""
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: the top level must be a mapping of fields, got {type(data).__name__}")
    try:
        return Recipe.model_validate(data, context=ENTRY)
    except ValidationError as err:
        raise RecipeError(f"{source}:\n{_explain(err)}") from None


def _explain(err: ValidationError) -> str:
    # A tagged step's errors carry its tag twice (steps[1].expose.expose.frames): say it once.
    lines = []
    for line in format_validation_error(err).splitlines():
        path, _, why = line.partition(":")
        for kind in STEP_KINDS:
            path = path.replace(f".{kind}.{kind}", f".{kind}")
        lines.append(f"{path}:{why}")
    return "\n".join(lines)


def load_recipe_text(text: str | bytes, source: str = "recipe", max_steps: int | None = None) -> Recipe:
    """A Recipe from YAML/JSON text (bounded parse); more than `max_steps` steps is refused before validation."""
    try:
        data = load_yaml_text(text)
    except YamlTextError as err:
        raise RecipeError(f"{source}: {err}") from None
    steps = data.get("steps") if isinstance(data, dict) else None
    if max_steps is not None and isinstance(steps, list) and len(steps) > max_steps:
        raise RecipeError(f"{source}: steps: {len(steps)} steps, more than queue.max_steps ({max_steps})")
    return parse_recipe(data, source)


def recipe_schema() -> dict[str, Any]:
    return Recipe.model_json_schema()
