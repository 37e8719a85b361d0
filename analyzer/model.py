"""The records that cross the pipeline's layers: frames, packets, conversation events, findings.

capture -> (Frame), decode -> (Packet), flows -> Event + Conversation, rules -> Finding,
report <- CaptureResult. On the analyze path the common packet becomes neither a Frame nor a
Packet: its record is decoded where it lies and its header fields go straight to the flow table
(analyzer/sink.py); Frames are what iterating a capture gives, and Packets what the decoder's
general path (tunnels, ICMP, VLANs, ...) and Decoder.decode hand on. Per-packet records are
NamedTuples (cheap to build); per-conversation and per-finding records are frozen dataclasses
(Conversation, SideStats and Endpoint frozen to the type checker only: hot_record).
"""

# Annotations in this module are evaluated, not kept as strings (no `from __future__ import
# annotations`): typing.NamedTuple compiles each string annotation when it makes its class, dozens
# of compiles on every start-up (tests/test_startup.py).
import builtins
from dataclasses import dataclass, field
from enum import IntFlag
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol, TypeVar, dataclass_transform, runtime_checkable

if TYPE_CHECKING:
    from analyzer.peer.model import PathView

Transport = Literal["tcp", "udp", "icmp"]  # a Conversation's protocol

_Record = TypeVar("_Record")


@dataclass_transform(frozen_default=True)
def hot_record(cls: type[_Record]) -> type[_Record]:
    """A record made for every conversation: frozen to the type checker (CI's mypy refuses an
    assignment to a field; dataclasses.replace makes a changed copy), a plain slotted dataclass at
    run time.

    A frozen dataclass's __init__ sets each field through object.__setattr__. For a Conversation,
    its two SideStats and its two Endpoints that was about 10 us of every conversation, a tenth of
    a conversations listing (bench/run.py); a plain one stores each field directly. The hash stays
    the frozen one's, made from the fields (unsafe_hash), so what keeps them in a set or as a key
    is unchanged.

    Findings and the errors in them are hot records too for another reason: a --jobs worker or a
    split share pickles them by the thousand, and a frozen slotted dataclass unpickles through a
    Python-level __setstate__ that looks up its fields for every object (a third of the time the
    parent spent taking a 200k-packet capture's result); a plain one's slots are set by pickle
    itself.
    """
    return dataclass(slots=True, unsafe_hash=True)(cls)


class Frame(NamedTuple):
    """One record read from a capture file, before any decoding."""

    number: int  # 1-based, as Wireshark numbers frames
    ts: float  # seconds since the epoch
    caplen: int
    wirelen: int
    linktype: int  # LINKTYPE_* value (pcap header or pcapng IDB)
    data: bytes


@dataclass(frozen=True, slots=True)
class CaptureWarning:
    """Something in the input that was skipped or could not be fully used."""

    code: str  # stable kebab-case, e.g. "truncated", "unknown-linktype"
    message: str
    frame: int | None = None


class Quoted(NamedTuple):
    """The packet an ICMP/ICMPv6 error quotes: the sender's own 5-tuple (and TCP seq)."""

    src: bytes
    dst: bytes
    proto: int
    sport: int
    dport: int
    seq: int  # TCP sequence number of the quoted segment, -1 when not TCP or not captured


class Packet(NamedTuple):
    """One decoded IP packet: only the fields the diagnosis needs.

    Addresses are packed (4 or 16 bytes); the report layer formats them.
    Fields that do not apply are 0 (numbers) or b"" (bytes), never None, except `quoted`.
    """

    number: int
    ts: float
    family: int  # 4 or 6
    src: bytes
    dst: bytes
    proto: int  # IPPROTO_TCP=6, UDP=17, ICMP=1, ICMPV6=58
    sport: int  # ICMP: 0
    dport: int
    ttl: int  # IPv4 TTL or IPv6 hop limit
    ip_id: int  # IPv4 identification; -1 for IPv6
    flags: int  # TCP flag bits (analyzer.protocol); 0 otherwise
    seq: int
    ack: int
    win: int  # raw TCP window field (unscaled)
    plen: int  # transport payload length from the IP length fields (not the captured length)
    payload: bytes  # up to PAYLOAD_HEAD captured payload bytes
    icmp_type: int  # -1 when not ICMP
    icmp_code: int
    quoted: Quoted | None  # set for ICMP errors that quote a packet
    tcp_opts: int = 0  # TCP option bits present (analyzer.protocol OPT_*)
    inner: "Packet | None" = None  # the encapsulated packet of a tunnel (Teredo, VXLAN, ...)


