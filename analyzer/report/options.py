"""The options every report format reads: one frozen record the CLI fills in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Union

from analyzer import __version__


class RuleRecord(Protocol):
    """What a report reads of a rule (rules.engine.Rule is one); `cause` and `doc` are read when present."""

    @property
    def code(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def level(self) -> str: ...


# The rule catalogue as the rules layer hands it over: rules or plain dicts with the same keys,
# listed or keyed by code.
RuleLike = Union[RuleRecord, Mapping[str, Any]]
RuleCatalogue = Union[Iterable[RuleLike], Mapping[str, RuleLike]]


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """How to render a report; every field has a default so tests can build one bare."""

    fail_on: str = "warning"  # error|warning|info|never: junit fails testcases at or above it
    color: bool = False  # ANSI colour in text output (the CLI decides: TTY and NO_COLOR unset)
    rules: RuleCatalogue | None = None  # for formats that describe each rule (SARIF); None: none known
    tool_version: str = __version__
    conversations_only: bool = False  # `wsadiag conversations`: conversation table, no findings
    doc_base: str = (
        "docs/rules/"  # SARIF helpUri = doc_base + CODE + ".md", written only when doc_base is an http(s) URL
    )
    information_uri: str = ""  # SARIF tool.driver.informationUri (absolute), when the project has a home page
    ladder_context: int = 4  # packets shown either side of the evidence in ladder diagrams
    ladder_max_rows: int = 40  # beyond this a ladder keeps the evidence and elides the rest
    tz: str = "UTC"  # zone of absolute times in text, Markdown and HTML: "UTC", "local" or an IANA name
    examples: int = 3  # findings shown in full per incident in text and Markdown; the rest are counted
    html_cards: int = 10  # finding cards per incident in HTML; the rest are listed in one line
    markdown_limit: int = 65_000  # characters: under GitHub's 65,536-character comment limit
    evidence_dir: str = ""  # where --evidence wrote one pcapng per finding ("" none)
    width: int = 100  # text report line width (the CLI sets the terminal's)
