"""Zeek's connection vocabulary: endpoint states, conn_state and history letters.

The meanings follow Zeek's `scripts/base/protocols/conn/main.zeek` (conn_state, history) and its
TCP session adapter (endpoint states). Documented once here; `wsadiag explain` and the README
point at this table.
"""

from __future__ import annotations

from typing import Final

# Endpoint states of Zeek's TCP analyzer, as seen from the wire.
INACTIVE: Final = 0  # nothing sent yet
SYN_SENT: Final = 1  # sent a SYN
SYN_ACK_SENT: Final = 2  # sent a SYN/ACK first (an originator that answers its own SYN)
PARTIAL: Final = 3  # sent data without any SYN seen (capture started mid-stream)
ESTABLISHED: Final = 4
CLOSED: Final = 5  # sent a FIN
RESET: Final = 6  # sent a RST

# What a side's `state` (SideStats.state, a rule's side condition `state:`) can be at the end of a
# conversation: the RFC 9293 state the wire shows the endpoint in. The wire cannot tell FIN-WAIT-1
# from FIN-WAIT-2, nor LISTEN from CLOSED, so those are one state each here.
ENDPOINT_STATES: dict[str, str] = {
    "": "sent nothing",
    "SYN_SENT": "sent a SYN; no answer from the peer seen",
    "SYN_RECEIVED": "sent a SYN/ACK while the peer's SYN was never seen (the capture began mid-handshake)",
    "ESTABLISHED": "exchanged packets after a handshake, or sent data mid-stream without any SYN seen",
    "FIN_WAIT": "sent a FIN; the peer has not (FIN-WAIT-1 or FIN-WAIT-2: the wire cannot tell which)",
    "CLOSE_WAIT": "the peer sent a FIN; this side has not",
    "TIME_WAIT": "both sides sent a FIN, this side first",
    "CLOSED": "both sides sent a FIN, this side last",
    "RESET": "sent a RST",
    "ACTIVE": "(UDP and ICMP, which have no states) sent at least one packet",
}

# The name of a TCP endpoint's own state while neither side has closed.
_OPEN_STATE_NAMES: dict[int, str] = {
    INACTIVE: "",
    SYN_SENT: "SYN_SENT",
    SYN_ACK_SENT: "SYN_RECEIVED",
    PARTIAL: "ESTABLISHED",
    ESTABLISHED: "ESTABLISHED",
}


def endpoint_state(proto: str, sent: bool, own: int, peer: int, closed_first: bool) -> str:
    """A side's ENDPOINT_STATES name from its and its peer's final endpoint states (a pure function).

    sent: the side sent any packet; closed_first: its FIN came no later than the peer's.
    """
    if proto != "tcp":
        return "ACTIVE" if sent else ""
    if own == RESET:
        return "RESET"
    if own == CLOSED:
        if peer == CLOSED:
            # The side that closed first waits in TIME_WAIT; the other is done once its FIN is acked.
            return "TIME_WAIT" if closed_first else "CLOSED"
        return "FIN_WAIT"
    if peer == CLOSED:
        return "CLOSE_WAIT"
    return _OPEN_STATE_NAMES[own]


# conn_state values and their meaning (Zeek's wording, shortened).
CONN_STATES: dict[str, str] = {
    "S0": "Connection attempt seen, no reply.",
    "S1": "Connection established, not terminated.",
    "SF": "Normal establishment and termination.",
    "REJ": "Connection attempt rejected.",
    "S2": "Established; close attempt by the originator seen, no reply from the responder.",
    "S3": "Established; close attempt by the responder seen, no reply from the originator.",
    "RSTO": "Established; the originator aborted (sent a RST).",
    "RSTR": "The responder sent a RST.",
    "RSTOS0": "The originator sent a SYN then a RST; no SYN/ACK from the responder was seen.",
    "RSTRH": "The responder sent a SYN/ACK then a RST; no SYN from the originator was seen.",
    "SH": "The originator sent a SYN then a FIN; no SYN/ACK from the responder (half open).",
    "SHR": "The responder sent a SYN/ACK then a FIN; no SYN from the originator.",
    "OTH": "No SYN seen, just midstream traffic.",
}

# History letters: upper case for the originator (client), lower case for the responder.
HISTORY_LETTERS: dict[str, str] = {
    "S": "a SYN without the ACK bit",
    "H": "a SYN/ACK (handshake)",
    "A": "a pure ACK",
    "D": "a packet with payload (data)",
    "F": "a packet with FIN",
    "R": "a packet with RST",
    "C": "a packet with a bad checksum (never set by wsadiag: checksums are not verified)",
    "G": "a content gap",
    "T": "a packet with retransmitted payload",
    "W": "a zero window advertisement",
    "I": "an inconsistent packet (FIN and RST together)",
    "Q": "a multi-flag packet (SYN with FIN or RST)",
    "^": "the direction was flipped by the server-port heuristic (roles inferred)",
}

# A, D, I, Q are recorded once per direction; S, H, F, R again when the sequence number changes;
# T, G, W on a logarithmic scale: the second letter after 10 events, the third after 100, ...


def conn_state(proto: str, orig: int, resp: int, orig_size: int, resp_size: int, history: str) -> str:
    """Zeek's conn_state from the two endpoints' final states (a pure function)."""
    if proto == "udp":
        if orig:
            return "SF" if resp else "S0"
        return "SHR" if resp else "OTH"
    if proto != "tcp":
        return "OTH"
    o_inactive = orig in (INACTIVE, PARTIAL)
    r_inactive = resp in (INACTIVE, PARTIAL)
    if resp == RESET:
        if orig in (SYN_SENT, SYN_ACK_SENT) or (orig == RESET and orig_size == 0 and resp_size == 0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if orig == RESET:
        if r_inactive:
            return "RSTOS0" if _syn_then_reset(history) else "OTH"
        return "RSTO"
    if resp == CLOSED and orig == CLOSED:
        return "SF"
    if orig == CLOSED:
        return "SH" if r_inactive else "S2"
    if resp == CLOSED:
        return "SHR" if o_inactive else "S3"
    if orig == SYN_SENT and resp == INACTIVE:
        return "S0"
    if orig == ESTABLISHED and resp == ESTABLISHED:
        return "S1"
    return "OTH"


def _syn_then_reset(history: str) -> bool:
    """Zeek's /^?S[^HAFGIQ]*R.*/ test, without a regular expression."""
    h = history[1:] if history.startswith("^") else history
    if not h.startswith("S"):
        return False
    for ch in h[1:]:
        if ch == "R":
            return True
        if ch in "HAFGIQ":
            return False
    return False
