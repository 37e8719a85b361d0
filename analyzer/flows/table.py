"""The conversation table: packets in, finished Conversations out.

Each TCP conversation follows Zeek's endpoint state machine (so conn_state and history mean what
they mean in Zeek) and adds what a diagnosis needs: sequence tracking, idle gaps, TTL/IP ID
habits, payload sniffs and a bounded timeline. A conversation is handed on (to `emit`) as soon
as it can no longer change, so memory follows the conversations alive at once.

Eviction policy (documented in the README):
- closed (both FINs, or a RST): handed on CLOSE_LINGER seconds of capture time after its last
  packet, or when a new SYN reuses its 5-tuple;
- UDP and ICMP: after UDP_IDLE seconds without a packet (Zeek's udp_inactivity_timeout);
- a TCP attempt that got no answer: after ATTEMPT_IDLE seconds;
- any other TCP conversation: after TCP_IDLE seconds without a packet;
- when `max_conversations` are alive, or their estimated memory passes `max_live_bytes` (1 GiB by
  default), the least recently active tenth is handed on early, with a warning; everything left
  is handed on at the end of the capture.

Idle limits are kept in a timer wheel of one-second slots, so expiry costs what expires, not a pass
over every live conversation (nor a heap's comparisons for every conversation). The clock that
drives expiry follows the capture's timestamps but not a single outlier: a jump of more than
MAX_CLOCK_STEP is believed only when CLOCK_CONFIRM packets in a row agree with it (a lone far-future
timestamp would otherwise stop expiry, or end every conversation at once).
"""

from __future__ import annotations

import _socket  # socket's C core: `import socket` builds its enums, a few ms of every start-up
import math
from collections import deque
from typing import Callable, Final

from analyzer.flows import zeek
from analyzer.flows.sniff import SNIFF_FIRST_BYTES, sniff, tls_alert
from analyzer.flows.streams import WiresharkStreams, forgotten_warning
from analyzer.model import (
    CaptureWarning,
    Conversation,
    Endpoint,
    Event,
    Mark,
    Packet,
    Quoted,
    SideStats,
    Traits,
    Transport,
)
from analyzer.protocol import (
    ACK,
    FIN,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    LIKELY_SERVER_PORTS,
    RST,
    SYN,
)
from analyzer.sink import Sink

CLOSE_LINGER: Final = 5.0  # seconds; Zeek's tcp_close_delay / tcp_reset_delay
UDP_IDLE: Final = 60.0  # Zeek's udp_inactivity_timeout
ATTEMPT_IDLE: Final = 180.0  # longer than any stack's connect() retry schedule (Linux: 127 s)
TCP_IDLE: Final = 7300.0  # beyond the 2-hour default keep-alive time, so idle-timeout resets stay in one conversation
CHECK_EVERY: Final = 1.0  # seconds of capture time between looks at closed conversations
TIMELINE_HEAD: Final = 12  # events kept from the start of a conversation (the handshake and first exchange)
TIMELINE_TAIL: Final = 36  # events kept from its end (where failures show)
MAX_TTL_VALUES: Final = 8  # distinct TTLs counted per side
DEFAULT_MAX_CONVERSATIONS: Final = 200_000
DEFAULT_MAX_LIVE_BYTES: Final = 1 << 30  # 1 GiB of live conversations (estimated, see FLOW_BYTES)
# Memory of a live conversation, measured with tracemalloc on CPython 3.11 (64-bit): about 1.7 KiB
# for the flow, its two endpoints and its three table entries, and per timeline row kept (a
# TimelineRow and its numbers) EVENT_BYTES. A full timeline (48 rows) makes 8-16 KiB.
FLOW_BYTES: Final = 1700
# Compiled (mypyc), a TimelineRow holds its numbers unboxed: about 170 bytes, half what it takes as
# Python (where its boxed numbers are shared as often as not, so 300 holds).
COMPILED: Final = not globals().get("__file__", "table.py").endswith(".py")
EVENT_BYTES: Final = 180 if COMPILED else 300
MAX_CLOCK_STEP: Final = 300.0  # seconds; a timestamp further from the expiry clock is an outlier until confirmed
CLOCK_CONFIRM: Final = 3  # packets in a row that must agree before the expiry clock follows a jump
MAX_HOSTS: Final = 65_536  # addresses whose TTL habits are remembered across conversations

_new = tuple.__new__  # builds an Event without NamedTuple's Python-level __new__
SEQ_SPACE: Final = 0x100000000  # TCP sequence numbers are taken modulo 2**32 (RFC 9293 3.4)
_M32: Final = 0xFFFFFFFF  # SEQ_SPACE - 1: masks a difference into sequence space
_HALF: Final = 0x80000000  # SEQ_SPACE // 2: a masked difference this large is negative
# Zeek's TOO_LARGE_SEQ_DELTA: a SYN or RST this far from a side's last sequence number does not
# move it, and an acknowledgement that jumps this far to 0 is not believed.
TOO_LARGE_SEQ_DELTA: Final = 1048576
_CONTROL: Final = SYN | FIN | RST

# Per-direction history-seen bits (Zeek's HIST_*), shifted left 16 for the responder.
_H_SYN: Final = 1
_H_FIN: Final = 2
_H_RST: Final = 4
_H_ACK: Final = 8
_H_DATA: Final = 16
_H_MULTI: Final = 32
_H_FINRST: Final = 64

# Mark bits as plain ints for the hot path.
_RETX: Final = int(Mark.RETRANSMISSION)
_OOO: Final = int(Mark.OUT_OF_ORDER)
_GAP: Final = int(Mark.GAP)
_DUPACK: Final = int(Mark.DUP_ACK)
_KA: Final = int(Mark.KEEPALIVE)
_KA_ACK: Final = int(Mark.KEEPALIVE_ACK)
_ZWIN: Final = int(Mark.ZERO_WINDOW)
_WPROBE: Final = int(Mark.WINDOW_PROBE)
_ACKS_FIN: Final = int(Mark.ACKS_FIN)
_AFTER_PEER_FIN: Final = int(Mark.AFTER_PEER_FIN)
_AFTER_OWN_FIN: Final = int(Mark.AFTER_OWN_FIN)
_AFTER_RST: Final = int(Mark.AFTER_RST)
_ACK_UNSEEN: Final = int(Mark.ACK_UNSEEN)
_NEW_DATA: Final = int(Mark.NEW_DATA)
_UNACKED_AT_RST: Final = int(Mark.UNACKED_AT_RST)
_SYN_RETX: Final = int(Mark.SYN_RETRANSMISSION)
_TTL_ODD: Final = int(Mark.TTL_ODD)
_IPID_ODD: Final = int(Mark.IPID_ODD)
_ICMP_ERROR: Final = int(Mark.ICMP_ERROR)
_AFTER_SILENCE: Final = int(Mark.AFTER_SILENCE)


def _sdelta(a: int, b: int) -> int:
    """a - b in 32-bit sequence space, as a signed number."""
    d = (a - b) & _M32
    return d - SEQ_SPACE if d >= _HALF else d


def endpoint_key(src: bytes, sport: int, dst: bytes, dport: int) -> bytes:
    """The key a packet finds its flow by: source and destination address, then the two ports.

    This is the byte layout of the headers themselves (IPv4 or IPv6 addresses, then the first four
    bytes of TCP or UDP), so the decoder's fast path cuts it out of a frame in one slice.
    """
    return src + dst + bytes(((sport >> 8) & 0xFF, sport & 0xFF, (dport >> 8) & 0xFF, dport & 0xFF))


def reverse_key(key: bytes) -> bytes:
    """The endpoint key of the packets going the other way."""
    alen = (len(key) - 4) >> 1
    return key[alen : 2 * alen] + key[:alen] + key[-2:] + key[-4:-2]


_NO_TTLS: Final[dict[int, int]] = {}  # the ttls of every side that has counted none yet; never written


