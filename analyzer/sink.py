"""The seam between the decoder and the flow table: what one decoded packet hands on.

A decoded packet travels either as a Packet (model.py) or, on the decoder's fast path, as the
header fields a Packet would hold, passed one by one so the common packet builds no object.
Sink is the interface for both; the flow table implements it, and so does the decoder's own
one-Packet sink behind Decoder.decode. It is compiled (setup.py) so that these calls stay native.
"""

from __future__ import annotations

from mypy_extensions import mypyc_attr

from analyzer.model import Packet


# Python subclasses (analyzer.split's per-share sink) must be allowed when this is compiled.
@mypyc_attr(allow_interpreted_subclasses=True)
class Sink:
    """Where Decoder.take hands each decoded packet.

    The fast path calls tcp() or udp() with the header fields; everything else arrives as a
    Packet through packet(). Fields mean what Packet's fields of the same names mean; `key` is
    the source address, the destination address and the two ports as the headers hold them
    (12 bytes for IPv4, 36 for IPv6: analyzer.flows.table.endpoint_key).
    """

    # Whether tcp() needs `opts` (Packet.tcp_opts); when False the fast path passes 0 and does not
    # walk the options at all.
    wants_options: bool = False
    # One big capture split by conversation (analyzer.split): this sink follows the conversations
    # whose share (0 .. shares - 1) is from `share` up to, not including, `share_end` (a process
    # may follow several equal slices of the conversations). The fast path reads a packet's share
    # from its header bytes (analyzer.decode.fast.flow_share) and hands a packet of another share
    # to elsewhere() instead of decoding it further; 1 share: every packet is this sink's.
    shares: int = 1
    share: int = 0
    share_end: int = 1
    # The capture time from which a packet of another share matters here (the flow table's next
    # expiry): the fast path calls elsewhere() only from then on.
    next_tick: float = float("-inf")

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
        raise NotImplementedError

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
        raise NotImplementedError

    def packet(self, pkt: Packet) -> None:
        raise NotImplementedError

    def elsewhere(self, number: int, ts: float) -> None:
        """Frame `number` at `ts` (at least next_tick) belongs to another share: only its time counts here."""