PAYLOAD_HEAD = 64  # bytes of payload a Packet keeps: enough for TLS, TDS and HTTP sniffs


class Mark(IntFlag):
    """What the flow tracker observed about one packet within its conversation.

    Observations only; judging them is the rules' job. Each bit's word and meaning are in MARKS.
    """

    NONE = 0
    RETRANSMISSION = 1 << 0
    OUT_OF_ORDER = 1 << 1
    GAP = 1 << 2
    DUP_ACK = 1 << 3
    KEEPALIVE = 1 << 4
    KEEPALIVE_ACK = 1 << 5
    ZERO_WINDOW = 1 << 6
    WINDOW_PROBE = 1 << 7
    ACKS_FIN = 1 << 8
    AFTER_PEER_FIN = 1 << 9
    AFTER_OWN_FIN = 1 << 10
    AFTER_RST = 1 << 11
    ACK_UNSEEN = 1 << 12
    NEW_DATA = 1 << 13
    UNACKED_AT_RST = 1 << 14
    SYN_RETRANSMISSION = 1 << 15
    TTL_ODD = 1 << 16
    IPID_ODD = 1 << 17
    ICMP_ERROR = 1 << 18
    AFTER_SILENCE = 1 << 19
    # Set only by a two-capture analysis (analyzer.peer): the packet's fate between the two points.
    # They are `fate:` words of the rule language, not `kind:` marks, so MARKS leaves them out.
    PATH_SEEN = 1 << 20  # seen at both capture points
    PATH_CHANGED = 1 << 21  # seen at both, with its MSS, window or TCP options rewritten in between
    PATH_LOST = 1 << 22  # left this capture point toward the other and never reached it
    PATH_INJECTED = 1 << 23  # reached this capture point but never passed the other: sent in between


class MarkInfo(NamedTuple):
    """One observation's single spelling: the word a rule's `kind:` names and a ladder prints."""

    mark: Mark
    word: str  # kebab-case; the same in rule files, ladders and the vocabulary page
    ladder: bool  # labelled on a ladder arrow (the others are implied by the arrow or too common)
    doc: str  # the meaning, as the vocabulary page prints it


