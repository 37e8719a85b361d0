"""One capture in, one CaptureResult out: capture -> decode -> flows -> rules."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
from typing import IO, Callable, Iterator, Literal, Protocol

from analyzer.capture import open_capture
from analyzer.capture.pcap import RecordCursor
from analyzer.capture.reader import Opens
from analyzer.decode import Decoder, linktype_name
from analyzer.errors import CaptureError
from analyzer.flows import FlowTable
from analyzer.flows.table import DEFAULT_MAX_CONVERSATIONS, DEFAULT_MAX_LIVE_BYTES
from analyzer.model import (
    CaptureResult,
    CaptureWarning,
    Conversation,
    DroppedEvent,
    Event,
    Finding,
    RulePrefilter,
    Traits,
    WindowsDrop,
)
from analyzer.sink import Sink

# Which conversations a result holds: those with a finding, every one (listed without packets), or
# every one with its packets.
Keep = Literal["findings", "all", "all-full"]


class RuleEvaluator(Protocol):
    """What the pipeline needs of a rule set."""

    def evaluate(self, conv: Conversation) -> list[Finding]: ...


MAX_FINDINGS_PER_RULE = 1000  # per capture: keeps memory bounded on port scans and mass outages
EVIDENCE_CONTEXT = 8  # packets kept either side of the evidence (reports show 4)
HANDSHAKE_KEPT = 3  # packets kept from the start


def keep_evidence(conv: Conversation, findings: list[Finding]) -> Conversation:
    """The conversation with only the packets a report draws: the start and the evidence, with context.

    Conversations with findings are kept until the end of the capture; trimming their timelines
    keeps that memory small when a capture holds thousands of failures.
    """
    timeline = conv.timeline
    frames = {f for finding in findings for f in finding.frames}
    marked = [i for i, ev in enumerate(timeline) if ev.frame in frames]
    if not marked:
        return conv
    lo = max(marked[0] - EVIDENCE_CONTEXT, HANDSHAKE_KEPT)
    hi = marked[-1] + EVIDENCE_CONTEXT + 1
    if conv.elided and lo <= conv.elided_after:
        lo = HANDSHAKE_KEPT if conv.elided_after < HANDSHAKE_KEPT else conv.elided_after + 1
        if lo > marked[0]:
            return dataclasses.replace(conv, timeline=timeline[:hi])  # the evidence straddles the old gap
    dropped = lo - HANDSHAKE_KEPT
    if dropped <= 0 and hi >= len(timeline):
        return conv
    kept = timeline[:HANDSHAKE_KEPT] + timeline[lo:hi]
    if dropped <= 0:
        return dataclasses.replace(conv, timeline=kept)
    return dataclasses.replace(conv, timeline=kept, elided_after=HANDSHAKE_KEPT - 1, elided=conv.elided + dropped)


def attach_drops(conv: Conversation, drops: dict[int, WindowsDrop]) -> Conversation:
    """The conversation with Windows' drop records (pktmon ETL input) on the packets they concern.

    A drop is evidence a rule can name (`dropped:`, `dropped_by:`), like an ICMP error attached
    to the conversation's timeline.
    """
    if not any(ev.frame in drops for ev in conv.timeline):
        return conv
    timeline = tuple(_dropped(ev, drops[ev.frame]) if ev.frame in drops else ev for ev in conv.timeline)
    return dataclasses.replace(conv, timeline=timeline)


def _dropped(ev: Event, drop: WindowsDrop) -> DroppedEvent:
    out = DroppedEvent._make(ev)
    out.drop = drop
    return out


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector for a whole analysis.

    The analysis makes millions of short-lived tuples and no reference cycles (memory is freed by
    reference counting, and bounded by the conversation table's eviction policy), so the
    collector would only rescan the live conversations over and over.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def packet_loop(
    records: RecordCursor, decoder: Decoder, sink: Sink, progress: Callable[[int], None] | None = None
) -> None:
    """Every record of a capture through the decoder into `sink` (the flow table): the loop of an analysis.

    Each record is decoded where it lies in the reader's buffer; progress(frames) every 65,536 frames.
    """
    try:
        while records.next_record():
            start = records.start
            n = records.n
            decoder.take(records.buf, start, start + records.incl, records.orig, n, records.ts, records.linktype, sink)
            if progress is not None and not n & 0xFFFF:
                progress(n)
    finally:
        records.close()  # also when interrupted: the frames read so far are counted


def analyze_capture(
    source: str | os.PathLike[str] | IO[bytes] | Opens,
    rules: RuleEvaluator | None = None,
    conv_filter: Callable[[Conversation], bool] | None = None,
    *,
    keep: Keep = "findings",
    max_conversations: int = DEFAULT_MAX_CONVERSATIONS,
    max_findings_per_rule: int = MAX_FINDINGS_PER_RULE,
    progress: Callable[[int], None] | None = None,
    on_findings: Callable[[Conversation, list[Finding]], None] | None = None,
    max_live_bytes: int = DEFAULT_MAX_LIVE_BYTES,
    listen: Callable[[Conversation], None] | None = None,
) -> CaptureResult:
    """Read and diagnose one capture.

    listen: when given, takes each conversation (that passes the filter) as it ends, and the
    result keeps none: memory stays flat however many there are (`wsadiag conversations`). No
    rule runs then, so no packet rows are kept and each conversation comes brief (no timeline,
    no payload bytes; see build_conversation).

    keep: which conversations the result holds: "findings" (those with a finding, whole),
    "all" (every conversation, those without findings without their timeline), "all-full".
    on_findings(conv, findings) is called as soon as a conversation with findings ends, while the
    capture is still being read (live use: `tcpdump -U -w - | wsadiag analyze - --format jsonl`).
    Never raises for a bad capture: the result's `error` and `warnings` say what went wrong.
    """
    with collector_paused():
        return _analyze(
            source,
            rules,
            conv_filter,
            keep,
            max_conversations,
            max_findings_per_rule,
            progress,
            on_findings,
            max_live_bytes,
            listen,
        )


def _analyze(
    source: str | os.PathLike[str] | IO[bytes] | Opens,
    rules: RuleEvaluator | None,
    conv_filter: Callable[[Conversation], bool] | None,
    keep: Keep,
    max_conversations: int,
    max_findings_per_rule: int,
    progress: Callable[[int], None] | None,
    on_findings: Callable[[Conversation, list[Finding]], None] | None = None,
    max_live_bytes: int = DEFAULT_MAX_LIVE_BYTES,
    listen: Callable[[Conversation], None] | None = None,
) -> CaptureResult:
    name = (
        "-"
        if source == "-"
        else (os.fspath(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "-"))
    )
    result = CaptureResult(path=str(name))
    try:
        cap = source.opened() if isinstance(source, Opens) else open_capture(source)
    except CaptureError as exc:
        result.error = str(exc)
        return result

    conversations: list[Conversation] = []
    per_rule: dict[str, int] = {}  # findings seen per rule, kept or not

    def emit(conv: Conversation) -> None:
        if conv_filter is not None and not conv_filter(conv):
            return
        if cap.drops:
            conv = attach_drops(conv, cap.drops)
        result.conversation_count += 1
        if listen is not None:
            listen(conv)
            return
        findings = rules.evaluate(conv) if rules is not None else []
        if findings:
            for f in findings:
                per_rule[f.rule] = per_rule.get(f.rule, 0) + 1
            findings = [f for f in findings if per_rule[f.rule] <= max_findings_per_rule]
        if findings:
            result.findings.extend(findings)
            conversations.append(conv if keep == "all-full" else keep_evidence(conv, findings))
            if on_findings is not None:
                on_findings(conv, findings)
        elif keep == "all-full":
            conversations.append(conv)
        elif keep == "all":
            # A listing needs no packets: drop the timeline and payload bytes to stay small.
            conversations.append(
                dataclasses.replace(
                    conv,
                    timeline=(),
                    client_stats=dataclasses.replace(conv.client_stats, payload_head=b""),
                    server_stats=dataclasses.replace(conv.server_stats, payload_head=b""),
                )
            )

    # Only findings are kept, and nothing else looks at each conversation: those on which no rule
    # could fire (most of them) need not be built at all.
    admit: Callable[[Traits], bool] | None = None
    if keep == "findings" and conv_filter is None and isinstance(rules, RulePrefilter):
        admit = rules.could_fire
    table = FlowTable(
        emit,
        max_conversations=max_conversations,
        admit=admit,
        max_live_bytes=max_live_bytes,
        timeline=listen is None,  # a listing reads no packet rows: none are kept
    )
    decoder = Decoder()
    with cap:
        result.format = cap.format
        try:
            packet_loop(cap.records(), decoder, table, progress)
        except KeyboardInterrupt:
            result.warnings.append(
                CaptureWarning("interrupted", f"interrupted after {cap.frames} frames; the report covers those")
            )
        table.flush()
        result.format = cap.format  # an ETL walk names its provider once it has read the file
        result.conversation_count += table.skipped
        result.packets = cap.frames
        result.linktypes = [linktype_name(lt) for lt in cap.linktypes]
        result.warnings[:0] = list(cap.warnings)
    result.encapsulations = decoder.encapsulations()
    result.warnings.extend(decoder.warnings())
    result.warnings.extend(table.warnings())
    for code, seen in sorted(per_rule.items()):
        if seen > max_findings_per_rule:
            result.warnings.append(
                CaptureWarning(
                    "findings-capped",
                    f"{code} fired on {seen} conversations; the first {max_findings_per_rule} "
                    f"are reported (a scan or an outage repeats one pattern; --filter narrows the capture)",
                )
            )
    if result.packets == 0 and not result.error:
        result.warnings.append(CaptureWarning("no-packets", "the capture holds no packets"))
    elif table.next_id == 1 and not result.error:  # no flow was ever opened: not one IP packet decoded
        result.warnings.append(
            CaptureWarning(
                "no-ip-packets",
                f"none of the {result.packets} packets is a TCP, UDP or ICMP packet over IP "
                "(wrong interface, Wi-Fi monitor mode, or a link type wsadiag cannot decode?)",
            )
        )
    conversations.sort(key=lambda c: c.id)
    result.conversations = conversations
    result.findings.sort(key=lambda f: (f.conversation, f.frames[:1], f.rule))
    return result
