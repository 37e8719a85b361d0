"""wsadiag: diagnose failed connections in packet captures."""

__version__ = "0.1.0"
