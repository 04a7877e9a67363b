"""YAML (and JSON) read from people and the network with bounds: size, nesting, alias expansion.

PyYAML's safe loader still lets a 1 KB "billion laughs" document expand to millions of nodes
(aliases of aliases) and lets a deeply nested one end in RecursionError. This loader counts
every node as it would be expanded and the depth while composing, and refuses a document that
goes past either budget. Its errors say where (line, column) and why, never the text itself.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_BYTES = 1_000_000
MAX_DEPTH = 64
MAX_NODES = 200_000


class YamlTextError(ValueError):
    """A document that is not valid YAML/JSON or is beyond the bounds; the message quotes no input."""


class _BoundedLoader(yaml.SafeLoader):
    # The pure-Python loader, not CSafeLoader: composing must be observable node by node.
    max_depth = MAX_DEPTH
    max_nodes = MAX_NODES

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._weight: dict[int, int] = {}  # id(node) -> number of nodes it stands for, expanded
        self._total = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            anchor = event.anchor
            node = super().compose_node(parent, index)
            self._count(self._weight.get(id(node), 1), event.start_mark, f"alias *{_short(anchor)}")
            return node
        self._depth += 1
        if self._depth > self.max_depth:
            mark = self.peek_event().start_mark
            raise YamlTextError(f"nested more than {self.max_depth} levels deep (line {mark.line + 1})")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None:
            weight = 1 + sum(int(self._weight.get(id(child), 1)) for child in _children(node))
            self._weight[id(node)] = weight
            self._count(1, node.start_mark, "")
        return node

    def _count(self, n: int, mark: Any, what: str) -> None:
        self._total += n
        if self._total > self.max_nodes:
            where = f" at line {mark.line + 1}" + (f" ({what})" if what else "")
            why = "aliases repeat too much" if what else "the document is too large"
            raise YamlTextError(f"expands to more than {self.max_nodes:,} values{where}; {why}")


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _short(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= 20 else text[:20] + "…"


def load_yaml_text(
    text: str | bytes, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES
) -> Any:
    """The document in `text` as Python data; YamlTextError (quoting no input) if invalid or out of bounds."""
    if len(text) > max_bytes:
        raise YamlTextError(f"{len(text):,} bytes is more than the {max_bytes:,} allowed")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise YamlTextError(f"not UTF-8 text (byte {err.start})") from None
    loader = _BoundedLoader(text)
    loader.max_depth, loader.max_nodes = max_depth, max_nodes
    try:
        return loader.get_single_data()
    except YamlTextError:
        raise
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise YamlTextError(f"not valid YAML/JSON{where}: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise YamlTextError(f"not valid YAML/JSON: {type(err).__name__}") from None
    except RecursionError:
        raise YamlTextError("nested too deeply") from None
    finally:
        loader.dispose()
