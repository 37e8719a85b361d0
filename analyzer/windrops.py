"""Windows' drop records in a finding's words: why the capturing host itself discarded a packet."""

from __future__ import annotations

from collections.abc import Iterable

from analyzer.capture.etwfacts import DROP_MEANINGS
from analyzer.model import Conversation, Event, WindowsDrop, event_drop
from analyzer.protocol import flag_string


def first_drop(conv: Conversation, evidence: Iterable[Event]) -> tuple[Event, WindowsDrop] | None:
    """The first dropped packet among the evidence, else in the whole timeline (pktmon ETL input)."""
    for events in (evidence, conv.timeline):
        for ev in events:
            drop = event_drop(ev)
            if drop is not None:
                return ev, drop
    return None


def drop_sentence(conv: Conversation, evidence: Iterable[Event]) -> str:
    """' Windows logged why: ...' for a finding's message, or "" when no packet was dropped."""
    found = first_drop(conv, evidence)
    if found is None:
        return ""
    ev, d = found
    what = flag_string(ev.flags) or "packet"
    port = conv.server.port if ev.dir == 0 else conv.client.port
    if d.by_filter:
        meaning = "a filter (Windows Firewall / WFP) discarded it: the refusal is the filter's, not a missing listener"
    else:
        meaning = DROP_MEANINGS.get(d.reason, "").format(port=port)
    tail = f": {meaning}" if meaning else ""
    where = f"dropped by {d.component} with {d.reason_name}"
    return f" Windows logged why: its {what} (frame {ev.frame}) was {where}{tail}."
