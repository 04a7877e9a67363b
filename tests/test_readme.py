"""The README's examples work as written against the built-in simulated observatory."""

from __future__ import annotations

import re
from pathlib import Path

from gozen.config import load_config
from gozen.queue.recipe import load_recipe_text
from gozen.supervise.programs import programs_for

README = (Path(__file__).parent.parent / "README.md").read_text()


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README, flags=re.S)


def test_readme_process_commands_name_programs_that_exist() -> None:
    cfg = load_config(None)
    names = {f"{h.name}:{p.full_name}" for h in cfg.hosts for p in programs_for(cfg, h)}
    examples = re.findall(r"^gozen (?:stop|start|restart)\s+(\S+)", README, flags=re.M)
    assert examples, "the README shows how to stop a program"
    for name in examples:
        assert name in names, f"README example {name!r} names no program of the simulated observatory"


def test_readme_recipe_example_is_valid_and_does_not_stop_the_queue() -> None:
    recipes = [b for b in _yaml_blocks() if b.lstrip().startswith("name:") and "steps:" in b]
    assert recipes, "the README shows a recipe"
    for text in recipes:
        recipe = load_recipe_text(text, "README recipe")
        kinds = [next(iter(step.model_dump(exclude_none=True))) for step in recipe.steps]
        assert "shutdown" not in kinds, "a copied example would stop queue:server for the night"
