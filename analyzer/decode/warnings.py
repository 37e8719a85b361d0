"""Tallies of what the decoder skipped, turned into one CaptureWarning per kind at the end.

Counting is a dict update per skipped frame; messages are built once, when asked for.
"""

from __future__ import annotations

from analyzer.model import CaptureWarning

# What each code means to a user, as the first half of the warning message. Codes not listed as
# warnings (non-ip) are still counted: ARP, LLDP and STP are normal on any LAN and say nothing
# about why a connection failed, so warning about them would only teach users to skip warnings.
WARNING_TEXT: dict[str, str] = {
    "unknown-linktype": "frames of a link type the decoder does not read were skipped",
    "truncated-headers": "frames were captured shorter than their headers (snapshot length too small?)",
    "bad-ip-header": "packets with an invalid IP header were skipped",
    "ip-fragment": "IP fragments after the first were skipped (fragments are not reassembled)",
    "unsupported-protocol": "IP packets of protocols other than TCP, UDP and ICMP were skipped",
    "bad-transport-header": "packets with an invalid TCP/UDP/ICMP header were skipped",
    "malformed-link": "frames with a malformed link-layer header were skipped",
    "decode-error": "frames the decoder failed on were skipped (please report this as a bug)",
}
INFO_ONLY = frozenset({"non-ip"})  # counted, never a warning


class Tally:
    """Counts by (code, detail), remembering the first frame of each code."""

    def __init__(self) -> None:
        self._counts: dict[str, dict[str, int]] = {}
        self._first: dict[str, int] = {}

    def add(self, code: str, detail: str, frame: int) -> None:
        """Count one skipped (or partly decoded) frame."""
        details = self._counts.get(code)
        if details is None:
            details = self._counts[code] = {}
            self._first[code] = frame
        details[detail] = details.get(detail, 0) + 1

    def counts(self) -> dict[str, dict[str, int]]:
        """A copy of every tally: code -> detail -> frames."""
        return {code: dict(details) for code, details in self._counts.items()}

    def warnings(self) -> list[CaptureWarning]:
        """One warning per code, e.g. 'ip-fragment: 12 IP fragments after the first ... (IPv4: 12)'."""
        out = []
        for code, details in self._counts.items():
            if code in INFO_ONLY:
                continue
            total = sum(details.values())
            parts = ", ".join(f"{detail}: {n}" for detail, n in sorted(details.items(), key=lambda kv: -kv[1]))
            text = WARNING_TEXT.get(code, code)
            out.append(
                CaptureWarning(code, f"{total} {text} ({parts}); first at frame {self._first[code]}", self._first[code])
            )
        return out
