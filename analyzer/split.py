"""One big capture on several cores: each worker reads the whole file and follows a share of its
conversations; the client merges the shares into the report a serial run writes.

How a share is kept: a conversation's share is a hash of its two address/port sides, the same
from either direction (analyzer.decode.fast.flow_share). The decoder's compiled fast path reads
it from the header bytes of every plain TCP or UDP frame (untagged Ethernet, IPv4 without options
and not a fragment, or IPv6 without extension headers) before it builds anything, so a worker
spends on another share's packet only the look at its headers; every other frame (ICMP, tunnels,
VLAN tags, fragments, other link types) takes the general path in every worker, which keeps the
decoder's warnings the same in each, and is handed on by its decoded 5-tuple (an ICMP error by
the 5-tuple it quotes, so it finds the conversation it is about). Packets of other shares still
move the table's expiry clock, so a conversation of the share ends at the very packet it ends at
in a serial run (analyzer.flows.shares.ShareSink). This process follows share 0 itself, the
bigger one beside a pool (SLICES_PER_SHARE).

What a serial run numbers across all conversations is renumbered by the client from what each
share records as it goes:
- conversation ids (in order of first packet): each share lists the (frame, depth) that opened
  each of its flows; a conversation's id is its rank among all shares' openings;
- Wireshark's tcp.stream / udp.stream (and the ICMP stream count): likewise, from the (frame,
  depth) at which each share opened each stream.

Host context (a host's usual TTL, learnt from the conversations that ended before, used to tell a
forged RST or ICMP error from a real one) is kept exactly: a share learns nothing itself; it logs,
for every conversation it ends, when it ended and the TTLs each side showed. "When" is a key that
puts every share's ends in the serial run's order: the packet, then (the flow table hands on what
is due at a packet in order of deadline and then of first packet) the deadline and the first
packet, then what the packet itself ends. A share sends only the log entries a replay can learn
from (analyzer.flows.shares.compact_host_log: under a tenth of them on the 1M-packet bench
capture). A conversation that could need host context (a RST or an ICMP error, and a side of
fewer than three packets) is sent back whole; the client replays all shares' logs in that order,
and marks each such conversation with the host TTLs known at that point.

Each share judges the conversations it sends back, under its own numbers, and trims those with
findings to their evidence, as a serial run does. The client gives their findings the serial
run's conversation and stream numbers (the Wireshark filter is written again); it judges a
conversation again only when its host's TTLs marked one of its packets, or a message names a
number (no built-in rule's does). The per-rule cap counts findings in the serial run's order.

The Wireshark stream table's bound (the 8,192 most recently finished address/port pairs,
analyzer.flows.streams) is replayed the same way: each share logs where each pair was opened,
quoted and retired, and the client retires all of them in one queue as a serial run does, which
gives the serial run's `stream-numbers-bounded` count and the streams it opens anew for a pair it
forgot while the share still knew it.

Limits, all rarer than one conversation in tens of thousands: when the live-memory or
conversation bound hands conversations on early (a warning in a serial run too), shares (each
holding a fraction of them) do so at other moments; a share never forgets a pair before a serial
run does (WiresharkStreams.hold_requeued), but on a pair a serial run forgot and the share did
not, a conversation that began without a SYN and then sees one is numbered as the share numbered
it; an ICMP error whose quoted TCP conversation is not in
the capture becomes a conversation between the two hosts in the quoting share, where a serial run
may merge it with another share's. And unlike the live conversations, which --max-memory bounds,
the logs grow with the conversations a share ends (about 1.4 KB each, over half of it the host
log, kept whole until the share ends): about 37 MiB a share on the 1M-packet bench capture's 55,000
conversations, 2 equal shares (share 0, 5/9 of them beside a pool, about 41 MiB).
"""

from __future__ import annotations

import bisect
import concurrent.futures as cf
import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from analyzer.capture import open_capture
from analyzer.decode import Decoder, linktype_name
from analyzer.errors import CaptureError
from analyzer.flows import FlowTable
from analyzer.flows.shares import (
    END,
    HostEntry,
    PairEntry,
    ShareSink,
    compact_host_log,
    host_contexts,
    host_order,
    pair_order,
)
from analyzer.flows.shares import forgotten as replay_forgotten
from analyzer.flows.streams import RETIRED_PAIRS, forgotten_warning
from analyzer.flows.table import _TTL_ODD, MAX_HOSTS
from analyzer.model import CaptureResult, CaptureWarning, Conversation, Finding
from analyzer.pipeline import MAX_FINDINGS_PER_RULE, attach_drops, collector_paused, keep_evidence, packet_loop
from analyzer.scale import Job, _idle_worker, _ruleset, analyze_task, interruptible

Position = tuple[int, int]  # (frame, depth): depth 0 the packet, 1 the packet a tunnel carries ...


