"""What a two-capture finding says about the path: where between the points, how many hops, which sizes.

The rule engine fills the `{peer_capture}`, `{path_between}`, `{injected_hops}`, `{lost_sizes}` and
`{clock_offset}` placeholders from these; each is empty text when the conversation has no path.
"""

from __future__ import annotations

from collections.abc import Sequence

from analyzer.model import Conversation, Event, Mark
from analyzer.peer.model import PathView

INITIAL_TTLS = (32, 64, 128, 255)  # the initial TTLs / hop limits stacks use (Linux 64, Windows 128, Cisco 255)


def _points(view: PathView) -> tuple[str, str]:
    """(client-side point, server-side point) as the reader knows them: by capture file."""
    if view.here_near == "client":
        return view.here, view.peer
    return view.peer, view.here


def peer_capture(conv: Conversation) -> str:
    return conv.path.peer if conv.path is not None else ""


def path_between(conv: Conversation) -> str:
    """'between the client-side capture point (c.pcap) and the server-side one (s.pcap), 1 router apart'."""
    view = conv.path
    if view is None:
        return ""
    near, far = _points(view)
    apart = ""
    if view.hops_between == 0:
        apart = ", with no router between them"
    elif view.hops_between > 0:
        apart = f", {view.hops_between} router{'s' if view.hops_between != 1 else ''} apart"
    return f"between the client-side capture point ({near}) and the server-side one ({far}){apart}"


def injected_hops(conv: Conversation, events: Sequence[Event]) -> str:
    """How far the sender of the first injected evidence packet was from each point, from its TTL."""
    view = conv.path
    ev = next((e for e in events if e.marks & Mark.PATH_INJECTED), None)
    if view is None or ev is None:
        return ""
    initial = next((t for t in INITIAL_TTLS if t >= ev.ttl), 255)
    here_hops = initial - ev.ttl + 1  # links from the sender to this point
    here_side = view.here_near
    other_side = "server" if here_side == "client" else "client"
    text = f"TTL {ev.ttl} at the {here_side}-side point: sent {here_hops} hop{'s' if here_hops != 1 else ''} from it"
    if view.hops_between >= 0:
        links = view.hops_between + 1
        other = links - here_hops
        if other >= 1:
            text += f" and {other} hop{'s' if other != 1 else ''} from the {other_side}-side point"
        else:
            text += f", farther than the {other_side}-side point ({links} hops away): beyond it"
            text += f", or it started with a TTL other than {initial}"
    return text + f" (if it started at {initial})"


def lost_sizes(conv: Conversation) -> str:
    """'segments of 1104 to 1448 bytes vanished while packets of up to 70 bytes got through'."""
    view = conv.path
    if view is None:
        return ""
    parts = []
    for d in (0, 1):
        lost, through = view.sizes(d)
        if not lost:
            continue
        lo, hi = min(lost), max(lost)
        size = f"{lo} bytes" if lo == hi else f"{lo} to {hi} bytes"
        sender = "client" if d == 0 else "server"
        part = f"the {sender}'s segments of {size} vanished"
        if through:
            part += f" while its packets of up to {max(through)} bytes got through"
        parts.append(part)
    return "; ".join(parts)


def clock_offset(conv: Conversation) -> str:
    """The peer capture's clock against this one's: '+300.000012 s (± 0.002 ms)'."""
    view = conv.path
    if view is None:
        return ""
    c = view.clock
    spread = f" (± {c.uncertainty * 1000:.3f} ms)" if c.uncertainty >= 0 else " (one-sided bound)"
    offset = c.offset if abs(c.offset) >= 5e-7 else 0.0  # no "-0.000000"
    return f"{offset:+.6f} s{spread}"
