"""Incidents: the findings that tell one story, so a report of a thousand findings reads as a few lines.

An incident is the findings of one rule against one server endpoint, from clients of one subnet,
each starting within INCIDENT_GAP of the previous one: "CON001 203.0.113.43:8443 refused 312
connections from 14 clients, 10:02:11-10:05:40". Reports open with the incident table and show
each incident's first findings in full, counting the rest.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from dataclasses import dataclass, replace
from datetime import datetime, timezone, tzinfo
from typing import Any

from analyzer.errors import UsageError
from analyzer.model import CaptureResult, Conversation, Finding
from analyzer.report.common import LEVEL_RANK, conversations_by_id

INCIDENT_GAP = 300.0  # seconds: a finding this long after the previous one of its kind opens a new incident
SUBNET_BITS = {4: 24, 6: 64}  # client subnet prefix length by IP version: one site's clients


@dataclass(frozen=True, slots=True)
class Incident:
    """Findings of one rule against one server from one client subnet, close in time."""

    id: int  # 1-based, in report order (most severe first, then largest, then earliest)
    capture: int  # index of the capture in the report's results
    rule: str
    name: str
    level: str
    title: str
    server: str  # endpoint "203.0.113.43:8443" ("" when the conversation is unknown)
    client_subnet: str  # "198.51.100.0/24"
    start: float  # the first finding's conversation start (seconds since the epoch)
    end: float  # the last finding's conversation end
    findings: tuple[Finding, ...]  # in time order
    clients: int  # distinct client addresses

    @property
    def count(self) -> int:
        return len(self.findings)


@functools.lru_cache(maxsize=4096)  # a report names the same few clients many times over
def client_subnet(addr: str) -> str:
    """The subnet a client address is grouped by: /24 for IPv4, /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr
    return str(ipaddress.ip_network(f"{ip}/{SUBNET_BITS[ip.version]}", strict=False))


def _key(f: Finding, conv: Conversation | None) -> tuple[str, str, str]:
    if conv is None:
        return (f.rule, "", f"conversation {f.conversation}")
    return (f.rule, str(conv.server), client_subnet(conv.client.addr))


def capture_incidents(result: CaptureResult, index: int = 0, gap: float = INCIDENT_GAP) -> list[Incident]:
    """The incidents of one capture, unnumbered (id 0), in time order."""
    convs = conversations_by_id(result)
    groups: dict[tuple[str, str, str], list[list[Finding]]] = {}
    last_start: dict[tuple[str, str, str], float] = {}

    def start(f: Finding) -> float:
        conv = convs.get(f.conversation)
        return conv.start if conv is not None else 0.0

    for f in sorted(result.findings, key=lambda f: (start(f), f.conversation, f.rule)):
        key = _key(f, convs.get(f.conversation))
        t = start(f)
        runs = groups.setdefault(key, [])
        if not runs or t - last_start[key] > gap:
            runs.append([])
        runs[-1].append(f)
        last_start[key] = t
    out = []
    for (rule, server, subnet), runs in groups.items():
        for run in runs:
            conv_list = [c for c in (convs.get(f.conversation) for f in run) if c is not None]
            first = run[0]
            out.append(
                Incident(
                    id=0,
                    capture=index,
                    rule=rule,
                    name=first.name,
                    level=first.level,
                    title=first.title,
                    server=server,
                    client_subnet=subnet,
                    start=min((c.start for c in conv_list), default=0.0),
                    end=max((c.end for c in conv_list), default=0.0),
                    findings=tuple(run),
                    clients=len({c.client.addr for c in conv_list}),
                )
            )
    return out


def incidents(results: list[CaptureResult], gap: float = INCIDENT_GAP) -> list[Incident]:
    """Every capture's incidents, numbered: most severe first, then the largest, then the earliest."""
    found = [inc for i, r in enumerate(results) for inc in capture_incidents(r, i, gap)]
    found.sort(key=lambda inc: (LEVEL_RANK.get(inc.level, 9), -inc.count, inc.capture, inc.start, inc.rule))
    return [replace(inc, id=n) for n, inc in enumerate(found, 1)]


# -- time ---------------------------------------------------------------------------------------


def zone(name: str) -> tzinfo:
    """The zone times are shown in: "UTC", "local" (this machine's) or an IANA name (zoneinfo)."""
    if name.upper() == "UTC":
        return timezone.utc
    if name == "local":
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else timezone.utc
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # only for a named zone: a few ms of start-up

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown time zone {name!r}", hint="use UTC, local, or a name like Europe/Berlin") from None