@dataclass
class ShareOutcome:
    """What one worker learnt of its share; positions are (frame, depth)."""

    result: CaptureResult
    # host-log index -> a conversation with findings, or needing host context, and its findings
    # under this share's numbers
    returned: dict[int, tuple[Conversation, list[Finding]]] = field(default_factory=dict)
    host_context: set[int] = field(default_factory=set)  # host-log indexes of those needing host context
    created: list[tuple[int, int, int]] = field(default_factory=list)  # per local id - 1: frame, depth, is ICMP
    tcp_opened: list[Position] = field(default_factory=list)  # per local tcp.stream
    udp_opened: list[Position] = field(default_factory=list)
    host_log: list[HostEntry] = field(default_factory=list)  # ShareSink.host_log
    pairs: list[PairEntry] = field(default_factory=list)  # ShareSink.pairs
    skipped_or_filtered: int = 0
    short_host_log: bool = False  # host_log holds only what a replay learns from (compact_host_log)


def _needs_host_context(conv: Conversation) -> bool:
    """build_conversation judges a side of fewer than three packets by its host's TTLs (RST, ICMP error)."""
    odd_judged = conv.client_stats.sent_rst or conv.server_stats.sent_rst or conv.icmp_errors
    return bool(odd_judged) and (conv.client_stats.packets < 3 or conv.server_stats.packets < 3)


# In a process pool this process follows share 0 while the others' outcomes are pickled in their
# processes and unpickled here (about 0.3 s of CPU for a share of the 1M-packet bench capture, beside
# 1.3 s for the share itself), so share 0 is made the bigger: each share is SLICES_PER_SHARE equal
# slices of the conversations (by the same hash), share 0 one slice more (5/9 of them with 2 shares).
SLICES_PER_SHARE = 4


def share_slices(share: int, shares: int, lead: bool) -> tuple[int, int, int]:
    """The slices (first, end, of how many) of share `share` of `shares`; `lead`: share 0 is bigger."""
    if not lead or shares < 2:
        return share, share + 1, shares
    slices = SLICES_PER_SHARE * shares + 1
    first = 0 if share == 0 else SLICES_PER_SHARE * share + 1
    return first, SLICES_PER_SHARE * (share + 1) + 1, slices


def analyze_share(path: str, share: int, shares: int, job: Job, lead: bool = False) -> ShareOutcome:
    """One worker's share of a capture: its conversations with findings, or needing host context, judged
    under the share's own numbers.

    lead: share 0 is bigger than the others (this process follows it, see SLICES_PER_SHARE).
    """
    from analyzer.filter import compile_filter

    rules = _ruleset(job.rule_dirs, job.select, job.ignore)
    conv_filter = compile_filter(job.filter) if job.filter else None
    out = ShareOutcome(CaptureResult(path=path))
    try:
        cap = open_capture(path)
    except CaptureError as exc:
        out.result.error = str(exc)
        return out

    def emit(conv: Conversation) -> None:
        if conv_filter is not None and not conv_filter(conv):
            out.skipped_or_filtered -= 1  # not counted, as in a serial run
            return
        if cap.drops:
            conv = attach_drops(conv, cap.drops)
        at = len(log)  # the entry ShareSink.ended is about to write for this conversation
        findings = rules.evaluate(conv)
        if _needs_host_context(conv):
            out.returned[at] = (conv, findings)
            out.host_context.add(at)
        elif findings:
            if not rules.names_numbers(findings):  # else judged again on the full timeline
                conv = keep_evidence(conv, findings)
            out.returned[at] = (conv, findings)

    extra: dict = {}
    if job.max_conversations is not None:
        extra["max_conversations"] = job.max_conversations
    if job.max_live_bytes is not None:
        extra["max_live_bytes"] = job.max_live_bytes
    admit = rules.could_fire if conv_filter is None else None
    table = FlowTable(emit, admit=admit, **extra)
    first, end, slices = share_slices(share, shares, lead)
    sink = ShareSink(table, first, slices, end)
    log = sink.host_log  # emit() files each conversation under the index its host-log entry gets
    decoder = Decoder()
    with collector_paused(), cap:
        packet_loop(cap.records(), decoder, sink)
        sink.frame, sink.depth = END, 0
        table.flush()
        result = out.result
        result.format = cap.format
        result.packets = cap.frames
        result.linktypes = [linktype_name(lt) for lt in cap.linktypes]
        result.warnings[:0] = list(cap.warnings)
    result.encapsulations = decoder.encapsulations()
    result.warnings.extend(decoder.warnings())
    result.warnings.extend(table.warnings())
    out.created, out.tcp_opened, out.udp_opened = sink.created, sink.tcp_opened, sink.udp_opened
    out.host_log, out.pairs = log, sink.pairs
    sink.detach()
    out.skipped_or_filtered += len(log)  # a host-log entry per conversation ended
    short, moved, hosts = compact_host_log(log, set(out.returned))
    if hosts < MAX_HOSTS // shares:  # the replay of short logs then seldom fills up (merge_shares); else whole
        out.host_log, out.short_host_log = short, True
        out.returned = {moved[i]: judged for i, judged in out.returned.items()}
        out.host_context = {moved[i] for i in out.host_context}
    return out