class _End:
    """One endpoint's view of a conversation while it is alive."""

    __slots__ = (
        "state",
        "prev_state",
        "start",
        "last",
        "ackseq",
        "pkts",
        "payload",
        "rxmit",
        "rxmit_next",
        "zwin",
        "zwin_next",
        "gaps",
        "gaps_next",
        "dupacks",
        "keepalives",
        "hist_syn",
        "hist_fin",
        "hist_rst",
        "last_ack",
        "last_win",
        "fin_seq",
        "syn_seq",
        "max_ack",
        "gap_pending",
        "last_was_ka",
        "ttls",
        "ttl_last",
        "ttl_run",
        "ipid_last",
        "ipid_steps",
        "ipid_small",
        "ipid_zero",
        "kind",
        "head",
        "sent_syn",
        "sent_fin",
        "sent_rst",
        "seq_known",
        "fin_frame",
        "alert",
        "seen_flags",
        "seen_marks",
        "seen_data",
        "seen_icmp",
        "seen_kinds",
    )

    def __init__(self) -> None:
        self.state = zeek.INACTIVE
        self.prev_state = zeek.INACTIVE
        self.start = self.last = self.ackseq = 0
        self.seq_known = False
        self.pkts = self.payload = 0
        self.rxmit = self.zwin = self.gaps = self.dupacks = self.keepalives = 0
        self.rxmit_next = self.zwin_next = self.gaps_next = 1
        self.hist_syn = self.hist_fin = self.hist_rst = -1
        self.last_ack = self.last_win = -1
        self.fin_seq = self.syn_seq = -1
        self.fin_frame = 0
        self.max_ack = -1
        self.gap_pending = False
        self.last_was_ka = False
        # TTL -> packets; complete once flush_ttls() has run. Most sides never change TTL while
        # alive: they share one empty dict until their first run is counted.
        self.ttls: dict[int, int] = _NO_TTLS
        self.ttl_last = -1  # the TTL of the run of packets not yet counted into ttls
        self.ttl_run = 0
        self.ipid_last = -1
        self.ipid_steps = self.ipid_small = self.ipid_zero = 0
        self.kind = ""
        self.head = b""
        self.alert = b""  # level and description of the first plaintext TLS alert this side sent
        self.sent_syn = self.sent_fin = self.sent_rst = False
        # What this direction's timeline rows carried, for Traits (ICMP errors count toward the
        # side they travel to, as their rows do).
        self.seen_flags = self.seen_marks = 0
        self.seen_data = self.seen_icmp = False
        self.seen_kinds: set[str] | None = None

    def saw(self, flags: int, marks: int, plen: int, kind: str) -> None:
        """Note a timeline row of this direction in the Traits summary."""
        self.seen_flags |= flags
        self.seen_marks |= marks
        if plen > 0:
            self.seen_data = True
        if kind:
            if self.seen_kinds is None:
                self.seen_kinds = set()
            self.seen_kinds.add(kind)

    def saw_ttl(self, ttl: int) -> None:
        """Count a packet's TTL: runs of equal values are added up before they touch the dict."""
        if ttl == self.ttl_last:
            self.ttl_run += 1
        else:
            self.flush_ttls()
            self.ttl_last = ttl
            self.ttl_run = 1

    def flush_ttls(self) -> None:
        """Count the pending run into ttls, which keeps at most MAX_TTL_VALUES distinct values."""
        if self.ttl_run:
            ttls = self.ttls
            if ttls is _NO_TTLS:
                ttls = self.ttls = {}
            if self.ttl_last in ttls:
                ttls[self.ttl_last] += self.ttl_run
            elif len(ttls) < MAX_TTL_VALUES:
                ttls[self.ttl_last] = self.ttl_run
            self.ttl_run = 0

    def set_state(self, new: int) -> None:
        if new != self.state:
            self.prev_state = self.state
            self.state = new

    def size(self) -> int:
        """Payload bytes in sequence space, as Zeek's TCP_Endpoint::Size counts them."""
        if not self.seq_known:
            return 0
        if self.prev_state == zeek.SYN_SENT and self.state == zeek.RESET:
            return 0
        top = max(_sdelta(self.last, self.start), _sdelta(self.ackseq, self.start))
        size = max(top, 0)
        if size > 0:
            size -= 1  # the SYN's octet (real or assumed)
        if size > 0 and (self.state == zeek.CLOSED or (self.prev_state == zeek.CLOSED and self.state == zeek.RESET)):
            size -= 1  # the FIN's octet
        return size


class _TimerWheel:
    """Deadlines (capture time, flow id) in one-second slots: adding one is an append, and taking
    those that have come due visits only their slots. An entry is not moved when its flow sees a
    packet; the table checks it when it comes due and adds it again if the flow is still busy."""

    __slots__ = ("slots", "first", "size")

    def __init__(self) -> None:
        self.slots: dict[int, list[tuple[float, int]]] = {}
        self.first = 0  # no slot below this one holds an entry (when there are any)
        self.size = 0  # entries held

    def add(self, deadline: float, fid: int) -> None:
        slot = math.floor(deadline)
        entries = self.slots.get(slot)
        if entries is None:
            self.slots[slot] = [(deadline, fid)]
            if slot < self.first or self.size == 0:
                self.first = slot
        else:
            entries.append((deadline, fid))
        self.size += 1

    def take_before(self, now: float) -> list[tuple[float, int]]:
        """Remove and return the entries whose deadline is before `now` (in no particular order)."""
        if not self.size:
            return []
        last = math.floor(now)
        slots = self.slots
        if last - self.first > 4 * len(slots):
            due_slots = sorted(k for k in slots if k <= last)  # a jump in time: visit only the slots held
        else:
            due_slots = [k for k in range(self.first, last + 1) if k in slots]
        out: list[tuple[float, int]] = []
        for slot in due_slots:
            entries = slots.pop(slot)
            if slot == last:  # the current second: some of its entries are not due yet
                keep = [e for e in entries if e[0] >= now]
                if keep:
                    slots[slot] = keep
                    entries = [e for e in entries if e[0] < now]
            out.extend(entries)
        self.size -= len(out)
        self.first = last if last in slots else last + 1
        return out


class _RowMeter:
    """Timeline rows held by a table's live flows, and when the table looks at its bounds next.

    The flows count into this small object rather than into the table itself, so a flow does not
    point back at its table: no reference cycle keeps a finished analysis alive until the cycle
    collector (paused for a run) gets to it.
    """

    __slots__ = ("rows", "row_budget", "next_check")

    def __init__(self, budget: int) -> None:
        self.rows = 0
        self.row_budget = budget
        self.next_check = float("-inf")  # capture time of the next expiry; -inf: look at every packet


class _Flow:
    """A conversation while it is alive."""

    __slots__ = (
        "id",
        "stream",
        "streams",
        "proto",
        "c_addr",
        "c_port",
        "s_addr",
        "s_port",
        "inferred",
        "orig",
        "resp",
        "history",
        "hist_seen",
        "first_frame",
        "last_frame",
        "start",
        "last_ts",
        "head",
        "tail",
        "npk",
        "icmp_errors",
        "closed",
        "rst_seen",
        "table",
        "c_key",
        "s_key",
        "syn_seen",
        "synack_seen",
        "ack_seen",
        "meter",
    )

    def __init__(
        self,
        table: dict[bytes, _Flow],
        c_key: bytes,
        s_key: bytes,
        proto: Transport,
        c_addr: bytes,
        c_port: int,
        s_addr: bytes,
        s_port: int,
        inferred: bool,
        number: int,
        ts: float,
    ) -> None:
        self.table = table  # the per-protocol dict that holds this flow under c_key and s_key
        self.c_key = c_key  # endpoint key of the client's packets (see endpoint_key)
        self.s_key = s_key  # endpoint key of the server's packets
        self.proto = proto
        self.c_addr, self.c_port, self.s_addr, self.s_port = c_addr, c_port, s_addr, s_port
        self.inferred = inferred
        self.orig = _End()
        self.resp = _End()
        self.history = ""  # Zeek's history letters (a few per conversation: a string is smaller than a list)
        self.hist_seen = 0
        self.first_frame = self.last_frame = number
        self.start = self.last_ts = ts
        # Timeline rows: Event fields as plain tuples (made into Events when the conversation ends).
        self.head: list[TimelineRow] = []
        self.tail: deque[TimelineRow] | None = None  # made when the head is full: most flows never need it
        self.npk = 0
        self.icmp_errors = 0
        self.closed = False
        self.rst_seen = False
        self.syn_seen = self.synack_seen = self.ack_seen = False
        self.id = 0
        self.stream = -1  # Wireshark's stream of its first packet (set by in_stream)
        self.streams: tuple[int, ...] = ()  # every Wireshark stream its packets fell in, when more than one
        self.meter: _RowMeter | None = None  # counts the timeline rows its table's flows hold

    def in_stream(self, stream: int) -> None:
        """Note the Wireshark stream of a packet of this flow (usually the same every time)."""
        if stream != self.stream:
            if self.stream < 0:
                self.stream = stream
            elif stream not in self.streams:
                self.streams = (self.streams or (self.stream,)) + (stream,)

    def record(self, ev: TimelineRow) -> None:
        """Add a packet's row to the bounded timeline."""
        if self.npk < TIMELINE_HEAD:
            self.head.append(ev)
        else:
            if self.tail is None:
                self.tail = deque(maxlen=TIMELINE_TAIL)
            self.tail.append(ev)
        self.count(ev.ts, ev.frame)

    def count(self, ts: float, frame: int) -> None:
        """Count a packet, whether its row was kept (record) or not (a listing keeps none).

        The table's meter is charged alike either way, so the memory bound hands conversations
        on at the same moments and `conversations` lists the conversations `analyze` judges."""
        if self.npk < TIMELINE_HEAD:
            meter = self.meter
            if meter is not None:
                meter.rows += 1
        elif self.npk == TIMELINE_HEAD:
            self._charge_tail()
        self.npk += 1
        if ts > self.last_ts:
            self.last_ts = ts
        self.last_frame = frame

    def _charge_tail(self) -> None:
        """Count a new tail as full (no count per packet; the estimate errs high), and have the
        table look at its memory bound at the next packet when that is passed."""
        meter = self.meter
        if meter is None:
            return
        meter.rows += TIMELINE_TAIL
        if meter.rows * EVENT_BYTES > meter.row_budget:
            meter.next_check = float("-inf")

    def rows_charged(self) -> int:
        """Timeline rows this flow has added to its table's meter."""
        return min(self.npk, TIMELINE_HEAD) + (TIMELINE_TAIL if self.npk > TIMELINE_HEAD else 0)

    def check_history(self, bit: int, letter: str, is_orig: bool) -> bool:
        """Record a once-per-direction letter; True if it had been recorded already (Zeek's CheckHistory)."""
        mask = bit if is_orig else bit << 16
        if self.hist_seen & mask:
            return True
        self.hist_seen |= mask
        self.history += letter if is_orig else letter.lower()
        return False


