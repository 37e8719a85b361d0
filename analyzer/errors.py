"""The exceptions wsadiag raises on purpose: each formats its own one-line message."""

from __future__ import annotations


class WsadiagError(Exception):
    """A user-facing failure: printed as `error: <message>` (plus `hint: ...`), exit code 2."""

    hint: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class CaptureError(WsadiagError):
    """The capture cannot be read at all (not a capture, empty, unreadable)."""


class RuleError(WsadiagError):
    """A rule file is malformed; the message names file, line and what is wrong."""


class UsageError(WsadiagError):
    """The command line asks for something that does not exist (unknown code, bad option value)."""