# -- the client: renumber, replay host context, judge --------------------------------------------


@dataclass
class _Numbers:
    """The serial run's openings, in order: a conversation's id (or stream) is its opening's rank."""

    ids: list[Position]
    icmp: list[Position]
    tcp: list[Position]
    udp: list[Position]
    forgotten: int  # stream pairs the serial run forgets (the stream-numbers-bounded warning)
    # (share, 1 if TCP, stream the share kept using) -> where a serial run opened a new stream for
    # its pair instead, having forgotten it (analyzer.flows.shares.forgotten)
    reopened: dict[tuple[int, int, int], list[Position]]


def _numbers(outcomes: list[ShareOutcome]) -> _Numbers:
    pairs = [o.pairs for o in outcomes]
    forgotten, reopened = replay_forgotten(pairs, pair_order(pairs), RETIRED_PAIRS)
    again: dict[tuple[int, int, int], list[Position]] = {}
    for s, tcp, f, d, kept in reopened:  # in order of position
        again.setdefault((s, tcp, kept), []).append((f, d))
    return _Numbers(
        sorted((f, d) for o in outcomes for f, d, _ in o.created),
        sorted((f, d) for o in outcomes for f, d, icmp in o.created if icmp),
        sorted([*(p for o in outcomes for p in o.tcp_opened), *((f, d) for _, t, f, d, _ in reopened if t)]),
        sorted([*(p for o in outcomes for p in o.udp_opened), *((f, d) for _, t, f, d, _ in reopened if not t)]),
        forgotten,
        again,
    )


def _renumbered(conv: Conversation, s: int, o: ShareOutcome, n: _Numbers, timeline: tuple | None) -> Conversation:
    """Share s's conversation with the serial run's id and stream numbers (and `timeline`, when given)."""
    f, d, _ = o.created[conv.id - 1]
    timeline = conv.timeline if timeline is None else timeline
    if conv.proto == "icmp":
        stream = bisect.bisect_left(n.icmp, (f, d))
        return dataclasses.replace(
            conv, id=bisect.bisect_left(n.ids, (f, d)) + 1, stream=stream, streams=(stream,), timeline=timeline
        )
    tcp = int(conv.proto == "tcp")
    opened, table = (o.tcp_opened, n.tcp) if tcp else (o.udp_opened, n.udp)

    def number(local: int) -> int:
        if local < 0:
            return local
        where = opened[local]
        again = n.reopened.get((s, tcp, local))
        if again:  # the serial run opened this pair anew since: from there on, that stream
            k = bisect.bisect_right(again, (f, d))
            where = again[k - 1] if k else where
        return bisect.bisect_left(table, where)

    return dataclasses.replace(
        conv,
        id=bisect.bisect_left(n.ids, (f, d)) + 1,
        stream=number(conv.stream),
        streams=tuple(number(x) for x in conv.streams),
        timeline=timeline,
    )


def _host_marked(conv: Conversation, c_host: dict[int, int] | None, s_host: dict[int, int] | None) -> tuple | None:
    """The timeline with the marks build_conversation gives a side of fewer than three packets from
    its host's TTLs; None when they mark nothing new."""
    timeline = list(conv.timeline)
    changed = False
    for direction, stats, host in ((0, conv.client_stats, c_host), (1, conv.server_stats, s_host)):
        if not host or stats.packets >= 3:
            continue
        value, count = max(host.items(), key=lambda kv: kv[1])
        if count < 2:
            continue
        for i, ev in enumerate(timeline):
            if ev.dir == direction and ev.icmp is None and ev.ttl not in host and not ev.marks & _TTL_ODD:
                timeline[i] = ev._replace(marks=ev.marks | _TTL_ODD)
                changed = True
    return tuple(timeline) if changed else None