# The one table of marks: rules/tables.MARK_NAMES, report/ladder.MARK_LABELS and the rule
# vocabulary page are derived from it. Ladder labels follow this order.
MARKS: tuple[MarkInfo, ...] = (
    MarkInfo(Mark.RETRANSMISSION, "retransmission", True, "carries sequence space already sent"),
    MarkInfo(Mark.OUT_OF_ORDER, "out-of-order", True, "fills a gap below the highest sequence seen"),
    MarkInfo(Mark.GAP, "gap", True, "starts above the next expected sequence (bytes missing in capture)"),
    MarkInfo(Mark.DUP_ACK, "duplicate-ack", True, "pure ACK repeating the previous ack number and window"),
    MarkInfo(Mark.KEEPALIVE, "keepalive", True, "seq = next-1 with 0 or 1 byte, after idle"),
    MarkInfo(Mark.KEEPALIVE_ACK, "keepalive-ack", True, "answers a keep-alive"),
    MarkInfo(Mark.ZERO_WINDOW, "zero-window", True, "advertises window 0"),
    MarkInfo(Mark.WINDOW_PROBE, "window-probe", True, "one byte into a zero window"),
    MarkInfo(Mark.ACKS_FIN, "acks-fin", False, "acknowledges the peer's FIN"),
    MarkInfo(Mark.AFTER_PEER_FIN, "after-peer-fin", True, "sent data after the peer's FIN was seen"),
    MarkInfo(Mark.AFTER_OWN_FIN, "after-own-fin", False, "sent data/FIN-retransmit after its own FIN"),
    MarkInfo(Mark.AFTER_RST, "after-rst", True, "any packet after a RST in this conversation"),
    MarkInfo(Mark.ACK_UNSEEN, "ack-unseen", True, "acknowledges data the capture never saw"),
    MarkInfo(Mark.NEW_DATA, "new-data", False, "carries bytes never sent before"),
    MarkInfo(
        Mark.UNACKED_AT_RST, "unacked-at-rst", False, "(on a RST) the peer had sent data this side never acknowledged"
    ),
    MarkInfo(Mark.SYN_RETRANSMISSION, "syn-retransmission", True, "a repeated SYN or SYN/ACK"),
    MarkInfo(
        Mark.TTL_ODD,
        "ttl-odd",
        True,
        "TTL/hop limit unlike the sender's other packets (set with a RST or ICMP error)",
    ),
    MarkInfo(Mark.IPID_ODD, "ipid-odd", True, "IP ID far from this direction's running sequence (likewise)"),
    MarkInfo(
        Mark.ICMP_ERROR,
        "icmp-error",
        False,
        "an ICMP error quoting this conversation; its dir points at the quoted packet's sender",
    ),
    MarkInfo(
        Mark.AFTER_SILENCE,
        "after-silence",
        True,
        "came after a silence long for this conversation: max(1 s, 20 RTT) (set with a RST)",
    ),
)


class Traits(NamedTuple):
    """What the packets of a conversation carried, per direction (index 0: client, 1: server).

    Built by the flow table from every packet, before the conversation itself is built: a rule
    set that can tell from it that no rule could fire spares building the conversation.
    """

    flags: tuple[int, int]  # TCP flags of any packet
    marks: tuple[int, int]  # Mark bits of any packet
    data: tuple[bool, bool]  # any packet with payload
    icmp: tuple[bool, bool]  # any ICMP error (direction: toward the sender of the quoted packet)
    kinds: tuple[frozenset[str], frozenset[str]]  # payload kinds sniffed
    # Conversation facts (defaults: unknown, so that nothing is ruled out on their account)
    handshake: bool = False  # the SYN/ACK and the ACK completing it were seen
    server_silent: bool = True  # the server sent no packet at all


@runtime_checkable
class RulePrefilter(Protocol):
    """What a rule set may offer besides evaluate(): whether any rule could fire on a conversation
    with these Traits. Conversations it rules out are not built at all (analyze_capture with
    keep="findings"). Here rather than in the compiled pipeline: typing must see a Protocol.
    """

    def could_fire(self, traits: Traits) -> bool: ...


class Event(NamedTuple):
    """One packet of a conversation as the rules and the ladder diagram see it."""

    frame: int
    ts: float
    dir: int  # 0 client->server, 1 server->client (ICMP errors: toward the quoted sender)
    flags: int  # TCP flags, 0 for UDP/ICMP
    seq: int  # relative to this direction's ISN (0 = SYN) when known, else absolute
    ack: int  # relative to the peer's ISN when known
    plen: int
    win: int
    ttl: int
    ip_id: int
    marks: int  # Mark bits
    idle: float  # seconds since the previous packet of the conversation (0 for the first)
    payload: str  # sniffed payload kind of this segment ("" when none): see analyzer.flows.sniff
    icmp: tuple[int, int] | None  # (type, code) for an ICMP error attached to the conversation
    icmp_src: bytes = b""  # who sent the ICMP error (packed address)