def _moment(ts: float, tz: tzinfo) -> datetime | None:
    """The moment `ts` (seconds since 1970) in zone `tz`, or None when no calendar date can hold
    it (a damaged capture's timestamp can lie beyond the year 9999 or before the year 1)."""
    try:
        return datetime.fromtimestamp(ts, tz)
    except (ValueError, OverflowError, OSError):
        return None


def _raw_time(ts: float) -> str:
    return f"{ts:.6f} s after 1970 (beyond the calendar)"


# Whole seconds already written as ISO 8601 UTC by iso_utc: a capture's times fall in few of them,
# and making the datetime of each time was most of what a conversations listing spent on it.
_SECONDS: dict[int, str] = {}
_SECONDS_KEPT = 4096


def iso_utc(ts: float) -> str:
    """An absolute time as ISO 8601 UTC with microseconds: 2026-12-01T10:02:11.123456Z.

    Rounded to the microsecond as datetime.fromtimestamp rounds (half to even, carried into the
    second); the date and time of the whole second come from datetime, once per second."""
    try:
        frac, whole = math.modf(ts)
        micro = round(frac * 1e6)
        second = int(whole)
    except (ValueError, OverflowError):  # not a number, or infinite
        return _raw_time(ts)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    elif micro < 0:
        second, micro = second - 1, micro + 1_000_000
    head = _SECONDS.get(second)
    if head is None:
        moment = _moment(second, timezone.utc)
        if moment is None:
            return _raw_time(ts)
        if len(_SECONDS) >= _SECONDS_KEPT:
            _SECONDS.clear()
        head = _SECONDS[second] = moment.isoformat(timespec="seconds")[:19]
    return f"{head}.{micro:06d}Z"


def show_time(ts: float, tz: str = "UTC", date: bool = True) -> str:
    """An absolute time for people: '2026-12-01 10:02:11.123456 UTC' in the zone asked for."""
    moment = _moment(ts, zone(tz))
    if moment is None:
        return _raw_time(ts)
    text = moment.strftime("%Y-%m-%d %H:%M:%S.%f" if date else "%H:%M:%S.%f")
    return f"{text} {moment.tzname() or tz}"


def show_span(start: float, end: float, tz: str = "UTC") -> str:
    """A time range for an incident table: '2026-12-01 10:02:11-10:05:40 UTC' (seconds)."""
    z = zone(tz)
    a, b = _moment(start, z), _moment(end, z)
    if a is None or b is None:
        return f"{start:.0f}–{end:.0f} s after 1970 (beyond the calendar)"
    left = a.strftime("%Y-%m-%d %H:%M:%S")
    right = b.strftime("%H:%M:%S" if a.date() == b.date() else "%Y-%m-%d %H:%M:%S")
    return f"{left}–{right} {a.tzname() or tz}"


def frame_times(conv: Conversation | None, finding: Finding) -> list[float | None]:
    """The capture time of each evidence frame (None when its packet was not kept)."""
    if conv is None:
        return [None] * len(finding.frames)
    times = {ev.frame: ev.ts for ev in conv.timeline}
    return [times.get(n) for n in finding.frames]


def incident_summary(inc: Incident, tz: str = "UTC") -> str:
    """One line: 'CON001 connection-refused 203.0.113.43:8443: 312 conversations from 14 clients (...)'."""
    convs = f"{inc.count} conversation{'s' if inc.count != 1 else ''}"
    clients = f"{inc.clients} client{'s' if inc.clients != 1 else ''} in {inc.client_subnet}"
    server = f" {inc.server}" if inc.server else ""
    return f"{inc.rule} {inc.name}{server}: {convs} from {clients}, {show_span(inc.start, inc.end, tz)}"


def incident_dict(inc: Incident, results: list[CaptureResult]) -> dict[str, Any]:
    """One incident as the JSON report writes it."""
    return {
        "id": inc.id,
        "capture": results[inc.capture].path,
        "rule": inc.rule,
        "name": inc.name,
        "level": inc.level,
        "title": inc.title,
        "server": inc.server,
        "client_subnet": inc.client_subnet,
        "start_time": iso_utc(inc.start),
        "end_time": iso_utc(inc.end),
        "findings": inc.count,
        "clients": inc.clients,
        "conversations": [f.conversation for f in inc.findings],
    }