def _seq_len(flags: int, plen: int) -> int:
    """Sequence space a segment occupies: its payload (none on a RST) plus one for a SYN and for a FIN."""
    n = (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
    return n if flags & RST else n + plen


def _server_sent(sport: int, dport: int, flags: int) -> bool:
    """For a conversation that starts without a pure SYN: whether its first sender is the server,
    guessed from the ports as Zeek does."""
    if sport not in LIKELY_SERVER_PORTS:
        return False
    if dport in LIKELY_SERVER_PORTS:
        return not flags & SYN and sport < dport
    return True


def _init_endpoint(end: _End, flags: int, seq: int, past: int) -> None:
    """Zeek's init_endpoint: where a side's sequence space starts, from its first segment or a new SYN."""
    st = end.state
    if st == zeek.INACTIVE:
        if flags & SYN:
            end.start = end.ackseq = seq
            end.last = past
        else:
            end.start = end.ackseq = (seq - 1) & _M32  # as if a SYN had come just before
            end.last = seq
        end.seq_known = True
    elif (
        flags & SYN
        and seq != end.start
        and (
            st in (zeek.SYN_SENT, zeek.SYN_ACK_SENT, zeek.ESTABLISHED, zeek.PARTIAL)
            or (st == zeek.RESET and end.prev_state == zeek.INACTIVE)
        )
    ):
        end.start = end.ackseq = seq  # a new ISN: the stack retried connect() with another one
        end.last = past


def _observe(
    flow: _Flow,
    end: _End,
    peer: _End,
    is_orig: bool,
    st: int,
    flags: int,
    seq: int,
    ack: int,
    win: int,
    plen: int,
    ahead: int,
    delta_last: int,
) -> int:
    """The marks of a segment, judged against what was known before it (st: the sender's state then).

    ahead: seq minus the next sequence number expected; delta_last: the same for the segment's end.
    """
    marks = _AFTER_RST if flow.rst_seen else 0
    control = flags & _CONTROL
    # seq one below the next byte, with no byte (Linux) or one garbage byte (Windows).
    keepalive = plen <= 1 and not control and ahead == -1 and (st == zeek.ESTABLISHED or st == zeek.PARTIAL)
    if keepalive:
        marks |= _KA
        end.keepalives += 1
    elif plen:
        marks |= _data_marks(flow, end, peer, is_orig, flags, seq, plen, ahead, delta_last)
    elif flags & ACK and not control:
        marks |= _pure_ack_marks(end, peer, ack, win)
    end.last_was_ka = keepalive
    if flags & ACK:
        marks |= _ack_marks(end, peer, flags, ack)
    if win == 0 and not flags & (RST | SYN):
        marks |= _ZWIN
    return marks


def _data_marks(
    flow: _Flow, end: _End, peer: _End, is_orig: bool, flags: int, seq: int, plen: int, ahead: int, delta_last: int
) -> int:
    """What a segment with payload is: new data, a retransmission, out of order, after a gap, a window probe."""
    marks = 0
    if not flags & RST:  # a RST's payload (a diagnostic text, if any) is not stream data
        if ahead > 0 and end.pkts:
            marks = _GAP | _NEW_DATA
            end.gap_pending = True
            end.gaps += 1
            if end.gaps == end.gaps_next:  # history letters on a log scale, as Zeek
                end.gaps_next *= 10
                flow.history += "G" if is_orig else "g"
        elif delta_last > 0:
            marks = _NEW_DATA
        elif end.gap_pending:
            marks = _OOO
        elif plen == 1 and peer.last_win == 0 and ahead == 0:
            marks = _WPROBE
        else:
            marks = _RETX
    if peer.sent_fin:
        marks |= _AFTER_PEER_FIN
    if end.fin_seq >= 0 and _sdelta(seq, end.fin_seq) >= 0:
        marks |= _AFTER_OWN_FIN
    return marks


def _pure_ack_marks(end: _End, peer: _End, ack: int, win: int) -> int:
    """A segment with neither payload nor SYN/FIN/RST: a keep-alive's answer or a duplicate ACK."""
    if peer.last_was_ka:
        peer.last_was_ka = False
        return _KA_ACK
    if ack == end.last_ack and win == end.last_win:
        end.dupacks += 1
        return _DUPACK
    return 0


def _ack_marks(end: _End, peer: _End, flags: int, ack: int) -> int:
    """What an acknowledgement covers: the peer's FIN, or bytes the capture never saw the peer send."""
    marks = 0
    if peer.fin_seq >= 0 and _sdelta(ack, peer.fin_seq + 1) >= 0:
        marks |= _ACKS_FIN
    if not flags & RST and peer.state != zeek.INACTIVE and peer.seq_known and _sdelta(ack, peer.last) > 0:
        marks |= _ACK_UNSEEN
    return marks


def _control(
    flow: _Flow, end: _End, peer: _End, is_orig: bool, number: int, flags: int, seq: int, ack: int, plen: int, rel: int
) -> int:
    """A SYN, FIN or RST: its marks, its history letter, and what it tells about its sender."""
    marks = 0
    if flags & SYN:
        if end.sent_syn and seq == end.syn_seq:
            marks |= _SYN_RETX
        end.sent_syn = True
        end.syn_seq = seq
    if flags & RST:
        if _unacked_at_rst(end, peer, flags, ack):
            marks |= _UNACKED_AT_RST
        flow.rst_seen = True
        end.sent_rst = True
    _control_history(flow, end, is_orig, flags, plen, rel)
    if flags & FIN:
        if not end.sent_fin:
            end.fin_frame = number
        end.sent_fin = True
        end.fin_seq = (seq + plen) & _M32
    return marks


def _unacked_at_rst(end: _End, peer: _End, flags: int, ack: int) -> bool:
    """Whether the peer had sent data that the RST's sender never acknowledged (the RST's own ACK counts)."""
    if not (peer.seq_known and peer.payload):
        return False
    acked = end.max_ack
    if flags & ACK and (acked < 0 or _sdelta(ack, acked) > 0):
        acked = ack
    if acked < 0:
        return True
    unacked = _sdelta(peer.last, acked)
    return unacked > (1 if peer.sent_fin else 0)  # the peer's FIN occupies one number


def _control_history(flow: _Flow, end: _End, is_orig: bool, flags: int, plen: int, rel: int) -> None:
    """Zeek's update_history for a SYN, FIN or RST: its letter once, and again whenever its sequence number moves."""
    n = (1 if flags & SYN else 0) + (1 if flags & FIN else 0) + (1 if flags & RST else 0)
    if n > 1:
        if flags & FIN and flags & RST:
            flow.check_history(_H_FINRST, "I", is_orig)
        else:
            flow.check_history(_H_MULTI, "Q", is_orig)
        return
    rel = rel - SEQ_SPACE if rel >= _HALF else rel
    if flags & SYN:
        code = "H" if flags & ACK else "S"
        if flow.check_history(_H_SYN, code, is_orig) and rel != end.hist_syn:
            flow.history += code if is_orig else code.lower()
        end.hist_syn = rel
    elif flags & FIN:
        fin_at = rel + plen
        if flow.check_history(_H_FIN, "F", is_orig) and fin_at != end.hist_fin:
            flow.history += "F" if is_orig else "f"
        end.hist_fin = fin_at
    else:
        if flow.check_history(_H_RST, "R", is_orig) and rel != end.hist_rst:
            flow.history += "R" if is_orig else "r"
        end.hist_rst = rel


def _update_history(flow: _Flow, is_orig: bool, flags: int, plen: int) -> None:
    """Zeek's update_history for a segment without SYN, FIN or RST: D (data) or A (pure ACK), once per side."""
    mask = (_H_DATA if plen else _H_ACK if flags & ACK else 0) << (0 if is_orig else 16)
    if mask and not flow.hist_seen & mask:
        flow.hist_seen |= mask
        letter = "D" if plen else "A"
        flow.history += letter if is_orig else letter.lower()


def _update_window(flow: _Flow, end: _End, peer: _End, is_orig: bool, flags: int, win: int) -> None:
    """Zeek's update_window: zero windows count unless they come with or after a RST, or after the peer's FIN."""
    if win == 0 and not flags & (RST | SYN) and peer.state != zeek.CLOSED and end.state != zeek.RESET:
        end.zwin += 1
        if end.zwin == end.zwin_next:
            end.zwin_next *= 10
            flow.history += "W" if is_orig else "w"


def _update_ack(end: _End, peer: _End, flags: int, ack: int, win: int) -> int:
    """An acknowledgement moves what the peer has had acknowledged; returns the ack relative to the peer's ISN."""
    rel_ack = 0
    if flags & ACK:
        if peer.state == zeek.INACTIVE:
            rel_ack = 1  # the peer has sent nothing yet: its sequence space starts just below this ack
            peer.start = peer.ackseq = peer.last = (ack - 1) & _M32
            peer.seq_known = True
        else:
            rel_ack = (ack - peer.start) & _M32
            if not flags & RST:
                d = _sdelta(ack, peer.ackseq)
                if d > 0 and not (ack == 0 and d > TOO_LARGE_SEQ_DELTA):  # Zeek ignores a far jump to ack 0
                    peer.ackseq = ack
        if not flags & RST and (end.max_ack < 0 or _sdelta(ack, end.max_ack) > 0):
            end.max_ack = ack
        end.last_ack = ack
    end.last_win = win
    return rel_ack


def _update_last_seq(
    flow: _Flow, end: _End, is_orig: bool, flags: int, plen: int, past: int, last: int, delta_last: int, marks: int
) -> None:
    """Zeek's update_last_seq: the highest sequence number a side has sent, and its retransmissions."""
    if flags & (SYN | RST) and (delta_last > TOO_LARGE_SEQ_DELTA or delta_last < -TOO_LARGE_SEQ_DELTA):
        pass  # a SYN or RST that far off is not taken as this side's sequence space (Zeek)
    elif flags & FIN and last == ((end.start + 1) & _M32):
        end.last = past  # a FIN right after the SYN
    elif end.state == zeek.RESET:
        pass  # nothing after a side's RST moves its sequence space
    elif delta_last > 0:
        end.last = past
    elif plen:
        end.rxmit += 1
        if end.rxmit == end.rxmit_next:
            end.rxmit_next *= 10
            flow.history += "T" if is_orig else "t"
    if end.gap_pending and delta_last >= 0 and not marks & _GAP:
        end.gap_pending = False  # the hole is filled


def _first_packet(flow: _Flow, end: _End, peer: _End, is_orig: bool, flags: int, plen: int) -> None:
    """The state machine for a side's first packet: Zeek's INACTIVE endpoint."""
    if flags & SYN:
        if is_orig:
            end.set_state(zeek.SYN_ACK_SENT if flags & ACK else zeek.SYN_SENT)
        else:
            if not flags & ACK and peer.state == zeek.SYN_ACK_SENT:
                peer.set_state(zeek.ESTABLISHED)  # SYN and SYN/ACK seen in reverse order
            if peer.state == zeek.SYN_SENT:
                peer.set_state(zeek.ESTABLISHED)
            end.set_state(zeek.ESTABLISHED)
    if flags & FIN:
        end.set_state(zeek.CLOSED)
    if flags & RST:
        end.set_state(zeek.RESET)
    if end.state == zeek.INACTIVE:
        if not is_orig and plen == 0 and flow.orig.state == zeek.SYN_SENT:
            pass  # an ACK of the SYN before the SYN/ACK: not a partial connection
        elif flags & ACK and peer.state == zeek.ESTABLISHED:
            end.set_state(zeek.ESTABLISHED)
        else:
            end.set_state(zeek.PARTIAL)


def _close_complete(flow: _Flow) -> bool:
    """Zeek's "close complete": a RST, both FINs, or a FIN from one side while the other never spoke."""
    o, r = flow.orig.state, flow.resp.state
    return (
        o == zeek.RESET
        or r == zeek.RESET
        or (o == zeek.CLOSED and r in (zeek.CLOSED, zeek.INACTIVE))
        or (r == zeek.CLOSED and o == zeek.INACTIVE)
    )


class TimelineRow:
    """One packet's timeline row while its conversation is live: model.Event's fields, in Event's order.

    Rows become Events only when a conversation is built (most never are). Compiled, this class
    holds its numbers unboxed: one object per packet, where a tuple would need one more for each
    number in it. It is the one place that knows Event's field order.
    """

    __slots__ = (
        "frame",
        "ts",
        "dir",
        "flags",
        "seq",
        "ack",
        "plen",
        "win",
        "ttl",
        "ip_id",
        "marks",
        "idle",
        "payload",
        "icmp",
        "icmp_src",
    )

    def __init__(
        self,
        frame: int,
        ts: float,
        dir: int,
        flags: int,
        seq: int,
        ack: int,
        plen: int,
        win: int,
        ttl: int,
        ip_id: int,
        marks: int,
        idle: float,
        payload: str,
        icmp: tuple[int, int] | None,
        icmp_src: bytes,
    ) -> None:
        self.frame = frame
        self.ts = ts
        self.dir = dir
        self.flags = flags
        self.seq = seq
        self.ack = ack
        self.plen = plen
        self.win = win
        self.ttl = ttl
        self.ip_id = ip_id
        self.marks = marks
        self.idle = idle
        self.payload = payload
        self.icmp = icmp
        self.icmp_src = icmp_src

    def event(self) -> Event:
        return _new(
            Event,
            (
                self.frame,
                self.ts,
                self.dir,
                self.flags,
                self.seq,
                self.ack,
                self.plen,
                self.win,
                self.ttl,
                self.ip_id,
                self.marks,
                self.idle,
                self.payload,
                self.icmp,
                self.icmp_src,
            ),
        )


def _idle_limit(flow: _Flow) -> float:
    """Seconds without a packet after which a conversation is handed on."""
    if flow.closed:
        return CLOSE_LINGER
    if flow.proto != "tcp":
        return UDP_IDLE
    if flow.resp.state == zeek.INACTIVE:
        return ATTEMPT_IDLE
    return TCP_IDLE


class FlowTable(Sink):
    """Builds conversations from packets and hands each on when it can no longer change."""

    def __init__(
        self,
        emit: Callable[[Conversation], None],
        max_conversations: int = DEFAULT_MAX_CONVERSATIONS,
        admit: Callable[[Traits], bool] | None = None,
        max_live_bytes: int = DEFAULT_MAX_LIVE_BYTES,
        timeline: bool = True,
    ) -> None:
        """emit: takes each finished conversation. admit: when given, a conversation whose Traits
        it refuses is not built or emitted, only counted in `skipped` (its hosts' TTLs are still learnt).
        max_live_bytes: the estimated memory of live conversations that makes the oldest go early.
        timeline: False when no rule will read the conversations (a listing): no packet's row is
        kept, and each is emitted as a listing needs it (build_conversation's `brief`)."""
        self.emit = emit
        self.timeline = timeline
        self.admit = admit
        self.skipped = 0
        self.max_conversations = max(16, max_conversations)
        # Live flows by endpoint key, one dict per protocol; each flow is in its dict twice, under
        # the key of either direction's packets, so a packet finds its flow with one lookup.
        self.tcp_flows: dict[bytes, _Flow] = {}
        self.udp_flows: dict[bytes, _Flow] = {}
        self.icmp_flows: dict[bytes, _Flow] = {}
        self.icmp6_flows: dict[bytes, _Flow] = {}
        self.alive: dict[int, _Flow] = {}  # the same flows by id, in order of first packet
        self.next_id = 1
        self.streams = {"tcp": 0, "udp": 0, "icmp": 0}
        self.ws = WiresharkStreams()  # tcp.stream / udp.stream as Wireshark numbers them
        # Who learns each ended flow's host TTLs instead of this table (analyzer.split: the client does).
        self.learn_hosts: Callable[[_Flow], None] | None = None
        self.expiring = False  # while _expire hands on what is due (analyzer.flows.shares asks)
        self.evicted_early = 0
        self.max_live_bytes = max(1 << 20, max_live_bytes)
        self.meter = _RowMeter(self.max_live_bytes)  # timeline rows held by live flows, next expiry
        self.evicted_for_memory = 0
        # (deadline, flow id): when each live flow may have been idle past its limit. An entry is
        # not updated when its flow sees a packet; it is checked and pushed again when it comes due.
        self.deadlines = _TimerWheel()
        self.expiry_checks = 0  # deadlines looked at: the work expiry has done (for the resource tests)
        self.clock = float("-inf")  # the expiry clock: the capture time, outliers left out
        self.candidate = 0.0  # a timestamp far from the clock that may be a real jump
        self.candidate_seen = 0  # packets in a row that agreed with `candidate`
        self.host_ttls: dict[bytes, dict[int, int]] = {}

    # -- packets in -------------------------------------------------------------------------

    def packet(self, pkt: Packet) -> None:
        """Account a packet the decoder's general path built."""
        self.add(pkt)

    def add(self, pkt: Packet) -> None:
        """Account one decoded packet (and the packet a tunnel carries inside it)."""
        proto = pkt.proto
        if proto == IPPROTO_TCP:
            self.tcp(
                pkt.number,
                pkt.ts,
                endpoint_key(pkt.src, pkt.sport, pkt.dst, pkt.dport),
                pkt.sport,
                pkt.dport,
                pkt.flags,
                pkt.seq,
                pkt.ack,
                pkt.win,
                pkt.plen,
                pkt.ttl,
                pkt.ip_id,
                pkt.payload,
                pkt.tcp_opts,
            )
        elif proto == IPPROTO_UDP:
            self.udp(
                pkt.number,
                pkt.ts,
                endpoint_key(pkt.src, pkt.sport, pkt.dst, pkt.dport),
                pkt.sport,
                pkt.dport,
                pkt.plen,
                pkt.ttl,
                pkt.ip_id,
                pkt.payload,
            )
        elif proto == IPPROTO_ICMP or proto == IPPROTO_ICMPV6:
            if pkt.ts >= self.meter.next_check:
                self._expire(pkt.ts)
            self._icmp(pkt)
        if pkt.inner is not None:
            self.add(pkt.inner)

    def _expire(self, ts: float) -> None:
        """Hand on the closed conversations whose linger time has passed, and those idle past their limit."""
        if self.live_bytes() > self.max_live_bytes:
            self.evicted_for_memory += self._evict_oldest()
        now = self._advance_clock(ts)
        if now == float("-inf"):
            return  # no clock yet: every packet is looked at until one is agreed on
        # still over the bound: look again at the next packet
        self.meter.next_check = now + CHECK_EVERY if self.live_bytes() <= self.max_live_bytes else float("-inf")
        deadlines = self.deadlines
        alive = self.alive
        due_now: list[tuple[float, int]] = []
        for entry in deadlines.take_before(now):
            self.expiry_checks += 1
            fid = entry[1]
            due_flow = alive.get(fid)
            if due_flow is None:
                continue  # handed on already
            due = due_flow.last_ts + _idle_limit(due_flow)
            if due < now:
                due_now.append((due, fid))
            else:
                deadlines.add(due, fid)
        # Handed on in order of deadline, then of first packet: an order that depends on each
        # conversation alone, so the shares of a split capture can replay it (analyzer.split).
        due_now.sort()
        self.expiring = True
        for _, fid in due_now:
            due_flow = alive.get(fid)
            if due_flow is not None:  # a flow with two entries due is listed twice
                self._finish(due_flow, "" if due_flow.closed else "timeout")
        self.expiring = False

    def _advance_clock(self, ts: float) -> float:
        """The expiry clock after a packet at `ts`: it follows the capture, but not one outlier."""
        clock = self.clock
        if clock - MAX_CLOCK_STEP <= ts <= clock + MAX_CLOCK_STEP:
            if ts > clock:
                self.clock = ts
            self.candidate_seen = 0
            return self.clock
        # Far from the clock (or no clock yet): believed once CLOCK_CONFIRM packets in a row agree.
        if self.candidate_seen and abs(ts - self.candidate) <= MAX_CLOCK_STEP:
            self.candidate_seen += 1
            self.candidate = max(self.candidate, ts)
        else:
            self.candidate, self.candidate_seen = ts, 1
        if self.candidate_seen >= CLOCK_CONFIRM and self.candidate > clock:
            self.clock = self.candidate
            self.candidate_seen = 0
        return self.clock

    def live_bytes(self) -> int:
        """The estimated memory of the live conversations (see FLOW_BYTES, EVENT_BYTES)."""
        return len(self.alive) * FLOW_BYTES + self.meter.rows * EVENT_BYTES

    def _new_flow(
        self,
        table: dict[bytes, _Flow],
        key: bytes,
        proto: Transport,
        number: int,
        ts: float,
        sport: int,
        dport: int,
        flip: bool,
        inferred: bool,
    ) -> _Flow:
        """A new flow for a packet whose endpoint key is `key`; flip: its sender is the server."""
        if len(self.alive) >= self.max_conversations:
            self._evict_oldest()
        elif len(self.alive) * FLOW_BYTES + self.meter.rows * EVENT_BYTES > self.max_live_bytes:
            self.evicted_for_memory += self._evict_oldest()
        self.meter.row_budget = self.max_live_bytes - (len(self.alive) + 1) * FLOW_BYTES
        alen = (len(key) - 4) >> 1
        src, dst = key[:alen], key[alen : 2 * alen]
        rkey = reverse_key(key)
        if flip:
            flow = _Flow(table, rkey, key, proto, dst, dport, src, sport, inferred, number, ts)
            flow.history += "^"
        else:
            flow = _Flow(table, key, rkey, proto, src, sport, dst, dport, inferred, number, ts)
        flow.id = self.next_id
        self.next_id += 1
        if proto == "icmp":
            flow.stream = self.streams[proto]
            self.streams[proto] += 1
        table[key] = flow
        table[rkey] = flow
        self.alive[flow.id] = flow
        flow.meter = self.meter
        deadlines = self.deadlines
        deadlines.add(ts + _idle_limit(flow), flow.id)
        if deadlines.size > 2 * len(self.alive) + 1024:
            # Entries of flows handed on before their deadline: drop them in one pass (amortised).
            self.deadlines = deadlines = _TimerWheel()
            for f in self.alive.values():
                deadlines.add(f.last_ts + _idle_limit(f), f.id)
        return flow

    def tcp(
        self,
        number: int,
        ts: float,
        key: bytes,
        sport: int,
        dport: int,
        flags: int,
        seq: int,
        ack: int,
        win: int,
        plen: int,
        ttl: int,
        ip_id: int,
        payload: bytes,
        opts: int,
    ) -> None:
        """Account one TCP segment: Zeek's TCPSessionAdapter::Process, one named step at a time.

        The decoder calls it with the header fields, so the common packet never becomes a Packet
        object. `opts` is 0: the table does not ask for TCP options (Sink.wants_options).
        """
        if ts >= self.meter.next_check:
            self._expire(ts)
        flow = self._tcp_flow(number, ts, key, sport, dport, flags, seq)
        is_orig = key == flow.c_key  # a connection to itself has one key for both sides: all "orig", as Zeek
        end, peer = (flow.orig, flow.resp) if is_orig else (flow.resp, flow.orig)
        if flags & SYN or not end.pkts:
            # Only a side's first segment or a SYN can move Wireshark's stream number (streams.py);
            # any other segment of a live flow is in the stream its flow is in already.
            flow.in_stream(self.ws.tcp(key, flow.s_key if is_orig else flow.c_key, flags, seq))
        st = end.state  # the sender's state before this segment
        past = (seq + _seq_len(flags, plen)) & _M32  # the sequence number after this segment
        _init_endpoint(end, flags, seq, past)
        rel_seq = (seq - end.start) & _M32
        last = end.last
        delta_last = _sdelta(past, last)
        marks = _observe(flow, end, peer, is_orig, st, flags, seq, ack, win, plen, _sdelta(seq, last), delta_last)
        control = flags & _CONTROL
        if control:
            marks |= _control(flow, end, peer, is_orig, number, flags, seq, ack, plen, rel_seq)
        else:
            _update_history(flow, is_orig, flags, plen)
        _update_window(flow, end, peer, is_orig, flags, win)
        rel_ack = _update_ack(end, peer, flags, ack, win)
        _update_last_seq(flow, end, is_orig, flags, plen, past, last, delta_last, marks)
        if control or st == zeek.INACTIVE:
            self._state_machine(flow, end, peer, is_orig, flags, plen)
        elif is_orig and flags & ACK and not flow.ack_seen and flow.synack_seen:
            flow.ack_seen = True
        self._account(flow, end, is_orig, number, ts, flags, rel_seq, rel_ack, plen, win, ttl, ip_id, payload, marks)
        if control and not flow.closed and _close_complete(flow):
            flow.closed = True
            # due CLOSE_LINGER after its last packet (a later packet moves that on: the entry is
            # checked and pushed again when it comes due, as every deadline is)
            self.deadlines.add(flow.last_ts + CLOSE_LINGER, flow.id)

    def _tcp_flow(self, number: int, ts: float, key: bytes, sport: int, dport: int, flags: int, seq: int) -> _Flow:
        """The live conversation a segment belongs to, or a new one."""
        flow = self.tcp_flows.get(key)
        if flow is not None:
            if flow.closed:
                if ts - flow.last_ts > CLOSE_LINGER or (
                    flags & (SYN | ACK) == SYN and not (key == flow.c_key and seq == flow.orig.start)
                ):
                    # Closed and lingered, or a new SYN on a closed 5-tuple: a new conversation. A SYN
                    # repeating the client's ISN is the same connect() retried (Windows retries after
                    # each RST so): it stays in this conversation, as in Wireshark's stream.
                    self._finish(flow, "")
                    flow = None
            elif ts - flow.last_ts > (ATTEMPT_IDLE if flow.resp.state == zeek.INACTIVE else TCP_IDLE):
                self._finish(flow, "timeout")
                flow = None
        if flow is not None:
            return flow
        if flags & SYN and flags & ACK and not flags & RST:
            # The capture starts at the SYN/ACK: its sender is the server, whatever the ports say
            # (Zeek flips the same way and marks the history with ^).
            inferred, flip = False, True
        else:
            inferred = not flags & SYN  # no SYN: the roles are a guess
            flip = inferred and _server_sent(sport, dport, flags)
        return self._new_flow(self.tcp_flows, key, "tcp", number, ts, sport, dport, flip, inferred)

    def _state_machine(self, flow: _Flow, end: _End, peer: _End, is_orig: bool, flags: int, plen: int) -> None:
        """Zeek's UpdateStateMachine: one endpoint's state from the packet it sent."""
        st = end.state
        if st == zeek.INACTIVE:
            _first_packet(flow, end, peer, is_orig, flags, plen)
        elif st in (zeek.SYN_SENT, zeek.SYN_ACK_SENT):
            if flags & FIN:
                end.set_state(zeek.CLOSED)
            if flags & RST:
                end.set_state(zeek.RESET)
        elif st in (zeek.ESTABLISHED, zeek.PARTIAL):
            if flags & (SYN | ACK) == SYN and st == zeek.PARTIAL and peer.state == zeek.INACTIVE:
                end.set_state(zeek.SYN_SENT)
            if flags & FIN and not flags & RST:
                end.set_state(zeek.CLOSED)
                if peer.state == zeek.RESET and peer.prev_state == zeek.CLOSED:
                    peer.set_state(zeek.CLOSED)  # the peer's FIN then RST was a normal close
            if flags & RST:
                end.set_state(zeek.RESET)
        elif st == zeek.CLOSED:
            if flags & RST and peer.state != zeek.CLOSED:
                end.set_state(zeek.RESET)
        if flags & SYN:
            if flags & ACK:
                flow.synack_seen = True
            else:
                flow.syn_seen = True
        elif flags & ACK and is_orig and flow.synack_seen:
            flow.ack_seen = True

    def _account(
        self,
        flow: _Flow,
        end: _End,
        is_orig: bool,
        number: int,
        ts: float,
        flags: int,
        rel_seq: int,
        rel_ack: int,
        plen: int,
        win: int,
        ttl: int,
        ip_id: int,
        payload: bytes,
        marks: int,
    ) -> None:
        """Counters, habits and the timeline entry of a packet (flags, sequence numbers and window: TCP's, else 0)."""
        end.pkts += 1
        kind = ""
        if plen:
            end.payload += plen
            if payload and self.timeline:  # a listing shows neither payload kinds nor TLS alerts
                if payload[0] in SNIFF_FIRST_BYTES:
                    kind = sniff(payload)
                if not end.head:
                    end.head = payload
                    end.kind = kind
                if kind == "tls-alert" and not end.alert:
                    end.alert = tls_alert(payload)
        end.saw_ttl(ttl)
        if ip_id == 0:
            end.ipid_zero += 1  # Linux sends 0 on SYN/ACKs and socketless RSTs: no information
        elif ip_id > 0:
            if end.ipid_last >= 0:
                end.ipid_steps += 1
                if 0 < ((ip_id - end.ipid_last) & 0xFFFF) < 256:
                    end.ipid_small += 1
            end.ipid_last = ip_id
        if not self.timeline:
            flow.count(ts, number)
            end.saw(flags, marks, plen, kind)
            return
        idle = ts - flow.last_ts if flow.npk else 0.0
        if idle < 0:
            idle = 0.0
        flow.record(
            TimelineRow(
                number,
                ts,
                0 if is_orig else 1,
                flags,
                rel_seq,
                rel_ack,
                plen,
                win,
                ttl,
                ip_id,
                marks,
                idle,
                kind,
                None,
                b"",
            )
        )
        end.saw(flags, marks, plen, kind)

    def udp(
        self,
        number: int,
        ts: float,
        key: bytes,
        sport: int,
        dport: int,
        plen: int,
        ttl: int,
        ip_id: int,
        payload: bytes,
    ) -> None:
        """Account one UDP datagram."""
        if ts >= self.meter.next_check:
            self._expire(ts)
        flow = self.udp_flows.get(key)
        if flow is not None and ts - flow.last_ts > UDP_IDLE:
            self._finish(flow, "timeout")
            flow = None
        if flow is None:
            flip = sport in LIKELY_SERVER_PORTS and dport not in LIKELY_SERVER_PORTS
            flow = self._new_flow(self.udp_flows, key, "udp", number, ts, sport, dport, flip, flip)
        is_orig = key == flow.c_key
        end = flow.orig if is_orig else flow.resp
        if not end.pkts:  # a pair's udp.stream changes only when the pair is new (streams.py)
            flow.in_stream(self.ws.udp(key, flow.s_key if is_orig else flow.c_key))
        end.state = zeek.ESTABLISHED
        flow.check_history(_H_DATA, "D", is_orig)
        self._account(
            flow, end, is_orig, number, ts, 0, 0, 0, plen, 0, ttl, ip_id, payload, _AFTER_RST if flow.rst_seen else 0
        )

    def _icmp(self, pkt: Packet) -> None:
        q = pkt.quoted
        if q is not None and q.proto in (IPPROTO_TCP, IPPROTO_UDP):
            qkey = endpoint_key(q.src, q.sport, q.dst, q.dport)
            self._quoted_stream(q, qkey)
            flow = (self.tcp_flows if q.proto == IPPROTO_TCP else self.udp_flows).get(qkey)
            if flow is None and q.proto == IPPROTO_UDP:
                # The quoted datagram is not in the capture (a capture filter, or a capture that
                # started just after it): the quote still names the exchange, and its sender is
                # certainly the one that sent first.
                flow = self._new_flow(self.udp_flows, qkey, "udp", pkt.number, pkt.ts, q.sport, q.dport, False, False)
            if flow is not None:
                self._icmp_error(flow, pkt, qkey == flow.c_key)
                return
        # Anything else is a conversation of its own between the two hosts, as in Zeek's conn.log;
        # its key holds the ICMP type where the source port would be.
        key = endpoint_key(pkt.src, pkt.icmp_type, pkt.dst, 0)
        table = self.icmp_flows if pkt.proto == IPPROTO_ICMP else self.icmp6_flows
        flow = table.get(key)
        if flow is not None and pkt.ts - flow.last_ts > UDP_IDLE:
            self._finish(flow, "timeout")
            flow = None
        if flow is None:
            flow = self._new_flow(table, key, "icmp", pkt.number, pkt.ts, pkt.icmp_type, pkt.icmp_code, False, False)
        is_orig = pkt.src == flow.c_addr
        end = flow.orig if is_orig else flow.resp
        end.state = zeek.ESTABLISHED
        self._account(flow, end, is_orig, pkt.number, pkt.ts, 0, 0, 0, pkt.plen, 0, pkt.ttl, pkt.ip_id, pkt.payload, 0)

    def _quoted_stream(self, q: Quoted, qkey: bytes) -> None:
        """Wireshark dissects a quoted header too: it may open a stream (see analyzer.flows.streams)."""
        if q.proto == IPPROTO_UDP:
            self.ws.udp(qkey, reverse_key(qkey))
        elif q.seq >= 0:  # Wireshark gets no stream from a TCP header cut before its flags
            self.ws.tcp_quoted(qkey, reverse_key(qkey))

    def _icmp_error(self, flow: _Flow, pkt: Packet, quotes_client: bool) -> None:
        """Attach an ICMP error to the conversation whose packet it quotes."""
        flow.icmp_errors += 1
        q = pkt.quoted
        if q is None:
            return
        end = flow.orig if quotes_client else flow.resp
        rel_seq = _sdelta(q.seq, end.start) & _M32 if q.seq >= 0 and end.seq_known else 0
        ts = pkt.ts
        idle = max(0.0, ts - flow.last_ts)
        # The error travels toward the sender of the quoted packet.
        marks = _ICMP_ERROR | (_AFTER_RST if flow.rst_seen else 0)
        icmp = (pkt.icmp_type, pkt.icmp_code)
        if not self.timeline:
            flow.count(ts, pkt.number)
        else:
            flow.record(
                TimelineRow(
                    pkt.number,
                    ts,
                    1 if quotes_client else 0,
                    0,
                    rel_seq,
                    0,
                    pkt.plen,
                    0,
                    pkt.ttl,
                    pkt.ip_id,
                    marks,
                    idle,
                    "",
                    icmp,
                    pkt.src,
                )
            )
        toward = (
            flow.resp if quotes_client else flow.orig
        )  # the row's direction: server->client when it quotes the client
        toward.saw(0, marks, pkt.plen, "")
        toward.seen_icmp = True

    # -- conversations out ------------------------------------------------------------------

    def _evict_oldest(self) -> int:
        """The table is full: hand on the least recently active tenth; how many went."""
        flows = sorted(self.alive.values(), key=lambda f: f.last_ts)
        count = max(1, len(flows) // 10)
        for flow in flows[:count]:
            self._finish(flow, "")
            self.evicted_early += 1
        return count

    def flush(self) -> None:
        """The capture ended: hand on everything still alive, in order of first packet."""
        for flow in list(self.alive.values()):  # in order of first packet
            self._finish(flow, "")

    def warnings(self) -> list[CaptureWarning]:
        out = []
        if self.evicted_for_memory:
            out.append(
                CaptureWarning(
                    "memory-bound",
                    f"live conversations reached the memory bound of {_size(self.max_live_bytes)}; "
                    f"{self.evicted_for_memory} of the least recently active were handed on early and may be "
                    f"split in two (raise --max-memory to keep them whole)",
                )
            )
        if self.ws.forgotten:
            out.append(forgotten_warning(self.ws.forgotten))
        if self.evicted_early > self.evicted_for_memory:
            out.append(
                CaptureWarning(
                    "conversation-table-full",
                    f"more than {self.max_conversations} conversations were alive at once; "
                    f"{self.evicted_early - self.evicted_for_memory} were handed on early and may be split in two "
                    f"(raise --max-conversations to keep them whole)",
                )
            )
        return out

    def _finish(self, flow: _Flow, why: str) -> None:
        if self.alive.get(flow.id) is flow:
            del self.alive[flow.id]
            self.meter.rows -= flow.rows_charged()
            table = flow.table
            if table.get(flow.c_key) is flow:
                del table[flow.c_key]
            if table.get(flow.s_key) is flow:
                del table[flow.s_key]
        flow.orig.flush_ttls()
        flow.resp.flush_ttls()
        if self.admit is None or self.admit(traits(flow)):
            self.emit(build_conversation(flow, why, self.host_ttls, brief=not self.timeline))
        else:
            self.skipped += 1
        if self.learn_hosts is None:
            if self.timeline:  # a listing's conversations keep no rows to mark by their hosts' TTLs
                self._learn_hosts(flow)
        else:
            self.learn_hosts(flow)
        if flow.proto != "icmp":
            live = self.tcp_flows if flow.proto == "tcp" else self.udp_flows
            self.ws.retire(flow.proto == "tcp", flow.c_key, flow.s_key, live)

    def _learn_hosts(self, flow: _Flow) -> None:
        """Remember each address's TTLs, for judging sides that sent too little to judge alone."""
        hosts = self.host_ttls
        if len(hosts) >= MAX_HOSTS:
            hosts.clear()  # crude but bounded; the knowledge is a hint, not a fact
        for addr, end in ((flow.c_addr, flow.orig), (flow.s_addr, flow.resp)):
            if not end.ttls:
                continue
            known = hosts.setdefault(addr, {})
            for ttl, count in end.ttls.items():
                if ttl in known or len(known) < MAX_TTL_VALUES:
                    known[ttl] = known.get(ttl, 0) + count


def _size(n: int) -> str:
    """A byte count as the --max-memory option spells it: 1 GiB, 512 MiB."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def _addr(packed: bytes) -> str:
    return _socket.inet_ntop(_socket.AF_INET6 if len(packed) == 16 else _socket.AF_INET, packed)


def _ttl_habit(end: _End) -> tuple[int, tuple[int, ...]]:
    if not end.ttls:
        return -1, ()
    usual = max(end.ttls.items(), key=lambda kv: kv[1])[0]
    return usual, tuple(sorted(end.ttls))


def _ipid_habit(end: _End) -> str:
    if end.ipid_last < 0:
        return "zero" if end.ipid_zero and end.ipid_zero == end.pkts else ""
    steps, small = end.ipid_steps, end.ipid_small
    if steps < 2:
        return ""
    # One outlier (the packet under suspicion itself) must not hide the habit.
    return "incrementing" if small >= 0.8 * steps or (steps >= 3 and small >= steps - 1) else "random"


def _endpoint_state(end: _End, peer: _End, proto: str) -> str:
    """The endpoint state a side is in at the end, as far as the wire shows (zeek.ENDPOINT_STATES)."""
    return zeek.endpoint_state(proto, end.pkts > 0, end.state, peer.state, end.fin_frame <= peer.fin_frame)


def _odd_marks(events: list[Event], end: _End, direction: int, host_ttls: dict[int, int] | None) -> None:
    """Mark packets whose TTL or IP ID is unlike every other packet of the same sender.

    A side with too few packets of its own (a refusal is one RST) is judged against the TTLs its
    host showed in conversations that ended earlier in the capture.
    """
    usual, _ = _ttl_habit(end)
    ttls = end.ttls
    idx = [i for i, e in enumerate(events) if e.dir == direction and e.icmp is None]
    ided = [i for i in idx if events[i].ip_id > 0]
    check_ipid = len(ided) >= 3 and _ipid_habit(end) == "incrementing"
    host_usual = -1
    if host_ttls is None:
        host_ttls = {}
    if host_ttls and end.pkts < 3:
        value, count = max(host_ttls.items(), key=lambda kv: kv[1])
        if count >= 2:
            host_usual = value
    for i in idx:
        ev = events[i]
        add = 0
        if usual >= 0 and ev.ttl != usual and ttls.get(ev.ttl, 0) == 1 and ttls.get(usual, 0) >= 2:
            add |= _TTL_ODD
        elif host_usual >= 0 and ev.ttl not in host_ttls:
            add |= _TTL_ODD
        if add:
            events[i] = ev._replace(marks=ev.marks | add)
    if check_ipid:
        for n, i in enumerate(ided):
            ev = events[i]
            near = [events[ided[j]] for j in (n - 1, n + 1) if 0 <= j < len(ided)]
            # A host's IP ID counter also advances with its other traffic: across a silence a jump
            # says nothing, so only neighbours close in time are compared.
            near = [o for o in near if abs(o.ts - ev.ts) < IPID_COMPARE_WITHIN]
            if near and all(min((ev.ip_id - o.ip_id) & 0xFFFF, (o.ip_id - ev.ip_id) & 0xFFFF) > 1024 for o in near):
                events[i] = ev._replace(marks=ev.marks | _IPID_ODD)


IPID_COMPARE_WITHIN: Final = 1.0  # seconds: IP IDs further apart in time are not compared
SILENCE_MIN: Final = 1.0  # seconds: a shorter pause is never a silence worth naming
SILENCE_RTTS: Final = 20  # ... nor one shorter than this many round trips of the conversation
BACKOFF_GROWTH: Final = 1.5  # each retransmission interval at least this much longer than the one before
BACKOFF_MIN_RETRIES: Final = 3  # growing intervals between re-sends of one segment before a backoff is recognised


def handshake_rtt(events: list[Event]) -> float:
    """The round-trip time the handshake shows: the client's last SYN to its ACK of the SYN/ACK.

    Wherever the capture was taken, that span holds exactly one round trip of the whole path.
    """
    syn_ts = synack_ts = -1.0
    for e in events:
        flags = e.flags
        if flags & SYN and not flags & ACK and e.dir == 0 and synack_ts < 0:
            syn_ts = e.ts
        elif flags & SYN and flags & ACK and e.dir == 1 and syn_ts >= 0:
            synack_ts = e.ts
        elif synack_ts >= 0 and e.dir == 0 and flags & ACK and not flags & (SYN | RST):
            return max(e.ts - syn_ts, 0.0)
    return -1.0


def _silence_marks(events: list[Event], rtt: float) -> None:
    """Mark the packets that came after a silence long for this conversation (its RTT, or SILENCE_MIN)."""
    limit = max(SILENCE_MIN, SILENCE_RTTS * rtt)
    for i, e in enumerate(events):
        if e.idle >= limit:
            events[i] = e._replace(marks=e.marks | _AFTER_SILENCE)


def backs_off(events: list[Event], direction: int) -> bool:
    """True when a side's last retransmitted segment was re-sent at growing intervals (its RTO backing off)."""
    last = None
    for e in reversed(events):
        if e.dir == direction and e.plen and e.marks & _RETX and e.icmp is None:
            last = e
            break
    if last is None:
        return False
    times = [e.ts for e in events if e.dir == direction and e.plen and e.seq == last.seq and e.icmp is None]
    # The last intervals decide: a stack may send its first retransmissions at a fixed pace (tail
    # loss probes, early retransmit) before the timer starts doubling.
    gaps = [b - a for a, b in zip(times, times[1:])][-BACKOFF_MIN_RETRIES:]
    if len(gaps) < BACKOFF_MIN_RETRIES:
        return False
    return gaps[0] > 0 and all(b >= BACKOFF_GROWTH * a for a, b in zip(gaps, gaps[1:]))


LARGE_SEGMENT: Final = 1200  # bytes: above what every IPv4 and IPv6 path carries (IPv6 minimum MTU 1280)


def large_lost(events: list[Event], direction: int) -> bool:
    """True when a side's segments that never got acknowledged were all large while smaller ones got through.

    Lost: retransmitted, and beyond the highest acknowledgement its peer sent. Got through: smaller
    data segments of the same side that never needed a retransmission. That split by size, not by
    time, is what a path-MTU black hole leaves on the wire.
    """
    acked = max((e.ack for e in events if e.dir != direction and e.flags & ACK and e.icmp is None), default=0)
    mine = [e for e in events if e.dir == direction and e.plen and e.icmp is None]
    lost = [e for e in mine if e.marks & _RETX and _sdelta(e.seq + e.plen, acked) > 0]
    if not lost:
        return False
    smallest = min(e.plen for e in lost)
    resent = {e.seq for e in mine if e.marks & _RETX}
    through = [e for e in mine if e.seq not in resent and e.plen < smallest]
    return smallest >= LARGE_SEGMENT and bool(through)


def _unacked(end: _End, peer: _End, size: int) -> int:
    """Bytes of a side's data its peer never acknowledged (the FIN's octet not counted)."""
    if not size or not end.seq_known:
        return 0
    if peer.max_ack < 0:
        return size
    beyond = _sdelta(end.last, peer.max_ack)
    if end.sent_fin:
        beyond -= 1
    return max(0, min(beyond, size))


def traits(flow: _Flow) -> Traits:
    """What the flow's packets carried, per direction, before any conversation is built."""
    orig, resp = flow.orig, flow.resp
    # build_conversation may mark odd TTLs and IP IDs when there is a RST or an ICMP error: assume it does.
    odd = _TTL_ODD | _IPID_ODD if orig.sent_rst or resp.sent_rst or flow.icmp_errors else 0
    if orig.sent_rst or resp.sent_rst:
        odd |= _AFTER_SILENCE  # so may _silence_marks
    # Built with tuple.__new__ (as Events are): a NamedTuple's own __new__ is interpreted Python,
    # and this runs for every conversation.
    return _new(
        Traits,
        (
            (orig.seen_flags, resp.seen_flags),
            (orig.seen_marks | odd, resp.seen_marks | odd),
            (orig.seen_data, resp.seen_data),
            (orig.seen_icmp, resp.seen_icmp),
            (frozenset(orig.seen_kinds or ()), frozenset(resp.seen_kinds or ())),
            flow.synack_seen and flow.ack_seen,  # handshake
            resp.pkts == 0,  # server_silent
        ),
    )


def build_conversation(
    flow: _Flow, why: str, hosts: dict[bytes, dict[int, int]] | None = None, brief: bool = False
) -> Conversation:
    """Freeze a live flow into the Conversation record the rules and reports read.

    hosts: TTLs seen per address in conversations that ended before this one (None: unknown).
    brief: the flow kept no rows (FlowTable's `timeline` off), and the conversation is built as a
    listing shows it (report/stream.py): no timeline, no payload bytes, nothing worked out from
    rows (RTT, back-off, lost sizes are left unknown).
    """
    orig, resp = flow.orig, flow.resp
    orig.flush_ttls()  # (FlowTable has done so already; other callers may not have)
    resp.flush_ttls()
    history = flow.history
    events = [row.event() for row in flow.head]
    if flow.tail is not None:
        events += [row.event() for row in flow.tail]
    elided = 0 if brief else flow.npk - len(events)  # a brief one elides nothing: it never had rows
    if orig.sent_rst or resp.sent_rst or flow.icmp_errors:
        # TTL/IP ID oddness only matters for telling who really sent a RST or an ICMP error.
        hosts = hosts or {}
        _odd_marks(events, orig, 0, hosts.get(flow.c_addr))
        _odd_marks(events, resp, 1, hosts.get(flow.s_addr))
    proto = flow.proto
    rtt = handshake_rtt(events) if proto == "tcp" else -1.0
    if orig.sent_rst or resp.sent_rst:
        _silence_marks(events, rtt)
    if proto == "tcp":
        orig_size, resp_size = orig.size(), resp.size()
        o_state, r_state = orig.state, resp.state
    else:
        orig_size, resp_size = orig.payload, resp.payload
        o_state, r_state = (1 if orig.pkts else 0), (1 if resp.pkts else 0)
    state = zeek.conn_state(proto, o_state, r_state, orig_size, resp_size, history)
    if orig.sent_rst or resp.sent_rst:
        closed_by = "rst"
    elif orig.state == zeek.CLOSED and resp.state == zeek.CLOSED:
        closed_by = "fin"
    else:
        closed_by = why
    stats = []
    for end, peer, size in ((orig, resp, orig_size), (resp, orig, resp_size)):
        usual, values = _ttl_habit(end)
        stats.append(
            SideStats(
                packets=end.pkts,
                bytes=size,
                retransmissions=end.rxmit,
                zero_windows=end.zwin,
                dup_acks=end.dupacks,
                keepalives=end.keepalives,
                ttl=usual,
                ttl_values=values,
                ip_id_mode=_ipid_habit(end),
                state=_endpoint_state(end, peer, proto),
                payload_kind=end.kind,
                payload_head=b"" if brief else end.head,
                sent_fin=end.sent_fin,
                sent_rst=end.sent_rst,
                sent_syn=end.sent_syn,
                unacked=_unacked(end, peer, size) if proto == "tcp" else 0,
                backoff=backs_off(events, 0 if end is orig else 1),
                large_lost=large_lost(events, 0 if end is orig else 1),
                tls_alert=(end.alert[0], end.alert[1]) if len(end.alert) == 2 else None,
            )
        )
    return Conversation(
        id=flow.id,
        stream=flow.stream,
        streams=flow.streams or (flow.stream,),
        proto=proto,
        client=Endpoint(_addr(flow.c_addr), flow.c_port),
        server=Endpoint(_addr(flow.s_addr), flow.s_port),
        role_inferred=flow.inferred,
        state=state,
        history=history,
        first_frame=flow.first_frame,
        last_frame=flow.last_frame,
        start=flow.start,
        end=flow.last_ts,
        client_stats=stats[0],
        server_stats=stats[1],
        timeline=tuple(events),
        elided_after=(len(flow.head) - 1) if elided > 0 else -1,
        elided=elided,
        # The SYN/ACK and the ACK that completes it prove an established connection even when the
        # capture starts after the SYN.
        handshake=flow.synack_seen and flow.ack_seen,
        icmp_errors=flow.icmp_errors,
        closed_by=closed_by,
        rtt=rtt,
    )
