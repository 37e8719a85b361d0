"""Keep freed megabyte read buffers in the process's heap (glibc) instead of handing them back.

The pcap and pcapng walks refill their buffer a megabyte at a time, and each refill makes a new
bytes object of that size (bytes are immutable, and the decoder keys conversations by slices of
the buffer, which must be bytes). glibc serves such sizes with fresh pages from the kernel and
returns them when they are freed, so every page of every refill is faulted in anew: on a 772 MB
capture about 90,000 more page faults, 0.15-0.2 s of system time in a 2.5 s analysis. Raising
glibc's mmap and trim thresholds (mallopt, the same knobs as the MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_ environment variables) lets a freed buffer's pages be reused instead, for
a few MiB more resident memory.

The setting is process-wide and lasts, so only the command line turns it on (enable()): a
program that calls analyze_capture keeps its own malloc behaviour. It is applied at the first
megabyte-sized read, so a small capture does not even import ctypes, and never on other systems
(macOS, Windows, musl) or when ctypes is missing.
"""

from __future__ import annotations

import sys

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
# Above any buffer a walk refills (a megabyte and the unread end of the record that crossed it, at
# most MAX_RECORD_LEN) and any item the decompressing child or thread hands over (AHEAD_ITEM and
# what it is joined with), so those come from the heap and reuse its pages; no higher, so that
# bigger blocks are mapped on their own and given back when freed. Measured on the bench captures
# (minor faults, peak): with both thresholds at 8 MiB a listing of 5M packets peaked at 101 MiB;
# with 4 and 8 MiB at 96 MiB, for the same faults; an mmap threshold of 2 MiB (93 MiB) faulted
# every decompressed item in anew (a 200k-packet .gz: 163k faults against 42k).
MMAP_ABOVE = 4 << 20
TRIM_ABOVE = 8 << 20  # free memory kept at the heap's top before any is returned (a few refills)
LARGE_READ = 1 << 20  # a read this big is a refill of a large capture

_enabled = False
_done = False


def enable() -> None:
    """Let this process tune glibc (the `wsadiag` command owns its process; a library caller does not)."""
    global _enabled
    _enabled = True


def keep_freed_buffers(read: int) -> None:
    """After a read of `read` bytes: tune glibc once, if enabled and the read is a large one; never raises."""
    global _done
    if _done or not _enabled or read < LARGE_READ:
        return
    _done = True
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes  # only here: a capture small enough for one read never pays for it

        mallopt = ctypes.CDLL(None).mallopt
        mallopt(M_MMAP_THRESHOLD, MMAP_ABOVE)
        mallopt(M_TRIM_THRESHOLD, TRIM_ABOVE)
    except Exception:  # no ctypes, no libffi, not glibc (musl has no mallopt): only slower
        pass