def merge_shares(outcomes: list[ShareOutcome], rules) -> CaptureResult | None:
    """The serial run's result from the shares' outcomes (see the module doc); None when short host
    logs cannot replay it: the serial run came to know MAX_HOSTS hosts and forgot them all."""
    first = outcomes[0].result
    result = CaptureResult(
        path=first.path,
        format=first.format,
        linktypes=first.linktypes,
        packets=first.packets,
        error=first.error,
        encapsulations=first.encapsulations,
    )
    if result.error:
        return result
    numbers = _numbers(outcomes)
    logs = [o.host_log for o in outcomes]
    order = host_order(logs)
    contexts, filled = host_contexts(logs, order, [o.host_context for o in outcomes])
    if filled and any(o.short_host_log for o in outcomes):
        return None
    per_rule: dict[str, int] = {}
    for s, i in order:
        o = outcomes[s]
        judged = o.returned.get(i)
        if judged is not None:
            conv, findings = judged
            marked = _host_marked(conv, *contexts[(s, i)]) if i in o.host_context else None
            conv = _renumbered(conv, s, o, numbers, marked)
            if marked is not None or rules.names_numbers(findings):
                _keep(result, conv, rules.evaluate(conv), per_rule, trim=True)
            else:  # what the share found holds: only the numbers change
                _keep(result, conv, [rules.renumbered(f, conv) for f in findings], per_rule, trim=i in o.host_context)
    result.conversation_count = sum(o.skipped_or_filtered for o in outcomes)
    result.warnings = _warnings(outcomes, per_rule, numbers)
    result.conversations.sort(key=lambda c: c.id)
    result.findings.sort(key=lambda f: (f.conversation, f.frames[:1], f.rule))
    return result


def _keep(
    result: CaptureResult, conv: Conversation, findings: list[Finding], per_rule: dict[str, int], trim: bool
) -> None:
    """What the pipeline's emit does with a judged conversation: cap each rule, keep the evidence
    (`trim`: the share sent the whole timeline)."""
    for f in findings:
        per_rule[f.rule] = per_rule.get(f.rule, 0) + 1
    findings = [f for f in findings if per_rule[f.rule] <= MAX_FINDINGS_PER_RULE]
    if findings:
        result.findings.extend(findings)
        result.conversations.append(keep_evidence(conv, findings) if trim else conv)


_TABLE_CODES = ("memory-bound", "stream-numbers-bounded", "conversation-table-full", "no-ip-packets")


def _warnings(outcomes: list[ShareOutcome], per_rule: dict[str, int], numbers: _Numbers) -> list[CaptureWarning]:
    """The capture's and decoder's warnings (every share has them), then the flow table's as a serial run's."""
    out = [w for w in outcomes[0].result.warnings if w.code not in _TABLE_CODES]
    table = {w.code: w for o in outcomes for w in o.result.warnings if w.code in _TABLE_CODES}
    if "memory-bound" in table:
        out.append(table["memory-bound"])
    if numbers.forgotten:  # each share remembers its own recent pairs: the serial run's count is replayed
        out.append(forgotten_warning(numbers.forgotten))
    if "conversation-table-full" in table:
        out.append(table["conversation-table-full"])
    for code, count in sorted(per_rule.items()):
        if count > MAX_FINDINGS_PER_RULE:
            out.append(
                CaptureWarning(
                    "findings-capped",
                    f"{code} fired on {count} conversations; the first {MAX_FINDINGS_PER_RULE} "
                    f"are reported (a scan or an outage repeats one pattern; --filter narrows the capture)",
                )
            )
    packets = outcomes[0].result.packets
    if packets == 0:
        out.append(CaptureWarning("no-packets", "the capture holds no packets"))
    elif not numbers.ids:  # as analyze_capture says it
        out.append(
            CaptureWarning(
                "no-ip-packets",
                f"none of the {packets} packets is a TCP, UDP or ICMP packet over IP "
                "(wrong interface, Wi-Fi monitor mode, or a link type wsadiag cannot decode?)",
            )
        )
    return out


def analyze_split(
    path: str, job: Job, shares: int, run: Callable[..., list[ShareOutcome]] | None = None
) -> CaptureResult:
    """One capture analysed by `shares` processes, each following its share of the conversations.

    This process follows share 0 itself while the pool's processes follow the others: one
    process fewer to start, and one outcome fewer to pickle and unpickle; share 0 is the bigger
    (SLICES_PER_SHARE), so that this process is not left waiting for the others' outcomes.
    """
    try:
        if run is None:
            with cf.ProcessPoolExecutor(max_workers=max(1, shares - 1), initializer=_idle_worker) as pool:
                others = [
                    pool.submit(interruptible, analyze_share, path, k, shares, job, True) for k in range(1, shares)
                ]
                outcomes = [analyze_share(path, 0, shares, job, True), *(f.result() for f in others)]
        else:
            outcomes = run(path, job, shares)
    except cf.BrokenExecutor:  # a process of the pool died (cf.process is imported only with a pool)
        return CaptureResult(path=path, error=f"{path}: a worker process analysing a share of this capture died")
    merged = merge_shares(outcomes, _ruleset(job.rule_dirs, job.select, job.ignore))
    # None: tens of thousands of hosts, past what short host logs replay: a serial run, as the report must be its
    return merged if merged is not None else analyze_task(path, job)[0]