class DroppedEvent(Event):
    """An Event of a packet Windows logged as dropped (pktmon ETL input); `drop` says why and where.

    A subclass rather than an Event field: the flow table builds Events from plain tuples of
    Event's fields, and only the few dropped packets need the extra attribute.
    """

    drop: "WindowsDrop"  # quoted: defined below


def event_drop(ev: Event) -> "WindowsDrop | None":
    """Why Windows dropped this event's packet, or None (also for every capture but pktmon's)."""
    return ev.drop if type(ev) is DroppedEvent else None


@dataclass(frozen=True, slots=True)
class WindowsDrop:
    """Windows' own account of a packet it dropped inside the capturing host (pktmon drop event)."""

    frame: int  # the frame of the dropped packet
    reason: int  # PKTMON_DROP_REASON number
    reason_name: str  # INET_EndpointNotFound, or the number when the name is unknown
    location: int  # drop location code (component-specific)
    component: str  # "TCP/IPv4 - L3/L4 (tcpip.sys)", or "component 66" when it was not described
    component_kind: str  # "tcpip", "filter", "miniport" ... (capture.etwfacts.COMPONENT_KINDS), "" unknown
    driver: str  # "tcpip.sys", lower case; "" unknown
    direction: str  # "in", "out" or ""
    by_filter: bool = False  # a filter's decision (Windows Firewall / WFP, IPsec), not the stack's


@hot_record
class Endpoint:
    """One side of a conversation."""

    addr: str  # "192.0.2.1" or "2001:db8::1"
    port: int

    def __str__(self) -> str:
        return f"[{self.addr}]:{self.port}" if ":" in self.addr else f"{self.addr}:{self.port}"


@hot_record
class SideStats:
    """What one side sent, and how its packets usually look (for forged-packet checks)."""

    packets: int = 0
    bytes: int = 0  # payload bytes (TCP: sequence space, excluding retransmissions where known)
    retransmissions: int = 0
    zero_windows: int = 0
    dup_acks: int = 0
    keepalives: int = 0
    ttl: int = -1  # the usual TTL/hop limit (mode); -1 unknown
    ttl_values: tuple[int, ...] = ()  # distinct values seen, at most a few
    ip_id_mode: str = ""  # "incrementing", "zero", "random", "" unknown
    state: str = ""  # endpoint state at the end as the wire shows it: a key of flows.zeek.ENDPOINT_STATES
    payload_kind: str = (
        ""  # sniff of this side's first payload bytes ("tls-client-hello", "tds-prelogin", "http-request", ...)
    )
    payload_head: builtins.bytes = b""  # the first payload bytes themselves (bounded); `bytes` is a field here
    sent_fin: bool = False
    sent_rst: bool = False
    sent_syn: bool = False
    unacked: int = 0  # bytes of this side's data the peer never acknowledged (TCP, by the end of the capture)
    backoff: bool = False  # its last retransmissions came at growing intervals (the RTO backing off)
    large_lost: bool = False  # its lost segments (retransmitted, never acked) are all large; smaller ones got through
    tls_alert: tuple[int, int] | None = None  # (level, description) of the first plaintext TLS alert it sent


@hot_record
class Conversation:
    """A finished (or capture-end) conversation, handed from flows to rules and reports."""

    id: int  # 1-based, in order of first packet within the capture
    stream: int  # Wireshark's tcp.stream / udp.stream index (0-based per protocol)
    proto: Transport
    client: Endpoint
    server: Endpoint
    role_inferred: bool  # True when no SYN (TCP) / first sender (UDP) decided the roles
    state: str  # Zeek conn_state (S0, SF, REJ, RSTO, ...)
    history: str  # Zeek history letters
    first_frame: int
    last_frame: int
    start: float
    end: float
    client_stats: SideStats
    server_stats: SideStats
    timeline: tuple[Event, ...]  # bounded: the head and the tail of the conversation
    elided_after: int = -1  # index in timeline after which packets were dropped; -1 none
    elided: int = 0  # how many packets were dropped there
    handshake: bool = False  # the SYN/ACK and the ACK completing it seen (the SYN itself may precede the capture)
    icmp_errors: int = 0
    closed_by: str = ""  # "fin", "rst", "timeout", "" (still open at capture end)
    rtt: float = -1.0  # round-trip time from the handshake (SYN to the ACK of the SYN/ACK); -1 unknown
    path: "PathView | None" = None  # two captures (analyze --peer): the conversation seen from both points
    streams: tuple[int, ...] = ()  # every Wireshark stream its packets fell in (usually just `stream`)

    @property
    def packets(self) -> int:
        return self.client_stats.packets + self.server_stats.packets

    @property
    def duration(self) -> float:
        return self.end - self.start


