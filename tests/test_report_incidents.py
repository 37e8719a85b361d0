"""Incidents: a capture with hundreds of failures reads as a handful of lines, and reports stay small.

The many-failure capture is built here (dpkt, documentation addresses): a server refusing 120
connections from one subnet and 40 from another within three minutes, the same server refusing
again half an hour later, and a database port that never answers. Golden files hold the incident
summaries in text, Markdown and JSON; regenerate with WSADIAG_UPDATE_GOLDEN=1 and read the diff.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.pipeline import analyze_capture
from analyzer.report import ReportOptions, render
from analyzer.report.incidents import incidents
from analyzer.rules import load_rules
from tests.test_report_golden import _check

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_764_583_331.0  # 2025-12-01 10:02:11 UTC
OPTS = ReportOptions(tool_version="0.0.0-test")


def _ip(addr: str) -> bytes:
    return bytes(map(int, addr.split(".")))


def _frame(src: str, dst: str, sport: int, dport: int, flags: int, seq: int, ack: int) -> bytes:
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, win=0 if flags & 4 else 64240)
    ip = dpkt.ip.IP(src=_ip(src), dst=_ip(dst), p=6, ttl=64 if src.startswith("203.") else 128, data=tcp)
    ip.len = len(bytes(ip))
    eth = dpkt.ethernet.Ethernet(src=b"\x02\x00\x00\x00\x00\x01", dst=b"\x02\x00\x00\x00\x00\x02", data=ip)
    return bytes(eth)


def many_failures(path: Path) -> Path:
    """Write the many-failure capture (deterministic) and return its path."""
    packets: list[tuple[float, bytes]] = []
    port = 40000

    def refused(t: float, client: str, server: str, sport: int) -> None:
        packets.append((t, _frame(client, server, sport, 8443, 0x02, 7000, 0)))
        packets.append((t + 0.0004, _frame(server, client, 8443, sport, 0x14, 0, 7001)))

    for i in range(120):  # 10:02:11 - 10:05:40 from 30 hosts of 192.0.2.0/24
        port += 1
        refused(T0 + i * 209 / 119, f"192.0.2.{10 + i % 30}", "203.0.113.43", port)
    for i in range(40):  # the same minutes from 198.51.100.0/24: another site, another incident
        port += 1
        refused(T0 + 5 + i * 4, f"198.51.100.{20 + i % 8}", "203.0.113.43", port)
    for i in range(10):  # half an hour later: the service fails again
        port += 1
        refused(T0 + 1800 + i * 2, f"192.0.2.{50 + i}", "203.0.113.43", port)
    for i in range(15):  # a database port that drops SYNs: three tries each, never answered
        port += 1
        for delay in (0, 1, 3):
            packets.append((T0 + 60 + i * 7 + delay, _frame(f"192.0.2.{100 + i}", "203.0.113.99", port, 5432, 2, 9, 0)))
    packets.sort(key=lambda p: p[0])
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        for ts, frame in packets:
            writer.writepkt(frame, ts=ts)
    return path


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    capture = many_failures(tmp_path_factory.mktemp("incidents") / "outage.pcap")
    result = analyze_capture(capture, load_rules())
    result.path = "outage.pcap"  # stable in the golden files
    return [result]


def test_incidents_group_by_rule_server_subnet_and_time(outage):
    found = incidents(outage)
    shape = [(i.rule, i.server, i.client_subnet, i.count, i.clients) for i in found]
    assert shape == [
        ("CON001", "203.0.113.43:8443", "192.0.2.0/24", 120, 30),
        ("CON001", "203.0.113.43:8443", "198.51.100.0/24", 40, 8),
        ("CON002", "203.0.113.99:5432", "192.0.2.0/24", 15, 15),
        ("CON001", "203.0.113.43:8443", "192.0.2.0/24", 10, 10),
    ]
    assert sum(i.count for i in found) == len(outage[0].findings)


def test_incident_summaries_golden(outage):
    text = render("text", outage, OPTS)
    _check("incidents/outage-incidents.txt", text[: text.index("\noutage.pcap:")] + "\n")
    md = render("markdown", outage, OPTS)
    _check("incidents/outage-incidents.md", md[md.index("## Incidents") : md.index("\n## outage.pcap")] + "\n")
    doc = json.loads(render("json", outage, OPTS))
    _check("incidents/outage-incidents.json", json.dumps(doc["incidents"], indent=1) + "\n")


def test_reports_show_first_examples_and_count_the_rest(outage):
    text = render("text", outage, OPTS)
    assert text.startswith("4 incidents:\n  #1 ERROR CON001 connection-refused 203.0.113.43:8443: 120 conversations")
    assert text.count("\nconversation ") == 4 * OPTS.examples  # every incident has more than 3 findings
    assert "... and 117 more conversations like these (not shown)" in " ".join(text.split())
    github = render("github", outage, OPTS).splitlines()
    assert len(github) == 4 and github[0].startswith("::error title=CON001 connection-refused x120::")


def test_html_incident_table_first_and_each_incident_collapsible(outage):
    page = render("html", outage, ReportOptions(tool_version="0.0.0-test", html_cards=5))
    assert page.index('<table class="incidents">') < page.index('<details class="incident"')
    assert page.count('<details class="incident"') == 4
    assert page.count('<article class="finding') == 5 + 5 + 5 + 5
    assert "… and 115 more conversations like these, not drawn" in page


def _bench(tmp_path: Path, packets: int) -> Path:
    capture = tmp_path / f"bench{packets}.pcap"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "generate.py"), str(capture), "--packets", str(packets)],
        check=True,
        capture_output=True,
    )
    return capture


def test_markdown_stays_under_githubs_comment_limit(tmp_path):
    results = [analyze_capture(_bench(tmp_path, 60_000), load_rules())]
    assert len(results[0].findings) > 100
    md = render("markdown", results, OPTS)
    assert len(md) < 65_536
    small = render("markdown", results, ReportOptions(tool_version="0.0.0-test", markdown_limit=20_000))
    assert len(small) <= 20_000 and "findings are not shown" in small and "`--format html`" in small
    shown = len(re.findall(r"^#### ", small, flags=re.M))
    assert shown < len(results[0].findings)
    assert "\\" not in re.sub(r"^(`{3,})text\n.*?^\1$", "", small, flags=re.S | re.M)  # no backslash escapes


def test_also_consistent_with_shows_under_the_finding_in_every_format():
    import dataclasses

    from analyzer.model import Alternative
    from tests import report_cases as rc

    results = rc.rst003_case()
    alt = Alternative("RST008", "reset-after-idle", "Reset after idle", "the server was idle for 350 s", "low")
    results[0].findings = [dataclasses.replace(f, also=(alt,)) for f in results[0].findings]
    line = "also consistent with: RST008 reset-after-idle (low) — the server was idle for 350 s"
    assert line in render("text", results, OPTS)
    assert "*Also consistent with:* RST008 reset-after-idle (low) — the server was idle for 350 s" in render(
        "markdown", results, OPTS
    )
    html = render("html", results, OPTS)
    assert '<p class="also">also consistent with: <code>RST008</code> reset-after-idle (low)' in html
    assert "Also consistent with: RST008 reset-after-idle" in render("sarif", results, OPTS)
    assert "also consistent with: RST008 reset-after-idle: the server was idle" in render("junit", results, OPTS)
    assert "also consistent with: RST008 reset-after-idle: the server was idle" in render("github", results, OPTS)
    doc = json.loads(render("json", results, OPTS))
    assert doc["captures"][0]["findings"][0]["also_consistent_with"][0]["rule"] == "RST008"


def test_text_wraps_to_the_width_and_the_ladder_fits_80_columns():
    from analyzer.report.ladder import LADDER_COLUMNS
    from tests import report_cases as rc

    results = rc.rst003_case() + rc.long_case()
    out = render("text", results, ReportOptions(tool_version="0.0.0-test", width=72))
    ladder = [line for line in out.splitlines() if line.endswith("|") and "  |" in line]
    prose = [line for line in out.splitlines() if line not in ladder and "frame       time" not in line]
    assert ladder and max(len(line) for line in ladder) <= 4 + LADDER_COLUMNS  # indented 4 under the finding
    assert max(len(line) for line in prose) <= 72


def test_times_beyond_the_calendar_are_shown_raw_not_a_crash():
    # A damaged capture's timestamp (the fuzzer's, year 57985) has no calendar date: the reports
    # show the seconds instead of failing.
    from analyzer.report.incidents import iso_utc, show_span, show_time

    ts = 1_767_600_000_000.25
    assert iso_utc(ts) == "1767600000000.250000 s after 1970 (beyond the calendar)"
    assert "beyond the calendar" in show_time(ts, "Europe/Berlin")
    assert "beyond the calendar" in show_span(1.0, ts)
    assert iso_utc(0.5) == "1970-01-01T00:00:00.500000Z"  # an ordinary time is unchanged


# -- the times reports write ---------------------------------------------------------------------

_TIMES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**62), max_value=2**62).map(lambda n: n / 1e6),  # pcap's microseconds
    st.integers(min_value=-(2**62), max_value=2**62).map(lambda n: n / 2e6),  # halves: the rounding ties
    st.floats(min_value=1.5e9, max_value=1.9e9),
)


@given(_TIMES)
@settings(max_examples=3000)
def test_every_time_a_report_writes_is_datetimes_own_to_the_microsecond(ts):
    """iso_utc writes each whole second once from datetime: every time, rounding ties and carries into
    the next second included, and the times no calendar holds, reads as datetime writes it."""
    from datetime import datetime, timezone

    from analyzer.report.incidents import iso_utc

    try:
        want = datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        want = f"{ts:.6f} s after 1970 (beyond the calendar)"
    assert iso_utc(ts) == want
