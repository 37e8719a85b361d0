"""Reads one rule file as plain data plus the line of every key, so errors can point at it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer.errors import RuleError

if TYPE_CHECKING:
    import yaml

# yaml is imported by parse(), when a rule file is parsed: the built-in rules come from the
# cache (analyzer/rules/cache.py) on most runs, and PyYAML's import is a tenth of a start-up.

MAX_RULE_BYTES = 64 * 1024  # a rule is a page of YAML; anything bigger is not a rule file


def _loader() -> Any:
    """libyaml's parser when PyYAML has it (same safe constructors, ~20x faster on big input)."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Source:
    """A parsed rule file: its data and where each key or list item starts."""

    path: str
    data: Any  # the YAML document: checked by the schema and loader.py, not by type
    lines: dict[tuple, int]  # path into the document -> 1-based line

    def line(self, where: tuple) -> int:
        """The line of `where`, or of its nearest ancestor the file has a line for."""
        where = tuple(where)
        while where:
            if where in self.lines:
                return self.lines[where]
            where = where[:-1]
        return self.lines.get((), 1)

    def error(self, where: tuple, what: str) -> RuleError:
        """A RuleError that names this file, the line of `where`, and what is wrong."""
        # The hint names the command, not docs/rules/vocabulary.md: an installed wsadiag has no docs/ folder.
        return RuleError(
            f"{self.path}:{self.line(where)}: {what}", hint="`wsadiag rules --vocabulary` prints the rule language"
        )


def _reject_aliases(text: str, path: str) -> None:
    # Rule files need no anchors; refusing aliases keeps a small file from expanding into an
    # exponential tree that validation would then walk.
    import yaml

    for event in yaml.parse(text, Loader=_loader()):
        if isinstance(event, yaml.AliasEvent):
            raise RuleError(f"{path}:{event.start_mark.line + 1}: YAML aliases (*name) are not allowed in rule files")


def _walk(node: yaml.Node, here: tuple, lines: dict, path: str) -> None:
    import yaml

    lines.setdefault(here, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                raise RuleError(f"{path}:{knode.start_mark.line + 1}: a key must be a plain name")
            key = knode.value
            if key in seen:
                raise RuleError(f"{path}:{knode.start_mark.line + 1}: duplicate key {key!r}")
            seen.add(key)
            lines[here + (key,)] = knode.start_mark.line + 1
            _walk(vnode, here + (key,), lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[here + (i,)] = item.start_mark.line + 1
            _walk(item, here + (i,), lines, path)


def parse(text: str, path: str) -> Source:
    """Parses rule text: safe YAML only, no aliases, no duplicate keys; errors name file and line."""
    if len(text) > MAX_RULE_BYTES:
        raise RuleError(f"{path}:1: file is larger than {MAX_RULE_BYTES // 1024} KiB; a rule file is one rule")
    import yaml

    try:
        _reject_aliases(text, path)
        loader = _loader()(text)
        try:
            node = loader.get_single_node()
            lines: dict[tuple, int] = {}
            if node is not None:
                _walk(node, (), lines, path)
                data = loader.construct_document(node)
            else:
                data = None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise RuleError(f"{path}:{line}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise RuleError(f"{path}:1: not valid YAML: {exc}") from None
    except RecursionError:
        raise RuleError(f"{path}:1: YAML nested too deeply") from None
    if not isinstance(data, dict):
        raise RuleError(f"{path}:1: a rule file is a YAML mapping (code: ..., name: ..., match: ...)")
    return Source(path, data, lines)


def read(path: Path, shown: str | None = None) -> Source:
    """Reads and parses a rule file from disk."""
    shown = shown or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RuleError(f"{shown}:1: cannot read rule file: {exc.strerror or exc}") from None
    if len(raw) > MAX_RULE_BYTES:
        raise RuleError(f"{shown}:1: file is larger than {MAX_RULE_BYTES // 1024} KiB; a rule file is one rule")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RuleError(f"{shown}:1: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse(text, shown)
