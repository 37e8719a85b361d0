"""Integers read straight out of a byte buffer.

Compiled (see setup.py), these cost a few nanoseconds and allocate nothing, where
`struct.unpack_from` builds a tuple of objects; the packet loop reads every header with them.
"""

from __future__ import annotations


def be16(b: bytes, i: int) -> int:
    """The big-endian (network order) 16-bit number at b[i]."""
    return (b[i] << 8) | b[i + 1]


def be32(b: bytes, i: int) -> int:
    """The big-endian (network order) 32-bit number at b[i]."""
    return (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]


def le32(b: bytes, i: int) -> int:
    """The little-endian 32-bit number at b[i]."""
    return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)
