"""How reports write a conversation's path between two capture points (wsadiag analyze --peer)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from analyzer.icmp import icmp_label
from analyzer.model import CaptureResult, Conversation
from analyzer.peer.fates import FATES, RECUT

if TYPE_CHECKING:  # annotations only: a report of one capture does not load the two-capture records
    from analyzer.peer.model import PacketFate, PathView


def _delays(view: PathView, d: int) -> list[float]:
    return sorted(f.delay for f in view.packets if f.dir == d and f.near is not None and f.far is not None)


def _icmp_dict(f: PacketFate) -> dict[str, Any] | None:
    """An ICMP error's record in the path section: what it says, who sent it, from where."""
    p = f.packet
    if p.icmp is None:
        return None
    family = 6 if ":" in p.icmp_from else 4
    return {
        "type": p.icmp[0],
        "code": p.icmp[1],
        "name": icmp_label(family, *p.icmp),
        "from": p.icmp_from,
        "origin": f.origin,
    }


def icmp_lines(view: PathView) -> list[str]:
    """One line per ICMP error of the conversation: where it came from, and what it answered."""
    out = []
    here_near = view.here_near == "client"
    for f in view.packets:
        p = f.packet
        if p.icmp is None:
            continue
        here = f.near if here_near else f.far
        where = f"frame {here.frame}" if here is not None else f"frame {p.frame} of {view.peer}"
        family = 6 if ":" in p.icmp_from else 4
        line = f"{icmp_label(family, *p.icmp)} ({where}): {f.origin}"
        if f.fate == "injected":
            line += _answered(view, f, here_near)
        out.append(line)
    return out


def _answered(view: PathView, icmp: PacketFate, here_near: bool) -> str:
    """', answering the client's packet (frame 11), which never reached the server-side point'."""
    sent = [f for f in view.packets if f.dir != icmp.dir and f.ts <= icmp.ts and f.packet.icmp is None]
    if not sent or sent[-1].fate != "lost":
        return ""
    here = sent[-1].near if here_near else sent[-1].far
    sender, other = ("client", "server") if icmp.dir == 1 else ("server", "client")
    frame = f" (frame {here.frame})" if here is not None else ""
    return f"; it answers the {sender}'s packet{frame}, which never reached the {other}-side point"


