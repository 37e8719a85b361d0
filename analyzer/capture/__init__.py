"""Capture files to frames: pcap (µs/ns, either byte order) and pcapng, plain or gzip/bz2/xz.

from analyzer.capture import open_capture
with open_capture("t.pcap") as cap:      # or "-" for stdin, or a binary file object
    for frame in cap:                    # analyzer.model.Frame, numbered from 1
        ...
    cap.format, cap.linktypes, cap.warnings
"""

from analyzer.capture.reader import WARNING_CODES, Capture, open_capture

__all__ = ["WARNING_CODES", "Capture", "open_capture"]
