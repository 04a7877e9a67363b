"""Recipes: the schema, and refusals that name every wrong field by its path."""

from __future__ import annotations

import uuid

import pytest

from gozen.queue.recipe import ExposeStep, RecipeError, load_recipe_text, parse_recipe, recipe_schema

GOOD = """
name: Queue-Observer INB 11 45+01
description: a field of the INB survey
priority: high
window: {not_before: 2026-11-25T10:00:00Z, not_after: 2026-11-25T20:00:00Z}
constraints: {min_alt_deg: 35, min_moon_sep_deg: 20}
steps:
  - slew: {ra_deg: 176.25, dec_deg: 1.0}
  - expose: {object: INB 11 45+01, frames: 12, fps: 2, count: 3, dither_arcsec: 30}
  - wait: {seconds: 5}
  - park: {}
"""


def test_a_good_recipe_gets_a_uuid_and_its_steps() -> None:
    r = load_recipe_text(GOOD)
    assert uuid.UUID(r.uuid) and r.priority == "high" and r.window.not_before.tzinfo is not None
    assert [next(iter(type(s).model_fields)) for s in r.steps] == ["slew", "expose", "wait", "park"]
    assert isinstance(r.steps[1], ExposeStep) and r.steps[1].expose.count == 3
    assert r.target({}) == (176.25, 1.0) and r.duration_s() == pytest.approx(3 * (6 + 3) + 5 + 120)


def test_every_error_is_named_by_its_field_path() -> None:
    bad = {
        "name": "x",
        "priority": "urgent",
        "window": {"not_before": "2026-11-25T10:00:00"},
        "constraints": {"min_alt_deg": 95},
        "steps": [
            {"slew": {"ra_deg": 400, "dec_deg": 5}},
            {"expose": {"object": "A", "frames": 0}},
            {"jump": {}},
            {"slew": {"field": "F", "ra_deg": 1}},
        ],
        "colour": "blue",
    }
    with pytest.raises(RecipeError) as err:
        parse_recipe(bad)
    lines = str(err.value).splitlines()[1:]
    assert lines == [
        "priority: input should be 'low', 'normal', 'high' or 'interrupt', got 'urgent'",
        "window.not_before: needs a time zone, e.g. 2026-11-25T12:00:00Z",
        "constraints.min_alt_deg: must be <= 90, got 95",
        "steps[0].slew.ra_deg: must be < 360, got 400",
        "steps[1].expose.frames: must be >= 1, got 0",
        "steps[2]: a step is a mapping with one key: one of slew, expose, wait, park, shutdown, got {'jump': {}}",
        "steps[3].slew: give ra_deg and dec_deg, or field, not both",
        "colour: unknown key",
    ]


def test_not_yaml_and_not_a_mapping_are_refused_clearly() -> None:
    with pytest.raises(RecipeError, match="not valid YAML/JSON"):
        load_recipe_text("name: [unclosed")
    with pytest.raises(RecipeError, match="top level must be a mapping"):
        load_recipe_text("- a\n- b\n")


def test_the_json_schema_describes_the_fields() -> None:
    s = recipe_schema()
    assert s["required"] == ["name", "steps"] and "priority" in s["properties"]
    assert s["properties"]["priority"]["enum"] == ["low", "normal", "high", "interrupt"]