Level = Literal["error", "warning", "info"]
LEVELS: tuple[Level, ...] = ("error", "warning", "info")  # most severe first
Confidence = Literal["high", "medium", "low"]
CONFIDENCES: tuple[Confidence, ...] = ("high", "medium", "low")


@dataclass(frozen=True, slots=True)
class WinsockCode:
    """A Winsock error as Windows reports it: 10054 WSAECONNRESET and Microsoft's short title."""

    code: int
    name: str
    message: str


@dataclass(frozen=True, slots=True)
class PosixErrno:
    """The errno Linux and macOS report for the same failure (None where the platform has none)."""

    name: str | None
    linux: int | None
    macos: int | None


@dataclass(frozen=True, slots=True)
class SeenAs:
    """What each runtime shows its user for the error (None where it does not surface it).

    The runtimes, their labels and their order are one table: analyzer.winsock.RUNTIMES.
    """

    dotnet: str | None
    java: str | None
    python: str | None  # Linux CPython
    curl: str | None
    python_windows: str | None  # Windows CPython


@hot_record
class SocketErrorSeen:
    """The error one side's application saw, with how each platform spells it."""

    side: Literal["client", "server"]
    endpoint: str
    operation: str  # connect, send, recv, recvfrom, close, ...
    winsock: WinsockCode
    posix: PosixErrno
    seen_as: SeenAs
    note: str = ""  # e.g. "local to the host: the capture cannot show it"


@hot_record
class Alternative:
    """Another pattern that explains the same failure, listed under the primary finding."""

    rule: str
    name: str
    title: str
    message: str
    confidence: Confidence


@hot_record
class Finding:
    """A rule that matched one conversation."""

    rule: str  # RST003
    name: str  # stray-ack-after-fin
    level: Level
    title: str
    message: str
    conversation: int  # Conversation.id
    errors: tuple[SocketErrorSeen, ...]
    cause: str
    remedy: str
    confidence: Confidence
    frames: tuple[int, ...]  # evidence frames, ascending
    wireshark_filter: str
    references: tuple[str, ...] = ()
    falsepositives: tuple[str, ...] = ()
    also: tuple[Alternative, ...] = ()  # other patterns that fit the same failure ("also consistent with")
    tls_alert: dict[str, object] | None = None  # the TLS alert on the wire: sender, level, description, seen_as


@dataclass(frozen=True, slots=True)
class CapturePart:
    """One file of captures read as one (`--stitch`): its frames first_frame .. first_frame + frames - 1."""

    path: str
    first_frame: int
    frames: int
    start: float  # its first packet's time


@dataclass(slots=True)
class CaptureResult:
    """Everything learnt from one capture: what reports are functions of."""

    path: str
    format: str = ""  # "pcap", "pcapng" ("+gzip" etc. appended when compressed)
    linktypes: list[str] = field(default_factory=list)
    packets: int = 0
    warnings: list[CaptureWarning] = field(default_factory=list)
    conversations: list[Conversation] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None  # set when the capture could not be read at all
    conversation_count: int = 0  # all conversations seen; `conversations` may hold only those with findings
    encapsulations: list[str] = field(default_factory=list)  # outer layers unwrapped: GRE, ERSPAN II, Geneve ...
    parts: list[CapturePart] = field(default_factory=list)  # --stitch: the files read as this one capture