def path_dict(view: PathView) -> dict[str, Any]:
    """The JSON `path` section of one conversation (added to the contract without bumping version)."""
    here_frame = (lambda f: f.near) if view.here_near == "client" else (lambda f: f.far)
    peer_frame = (lambda f: f.far) if view.here_near == "client" else (lambda f: f.near)
    delays: dict[str, Any] = {}
    for d, name in ((0, "client_to_server"), (1, "server_to_client")):
        got = _delays(view, d)
        if got:
            delays[name] = {"min": round(got[0], 6), "median": round(got[len(got) // 2], 6), "max": round(got[-1], 6)}
    return {
        "peer_capture": view.peer,
        "point": f"nearer the {view.here_near}",
        "order_basis": view.order_basis,
        "matched_by": view.matched_by,
        "peer_conversation": view.peer_conversation or None,
        "peer_endpoints": {"client": view.peer_client, "server": view.peer_server} if view.peer_conversation else None,
        "translated": view.translated,
        "changes": list(view.changes),
        "clock_offset": {
            "seconds": round(view.clock.offset, 6) + 0.0,  # the peer clock minus this one; + 0.0: no -0.0
            "uncertainty": round(view.clock.uncertainty, 6) if view.clock.uncertainty >= 0 else None,
            "pairs": view.clock.pairs,
            "basis": view.clock.basis,
        },
        "hops_between": view.hops_between if view.hops_between >= 0 else None,
        "peer_capture_damaged": view.peer_damage or None,  # the peer capture ends early: later packets are unknown
        "peer_findings": list(view.peer_findings),  # rules reported on the peer conversation in the other capture
        "one_way_delay": delays,
        "fates": {name: view.count(name) for name in (*FATES, "unknown")}
        | {"resegmented": view.recut()},  # of the seen: no twin of their own, their bytes cut otherwise there
        "packets": [
            {
                "frame": here_frame(f).frame if here_frame(f) is not None else None,
                "peer_frame": peer_frame(f).frame if peer_frame(f) is not None else None,
                "from": "client" if f.dir == 0 else "server",
                "fate": f.fate,
                "delay": round(f.delay, 6) if f.near is not None and f.far is not None else None,
                # TTL at the point nearer the client and at the other; their difference is the hops between
                "ttl": [f.near.ttl if f.near is not None else None, f.far.ttl if f.far is not None else None],
                "changes": list(f.changes),
            }
            | ({"icmp": icmp} if (icmp := _icmp_dict(f)) is not None else {})
            for f in view.packets
        ],
    }


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def _unknown_lines(view: PathView) -> list[str]:
    """Why packets are unknown when the other capture ended cleanly: it was not running when they
    would have passed it (its span, on its own clock, and this capture's frames outside it); or
    they are the other capture's, recorded when this one was not running."""
    first, last = view.peer_span
    mine = [f.near if view.here_near == "client" else f.far for f in view.packets if f.fate == "unknown"]
    here = [p for p in mine if p is not None]
    lines = []
    if here:
        before = [p.frame for p in here if p.ts + view.clock.offset < first]
        after = [p.frame for p in here if p.ts + view.clock.offset > last]
        where = [f"it begins after frame {max(before)} here"] if before else []
        where += [f"it ends before frame {min(after)} here"] if after else []
        told = "; ".join(where) or "these passed too close to its first or last frame to tell"
        lines.append(
            f"{view.peer} covers {_utc(first)} to {_utc(last)} on its clock ({told}): {len(here)} packet(s) "
            "of this capture it could not have seen are unknown, neither lost nor injected"
        )
    if len(mine) > len(here):
        lines.append(
            f"{len(mine) - len(here)} packet(s) recorded only by {view.peer}, when this capture was not "
            "running, are unknown, neither lost nor injected"
        )
    return lines


def path_summary(conv: Conversation) -> list[str]:
    """A few lines on where the conversation was seen and what happened in between."""
    view = conv.path
    if view is None:
        return []
    if view.peer_conversation:
        lines = [
            f"path: also in {view.peer} as conversation {view.peer_conversation} "
            f"({view.peer_client} -> {view.peer_server}, matched by {view.matched_by}); "
            f"this capture point is nearer the {view.here_near}"
        ]
    else:
        lines = [f"path: not in {view.peer}; this capture point is nearer the {view.here_near}"]
    counts = ", ".join(f"{view.count(name)} {name}" for name in (*FATES, "unknown") if view.count(name))
    if view.recut():  # a segment cut otherwise at the other point has no twin: counted apart, per point
        here = sum(
            1
            for f in view.packets
            if f.fate == "seen" and RECUT in f.changes and (f.near if view.here_near == "client" else f.far)
        )
        both = view.count("seen") - view.recut()
        counts = counts.replace(
            f"{view.count('seen')} seen",
            f"{both} seen at both points, {view.recut()} segments recorded at one point only whose bytes the "
            f"other saw cut otherwise ({here} here, {view.recut() - here} there)",
            1,
        )
    c = view.clock
    offset = c.offset if abs(c.offset) >= 5e-7 else 0.0  # no "-0.000000"
    spread = f" ± {c.uncertainty * 1000:.3f} ms" if c.uncertainty >= 0 else f" ({c.basis})"
    hops = f"; {view.hops_between} router(s) between the points" if view.hops_between >= 0 else ""
    lines.append(f"packets: {counts or 'none'}; clock of {view.peer} {offset:+.6f} s{spread}{hops}")
    lines.append(f"order of the points: {view.order_basis}")
    if view.peer_findings:
        lines.append(
            f"findings on it are reported with {view.peer}, conversation {view.peer_conversation}: "
            + ", ".join(view.peer_findings)
        )
    if view.peer_damage:
        lines.append(f"{view.peer} ends early ({view.peer_damage}): what would have passed it later is unknown")
    elif view.count("unknown"):
        lines += _unknown_lines(view)
    lines += [f"{'segmented otherwise' if c.startswith(RECUT) else 'changed in between'}: {c}" for c in view.changes]
    return lines + icmp_lines(view)


# Two-point ladders drawn per capture for conversations without a finding (a NAT, a proxy, a clamp
# to show): enough to see what the path does, few enough that a capture of thousands of healthy
# NATed conversations still makes a short report. The rest are counted, not drawn.
HEALTHY_LADDERS = 10


def healthy_paths(result: CaptureResult) -> tuple[list[Conversation], int]:
    """The conversations without findings that carry a path, the first HEALTHY_LADDERS of them,
    and how many more were left out."""
    with_findings = {f.conversation for f in result.findings}
    found = [c for c in result.conversations if c.path is not None and c.id not in with_findings]
    return found[:HEALTHY_LADDERS], max(0, len(found) - HEALTHY_LADDERS)


def healthy_left_out(left: int) -> str:
    return (
        f"… and {left} more conversation{'s' if left != 1 else ''} without findings whose path "
        f"is not drawn (the first {HEALTHY_LADDERS} are; the JSON report holds every path)"
    )
