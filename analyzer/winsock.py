"""The catalogue of socket errors a failed connection surfaces, and the ICMP errors behind some.

Two tables and small lookups over them:

* ``ALL``: one ``WinsockError`` row per Winsock code: name and Microsoft's short title, what it
  means in plain words, the POSIX errno with its Linux and macOS numbers, and the text .NET, Java,
  Python and curl show for it.
* ``ICMP_NAMES`` plus the Linux and Windows ICMP-to-error tables behind ``icmp_error``: which
  error an ICMP/ICMPv6 message turns into on a TCP or UDP socket.

Sources (facts checked against them; texts in the meaning column are ours):
  - Microsoft, "Windows Sockets Error Codes" (winsock2.h; learn.microsoft.com, Winsock reference):
    codes, names and short titles. Winsock numbers the BSD socket errors as WSABASEERR (10000)
    plus the 4.3BSD errno, which is why the macOS column equals code - 10000 for most rows.
  - Linux include/uapi/asm-generic/errno-base.h and errno.h: the Linux column (the tests compare it
    with Python's errno module on Linux).
  - macOS/FreeBSD sys/errno.h: the macOS column (macOS differs from FreeBSD for EOPNOTSUPP: 102).
  - .NET System.Net.Sockets.SocketError; SocketException and NetworkStream/IOException messages
    (the Windows system message text for the code, as FormatMessage gives it).
  - OpenJDK: sun.nio.ch Net.c handleSocketError (ConnectException, NoRouteToHostException,
    BindException) and the Windows winsock_errors table in net_util_md.c; NioSocketImpl for
    "Connection reset". Windows JDKs often append the call, e.g. ": connect".
  - CPython Objects/exceptions.c (errno -> ConnectionResetError, TimeoutError, ...) and
    PC/errmap.h (WSAE* -> errno on Windows, shown as "[WinError N] <system message>").
  - curl lib/connect.c and lib/strerror.c, docs/libcurl/libcurl-errors.md (7 COULDNT_CONNECT,
    28 OPERATION_TIMEDOUT, 56 RECV_ERROR, 6 COULDNT_RESOLVE_HOST). curl 8 prints "Couldn't connect
    to server" after "Failed to connect to HOST port PORT after N ms:" where curl 7 printed the OS
    text; the OS text is still in the `-v` line "connect to ADDR port PORT failed: <text>".
  - Linux net/ipv4/icmp.c icmp_err_convert[], net/ipv6/icmp.c tab_unreach[] and
    icmpv6_err_convert(), net/ipv4/tcp_ipv4.c tcp_v4_err(), net/ipv4/udp.c __udp4_lib_err(),
    net/ipv6/udp.c __udp6_lib_err(): the Linux ICMP rows.
  - Microsoft KB 263823 and the WSAIoctl SIO_UDP_CONNRESET / SIO_UDP_NETRESET entries; the
    recvfrom reference (WSAECONNRESET, WSAENETRESET on UDP sockets): the Windows UDP ICMP rows.
  - RFC 792, RFC 1122, RFC 1812 (codes 13-15), RFC 4443 (ICMPv6): the ICMP names.

Which platform each seen-as string is for: ``dotnet`` and ``python_windows`` are what a Windows
program shows; ``python`` and ``curl`` are what a Linux one shows; ``java`` is the JDK's text
(platform-neutral prefix; Windows adds ": connect" and the like). Each row's ``operation`` says
which socket call the strings were written for (the text can differ for connect vs recv vs send).
"""

# Annotations in this module are evaluated, not kept as strings (no `from __future__ import
# annotations`): typing.NamedTuple compiles each string annotation when it makes its class, dozens
# of compiles on every start-up (tests/test_startup.py).
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeVar

from analyzer import icmp
from analyzer.errors import UsageError
from analyzer.model import PosixErrno, SeenAs, SocketErrorSeen, WinsockCode

_R = TypeVar("_R", WinsockCode, PosixErrno, SeenAs)


@dataclass(frozen=True, slots=True)
class WinsockError:
    """One Winsock error code and every way a user meets it."""

    code: int  # WSAGetLastError() value
    name: str  # WSAE... (or WSAHOST_NOT_FOUND)
    message: str  # Microsoft's short title
    meaning: str  # what it means, in plain words
    posix_name: str | None  # the errno with the same meaning; None where POSIX has none
    linux: int | None
    macos: int | None
    operation: str  # the call the seen-as strings below are written for
    dotnet: str | None  # None where .NET does not surface it
    java: str | None
    python: str | None  # Linux CPython
    python_windows: str | None  # Windows CPython
    curl: str | None  # Linux curl; None where curl does not report it as such
    local_only: bool = False  # decided inside the host: no packet shows it
    capture_instead: str = ""  # what to record instead when the capture cannot show it

    @property
    def dotnet_name(self) -> str | None:
        """The SocketError enum member, e.g. 'ConnectionReset', read off the .NET string."""
        return _DOTNET_ENUM.get(self.code)


_APP_TRACE = "an application log with the exception and its stack"
_WIN_TRACE = "`netsh trace start scenario=InternetClient capture=yes` (ETW) or Process Monitor on Windows"
_LINUX_TRACE = "`strace -f -e trace=network` (or `ss -tanpi`) on Linux"

# The catalogue, in code order. Strings in the seen-as columns are the products' own texts.
ALL: tuple[WinsockError, ...] = (
    WinsockError(
        10004,
        "WSAEINTR",
        "Interrupted function call.",
        "A blocking socket call was cut short: another thread closed the socket, the process is "
        "shutting down, or (Winsock 1.1) the call was cancelled. Nothing went wrong on the network.",
        "EINTR",
        4,
        4,
        "recv",
        "System.Net.Sockets.SocketException (10004): A blocking operation was interrupted by a call to WSACancelBlockingCall.",
        "java.net.SocketException: Socket closed",
        "InterruptedError: [Errno 4] Interrupted system call",
        "InterruptedError: [WinError 10004] A blocking operation was interrupted by a call to WSACancelBlockingCall",
        None,
        local_only=True,
        capture_instead=f"{_APP_TRACE} (who closed the socket, and when); {_WIN_TRACE}",
    ),
    WinsockError(
        10013,
        "WSAEACCES",
        "Permission denied.",
        "The host refused the socket operation: binding a port reserved or excluded by the system "
        "(Hyper-V/WinNAT port ranges, `netsh int ipv4 show excludedportrange`), a port held "
        "exclusively by another process, sending to a broadcast address without SO_BROADCAST, or "
        "a local firewall/security product blocking the call.",
        "EACCES",
        13,
        13,
        "connect",
        "System.Net.Sockets.SocketException (10013): An attempt was made to access a socket in a way forbidden by its access permissions.",
        "java.net.SocketException: Permission denied",
        "PermissionError: [Errno 13] Permission denied",
        "PermissionError: [WinError 10013] An attempt was made to access a socket in a way forbidden by its access permissions",
        None,
        local_only=True,
        capture_instead=f"the excluded port ranges and local firewall log; {_WIN_TRACE}; {_LINUX_TRACE}",
    ),
    WinsockError(
        10022,
        "WSAEINVAL",
        "Invalid argument.",
        "The program passed something the socket cannot use in its current state, such as "
        "listening before binding, accepting on a socket that is not listening, or an address of "
        "the wrong family. A program bug or misconfiguration, not a network event.",
        "EINVAL",
        22,
        22,
        "connect",
        "System.Net.Sockets.SocketException (10022): An invalid argument was supplied.",
        "java.net.SocketException: Invalid argument",
        "OSError: [Errno 22] Invalid argument",
        "OSError: [WinError 10022] An invalid argument was supplied",
        None,
        local_only=True,
        capture_instead=f"{_APP_TRACE}; {_LINUX_TRACE}",
    ),
    WinsockError(
        10035,
        "WSAEWOULDBLOCK",
        "Resource temporarily unavailable.",
        "A non-blocking socket had nothing to give yet (no data to read, no room to send, or a "
        "connect still under way). Normal in event-driven code, which retries when the socket is "
        "ready; it is an error only when a program treats it as one.",
        "EWOULDBLOCK",
        11,
        35,
        "recv",
        "System.Net.Sockets.SocketException (10035): A non-blocking socket operation could not be completed immediately.",
        None,
        "BlockingIOError: [Errno 11] Resource temporarily unavailable",
        "BlockingIOError: [WinError 10035] A non-blocking socket operation could not be completed immediately",
        None,
        local_only=True,
        capture_instead=f"{_APP_TRACE} (a program that gives up on this code has a bug)",
    ),
    WinsockError(
        10036,
        "WSAEINPROGRESS",
        "Operation now in progress.",
        "Winsock: a blocking call is already running on this thread (a Winsock 1.1 leftover). "
        "POSIX uses the same name for a non-blocking connect that has started but not finished; "
        "Windows reports that case as WSAEWOULDBLOCK instead.",
        "EINPROGRESS",
        115,
        36,
        "connect",
        "System.Net.Sockets.SocketException (10036): A blocking operation is currently executing.",
        None,
        "BlockingIOError: [Errno 115] Operation now in progress",
        "BlockingIOError: [WinError 10036] A blocking operation is currently executing",
        None,
        local_only=True,
        capture_instead=_APP_TRACE,
    ),
    WinsockError(
        10037,
        "WSAEALREADY",
        "Operation already in progress.",
        "A second connect was started on a non-blocking socket whose first connect has not "
        "finished. A program-logic error; the first connect's SYNs are what the wire shows.",
        "EALREADY",
        114,
        37,
        "connect",
        "System.Net.Sockets.SocketException (10037): An operation was attempted on a non-blocking socket that already had an operation in progress.",
        None,
        "BlockingIOError: [Errno 114] Operation already in progress",
        "BlockingIOError: [WinError 10037] An operation was attempted on a non-blocking socket that already had an operation in progress",
        None,
        local_only=True,
        capture_instead=_APP_TRACE,
    ),
    WinsockError(
        10038,
        "WSAENOTSOCK",
        "Socket operation on nonsocket.",
        "The handle passed to a socket call is not (or no longer) a socket: it was closed already, "
        "or a broken Winsock LSP/security filter in the host replaced it. Purely local.",
        "ENOTSOCK",
        88,
        38,
        "connect",
        "System.Net.Sockets.SocketException (10038): An operation was attempted on something that is not a socket.",
        "java.net.SocketException: Socket operation on nonsocket: configureBlocking",
        "OSError: [Errno 88] Socket operation on non-socket",
        "OSError: [WinError 10038] An operation was attempted on something that is not a socket",
        None,
        local_only=True,
        capture_instead=f"{_APP_TRACE}; `netsh winsock show catalog` for foreign LSPs; {_WIN_TRACE}",
    ),
    WinsockError(
        10040,
        "WSAEMSGSIZE",
        "Message too long.",
        "A datagram was larger than the socket or path allows (sending), or larger than the buffer "
        "given to receive it (the rest was discarded). An ICMP 'fragmentation needed' / ICMPv6 "
        "'packet too big' can lower the allowed size.",
        "EMSGSIZE",
        90,
        40,
        "sendto",
        "System.Net.Sockets.SocketException (10040): A message sent on a datagram socket was larger than the internal message buffer or some other network limit, or the buffer used to receive a datagram into was smaller than the datagram itself.",
        "java.net.SocketException: The message is larger than the maximum supported by the underlying transport: Datagram send failed",
        "OSError: [Errno 90] Message too long",
        "OSError: [WinError 10040] A message sent on a datagram socket was larger than the internal message buffer or some other network limit, or the buffer used to receive a datagram into was smaller than the datagram itself",
        None,
    ),
    WinsockError(
        10042,
        "WSAENOPROTOOPT",
        "Bad protocol option.",
        "A socket option or level is unknown or unsupported. Linux also uses ENOPROTOOPT for an "
        "ICMP 'protocol unreachable' answering a connection attempt.",
        "ENOPROTOOPT",
        92,
        42,
        "setsockopt",
        "System.Net.Sockets.SocketException (10042): An unknown, invalid, or unsupported option or level was specified in a getsockopt or setsockopt call.",
        None,
        "OSError: [Errno 92] Protocol not available",
        "OSError: [WinError 10042] An unknown, invalid, or unsupported option or level was specified in a getsockopt or setsockopt call",
        None,
    ),
    WinsockError(
        10045,
        "WSAEOPNOTSUPP",
        "Operation not supported.",
        "The socket type cannot do what was asked (for example listen on a datagram socket). Linux "
        "also uses EOPNOTSUPP for an ICMP 'source route failed'.",
        # macOS: EOPNOTSUPP is 102 (45 is ENOTSUP there), sys/errno.h.
        "EOPNOTSUPP",
        95,
        102,
        "listen",
        "System.Net.Sockets.SocketException (10045): The attempted operation is not supported for the type of object referenced.",
        None,
        "OSError: [Errno 95] Operation not supported",
        "OSError: [WinError 10045] The attempted operation is not supported for the type of object referenced",
        None,
    ),
    WinsockError(
        10048,
        "WSAEADDRINUSE",
        "Address already in use.",
        "The local address and port are taken: a server binding a port another process (or a "
        "socket in TIME_WAIT without SO_REUSEADDR) holds, or, on connect, the host ran out of "
        "ephemeral ports toward that destination. The attempt never leaves the host.",
        "EADDRINUSE",
        98,
        48,
        "bind",
        "System.Net.Sockets.SocketException (10048): Only one usage of each socket address (protocol/network address/port) is normally permitted.",
        "java.net.BindException: Address already in use",
        "OSError: [Errno 98] Address already in use",
        "OSError: [WinError 10048] Only one usage of each socket address (protocol/network address/port) is normally permitted",
        None,
        local_only=True,
        capture_instead="`netstat -ano` / `ss -tanp` (who holds the port, how many TIME_WAIT sockets); "
        "`netsh int ipv4 show dynamicport tcp` for the ephemeral range",
    ),
    WinsockError(
        10049,
        "WSAEADDRNOTAVAIL",
        "Cannot assign requested address.",
        "The address asked for is not usable from this host: binding an IP the host does not own, "
        "connecting to 0.0.0.0 or port 0, or (Linux) no free ephemeral port for that destination.",
        "EADDRNOTAVAIL",
        99,
        49,
        "connect",
        "System.Net.Sockets.SocketException (10049): The requested address is not valid in its context.",
        "java.net.BindException: Cannot assign requested address",
        "OSError: [Errno 99] Cannot assign requested address",
        "OSError: [WinError 10049] The requested address is not valid in its context",
        "curl: (7) Failed to connect to HOST port PORT after N ms: Cannot assign requested address",
        local_only=True,
        capture_instead="the host's addresses (`ipconfig /all`, `ip addr`), its ephemeral port use "
        "(`netstat -ano`, `ss -s`) and the address the program was configured with",
    ),
    WinsockError(
        10050,
        "WSAENETDOWN",
        "Network is down.",
        "The host's own network stack or interface failed (adapter disabled, driver reset, VPN "
        "interface gone) while the call ran. Nothing on the wire reports it.",
        "ENETDOWN",
        100,
        50,
        "send",
        "System.Net.Sockets.SocketException (10050): A socket operation encountered a dead network.",
        "java.net.SocketException: Network is down",
        "OSError: [Errno 100] Network is down",
        "OSError: [WinError 10050] A socket operation encountered a dead network",
        None,
        local_only=True,
        capture_instead=f"the system event log (adapter and driver events) or `dmesg`; {_WIN_TRACE}",
    ),
    WinsockError(
        10051,
        "WSAENETUNREACH",
        "Network is unreachable.",
        "No route to the destination network: either the host's own routing table has none (no "
        "packet is sent at all) or a router answered with ICMP 'network unreachable'.",
        "ENETUNREACH",
        101,
        51,
        "connect",
        "System.Net.Sockets.SocketException (10051): A socket operation was attempted to an unreachable network.",
        "java.net.SocketException: Network is unreachable",
        "OSError: [Errno 101] Network is unreachable",
        "OSError: [WinError 10051] A socket operation was attempted to an unreachable network",
        "curl: (7) Failed to connect to HOST port PORT after N ms: Network is unreachable",
    ),
    WinsockError(
        10052,
        "WSAENETRESET",
        "Network dropped connection on reset.",
        "On a TCP socket: keep-alive probes went unanswered and the stack dropped the connection "
        "while an operation was pending. On a UDP socket (Windows): an earlier datagram drew an "
        "ICMP 'time exceeded' (TTL expired), reported on a later receive.",
        "ENETRESET",
        102,
        52,
        "recv",
        "System.IO.IOException: Unable to read data from the transport connection: The connection has been broken due to keep-alive activity detecting a failure while the operation was in progress.",
        "java.net.SocketException: Network dropped connection on reset",
        "OSError: [Errno 102] Network dropped connection on reset",
        "OSError: [WinError 10052] The connection has been broken due to keep-alive activity detecting a failure while the operation was in progress",
        "curl: (56) Recv failure: Network dropped connection on reset",
    ),
    WinsockError(
        10053,
        "WSAECONNABORTED",
        "Software caused connection abort.",
        "This host's own stack ended the connection: data retransmissions ran out without an "
        "acknowledgement, a local firewall/antivirus filter cut it, or the program reset its own "
        "socket. The wire may show the retransmissions, never the abort itself.",
        "ECONNABORTED",
        103,
        53,
        "recv",
        "System.IO.IOException: Unable to read data from the transport connection: An established connection was aborted by the software in your host machine.",
        "java.net.SocketException: Software caused connection abort: recv failed",
        "ConnectionAbortedError: [Errno 103] Software caused connection abort",
        "ConnectionAbortedError: [WinError 10053] An established connection was aborted by the software in your host machine",
        "curl: (56) Recv failure: Software caused connection abort",
        local_only=True,
        capture_instead=f"a capture on this host (to see the unanswered retransmissions), its "
        f"firewall/antivirus logs and {_WIN_TRACE}",
    ),
    WinsockError(
        10054,
        "WSAECONNRESET",
        "Connection reset by peer.",
        "The other side (or something pretending to be it) sent a TCP reset: the peer program "
        "closed abortively or crashed, the peer host lost the connection's state, or a middlebox "
        "injected the RST. On a Windows UDP socket: an earlier datagram drew ICMP 'port unreachable'.",
        "ECONNRESET",
        104,
        54,
        "recv",
        "System.IO.IOException: Unable to read data from the transport connection: An existing connection was forcibly closed by the remote host.",
        "java.net.SocketException: Connection reset",
        "ConnectionResetError: [Errno 104] Connection reset by peer",
        "ConnectionResetError: [WinError 10054] An existing connection was forcibly closed by the remote host",
        "curl: (56) Recv failure: Connection reset by peer",
    ),
    WinsockError(
        10055,
        "WSAENOBUFS",
        "No buffer space available.",
        "The host ran out of socket resources: too many connections open, ephemeral ports or "
        "non-paged memory used up. No packet is sent for the failing call.",
        "ENOBUFS",
        105,
        55,
        "connect",
        "System.Net.Sockets.SocketException (10055): An operation on a socket could not be performed because the system lacked sufficient buffer space or because a queue was full.",
        "java.net.SocketException: No buffer space available (maximum connections reached?): connect",
        "OSError: [Errno 105] No buffer space available",
        "OSError: [WinError 10055] An operation on a socket could not be performed because the system lacked sufficient buffer space or because a queue was full",
        None,
        local_only=True,
        capture_instead="the socket count and port use on the host (`netstat -ano`, `ss -s`) and its "
        "memory counters (Performance Monitor, /proc/net/sockstat)",
    ),
    WinsockError(
        10056,
        "WSAEISCONN",
        "Socket is already connected.",
        "connect was called on a socket that is connected already, or sendto named an address on "
        "a connected socket. A program-logic error.",
        "EISCONN",
        106,
        56,
        "connect",
        "System.Net.Sockets.SocketException (10056): A connect request was made on an already connected socket.",
        "java.net.SocketException: already connected",
        "OSError: [Errno 106] Transport endpoint is already connected",
        "OSError: [WinError 10056] A connect request was made on an already connected socket",
        None,
        local_only=True,
        capture_instead=_APP_TRACE,
    ),
    WinsockError(
        10057,
        "WSAENOTCONN",
        "Socket is not connected.",
        "A send or receive on a socket that is not (or no longer) connected: the connect never "
        "finished, or the connection was already torn down and the program kept using the socket.",
        "ENOTCONN",
        107,
        57,
        "send",
        "System.Net.Sockets.SocketException (10057): A request to send or receive data was disallowed because the socket is not connected and (when sending on a datagram socket using a sendto call) no address was supplied.",
        "java.net.SocketException: Socket is not connected",
        "OSError: [Errno 107] Transport endpoint is not connected",
        "OSError: [WinError 10057] A request to send or receive data was disallowed because the socket is not connected and (when sending on a datagram socket using a sendto call) no address was supplied",
        None,
        local_only=True,
        capture_instead=f"{_APP_TRACE} (what ended the connection before this call)",
    ),
    WinsockError(
        10058,
        "WSAESHUTDOWN",
        "Cannot send after socket shutdown.",
        "The program itself shut this direction down earlier (shutdown for sending, which sent a "
        "FIN, or for receiving) and then tried to use it again. Linux reports a send after "
        "shutdown as EPIPE rather than ESHUTDOWN.",
        "ESHUTDOWN",
        108,
        58,
        "send",
        "System.IO.IOException: Unable to write data to the transport connection: A request to send or receive data was disallowed because the socket had already been shut down in that direction with a previous shutdown call.",
        "java.net.SocketException: Socket output is shutdown",
        "BrokenPipeError: [Errno 108] Cannot send after transport endpoint shutdown",
        "BrokenPipeError: [WinError 10058] A request to send or receive data was disallowed because the socket had already been shut down in that direction with a previous shutdown call",
        None,
        local_only=True,
        capture_instead=f"{_APP_TRACE} (where the program called shutdown); {_LINUX_TRACE}",
    ),
    WinsockError(
        10059,
        "WSAETOOMANYREFS",
        "Too many references.",
        "Too many references to a kernel object. Kept for BSD compatibility; not seen in practice.",
        "ETOOMANYREFS",
        109,
        59,
        "send",
        None,
        None,
        "OSError: [Errno 109] Too many references: cannot splice",
        "OSError: [WinError 10059] Too many references to some kernel object",
        None,
        local_only=True,
        capture_instead=_APP_TRACE,
    ),
    WinsockError(
        10060,
        "WSAETIMEDOUT",
        "Connection timed out.",
        "The peer never answered: the SYN and its retransmissions went unanswered (connect), or "
        "sent data was never acknowledged. Packets dropped on the way (firewall, dead host, wrong "
        "route) rather than refused. Programs with their own connect timeout report it "
        "differently (Java: SocketTimeoutException: connect timed out).",
        "ETIMEDOUT",
        110,
        60,
        "connect",
        "System.Net.Sockets.SocketException (10060): A connection attempt failed because the connected party did not properly respond after a period of time, or established connection failed because connected host has failed to respond.",
        "java.net.ConnectException: Connection timed out",
        "TimeoutError: [Errno 110] Connection timed out",
        "TimeoutError: [WinError 10060] A connection attempt failed because the connected party did not properly respond after a period of time, or established connection failed because connected host has failed to respond",
        "curl: (28) Failed to connect to HOST port PORT after N ms: Connection timed out",
    ),
    WinsockError(
        10061,
        "WSAECONNREFUSED",
        "Connection refused.",
        "The destination answered the SYN with a reset: nothing listens on that port, the "
        "listener's backlog is full (Windows), or a firewall rejects with RST. Linux also reports "
        "it for an ICMP 'port unreachable'.",
        "ECONNREFUSED",
        111,
        61,
        "connect",
        "System.Net.Sockets.SocketException (10061): No connection could be made because the target machine actively refused it.",
        "java.net.ConnectException: Connection refused",
        "ConnectionRefusedError: [Errno 111] Connection refused",
        "ConnectionRefusedError: [WinError 10061] No connection could be made because the target machine actively refused it",
        "curl: (7) Failed to connect to HOST port PORT after N ms: Connection refused",
    ),
    WinsockError(
        10062,
        "WSAELOOP",
        "Cannot translate name.",
        "A name could not be translated. Kept for BSD compatibility (ELOOP, too many symbolic "
        "links); not a network condition.",
        "ELOOP",
        40,
        62,
        "connect",
        None,
        None,
        "OSError: [Errno 40] Too many levels of symbolic links",
        "OSError: [WinError 10062] Cannot translate name",
        None,
        local_only=True,
        capture_instead=_APP_TRACE,
    ),
    WinsockError(
        10063,
        "WSAENAMETOOLONG",
        "Name too long.",
        "A name or name component was too long. Kept for BSD compatibility; not a network condition.",
        "ENAMETOOLONG",
        36,
        63,
        "connect",
        None,
        None,
        "OSError: [Errno 36] File name too long",
        "OSError: [WinError 10063] Name component or name was too long",
        None,
        local_only=True,
        capture_instead=_APP_TRACE,
    ),
    WinsockError(
        10064,
        "WSAEHOSTDOWN",
        "Host is down.",
        "The destination host is known to be down (Linux: ICMP 'host unknown'; neighbour "
        "discovery or ARP got no answer on the local link). Usually reported as a timeout instead.",
        "EHOSTDOWN",
        112,
        64,
        "connect",
        "System.Net.Sockets.SocketException (10064): A socket operation failed because the destination host was down.",
        "java.net.SocketException: Host is down",
        "OSError: [Errno 112] Host is down",
        "OSError: [WinError 10064] A socket operation failed because the destination host was down",
        "curl: (7) Failed to connect to HOST port PORT after N ms: Host is down",
    ),
    WinsockError(
        10065,
        "WSAEHOSTUNREACH",
        "No route to host.",
        "The destination host cannot be reached: a router or the host's own stack answered with "
        "ICMP 'host unreachable' (or 'administratively prohibited', on Linux), or the local link "
        "could not resolve the next hop (ARP/neighbour discovery failed).",
        "EHOSTUNREACH",
        113,
        65,
        "connect",
        "System.Net.Sockets.SocketException (10065): A socket operation was attempted to an unreachable host.",
        "java.net.NoRouteToHostException: No route to host",
        "OSError: [Errno 113] No route to host",
        "OSError: [WinError 10065] A socket operation was attempted to an unreachable host",
        "curl: (7) Failed to connect to HOST port PORT after N ms: No route to host",
    ),
    WinsockError(
        11001,
        "WSAHOST_NOT_FOUND",
        "Host not found.",
        "The name could not be resolved to an address: DNS answered that it does not exist "
        "(NXDOMAIN), or no resolver could be asked. No connection was attempted.",
        None,
        None,
        None,
        "getaddrinfo",
        "System.Net.Sockets.SocketException (11001): No such host is known.",
        "java.net.UnknownHostException: HOST",
        "socket.gaierror: [Errno -2] Name or service not known",
        "socket.gaierror: [Errno 11001] getaddrinfo failed",
        "curl: (6) Could not resolve host: HOST",
        local_only=True,
        capture_instead="a capture that includes DNS (port 53, 5353, 5355) from this host, or the "
        "resolver's view: `Resolve-DnsName NAME`, `nslookup NAME`, `getent hosts NAME`",
    ),
)

# .NET System.Net.Sockets.SocketError members for the codes above (codes it has no member for:
# 10059, 10062, 10063).
_DOTNET_ENUM: dict[int, str] = {
    10004: "Interrupted",
    10013: "AccessDenied",
    10022: "InvalidArgument",
    10035: "WouldBlock",
    10036: "InProgress",
    10037: "AlreadyInProgress",
    10038: "NotSocket",
    10040: "MessageSize",
    10042: "ProtocolOption",
    10045: "OperationNotSupported",
    10048: "AddressAlreadyInUse",
    10049: "AddressNotAvailable",
    10050: "NetworkDown",
    10051: "NetworkUnreachable",
    10052: "NetworkReset",
    10053: "ConnectionAborted",
    10054: "ConnectionReset",
    10055: "NoBufferSpaceAvailable",
    10056: "IsConnected",
    10057: "NotConnected",
    10058: "Shutdown",
    10060: "TimedOut",
    10061: "ConnectionRefused",
    10064: "HostDown",
    10065: "HostUnreachable",
    11001: "HostNotFound",
}

_BY_CODE: dict[int, WinsockError] = {e.code: e for e in ALL}
_BY_NAME: dict[str, WinsockError] = {e.name: e for e in ALL}
_BY_ERRNO: dict[str, WinsockError] = {e.posix_name: e for e in ALL if e.posix_name}
ERRNO_NAMES = frozenset(_BY_ERRNO)  # errno names the catalogue has a row for
_BY_ERRNO["EAGAIN"] = _BY_CODE[10035]  # Linux and macOS define EWOULDBLOCK as EAGAIN
_BY_ERRNO["ENOTSUP"] = _BY_CODE[10045]  # Linux: same number as EOPNOTSUPP

_HOW_TO_ASK = "ask by Winsock code (10054), Winsock name (WSAECONNRESET) or errno name (ECONNRESET)"


def lookup(what: int | str) -> WinsockError:
    """The catalogue row for a Winsock code, a Winsock name or an errno name (any case)."""
    row = None
    if isinstance(what, int) and not isinstance(what, bool):
        row = _BY_CODE.get(what)
    elif isinstance(what, str):
        key = what.strip().upper()
        row = _BY_CODE.get(int(key)) if key.isdigit() else _BY_NAME.get(key) or _BY_ERRNO.get(key)
    if row is None:
        raise UsageError(f"unknown socket error: {what!r}", hint=_HOW_TO_ASK)
    return row


def seen(
    side: Literal["client", "server"],
    endpoint: str,
    operation: str,
    name: int | str,
    *,
    posix_name: str | None = None,
    transport: Literal["tcp", "udp"] = "tcp",
    posix_silent: bool = False,
    windows_silent: bool = False,
) -> SocketErrorSeen:
    """The JSON-contract record of the error one side saw (DESIGN.md, `findings[].errors[]`).

    name: the Winsock error Windows reports. posix_name: the errno Linux and macOS report where it
    differs (an ICMP port unreachable is 10054 on Windows but ECONNREFUSED on a connected Linux UDP
    socket); the POSIX fields and the Linux runtimes' strings then come from that errno's row.
    transport "udp": the runtimes' TCP wording is replaced by what they say for a datagram socket.
    posix_silent / windows_silent: Linux and macOS / Windows report nothing for it (a UDP socket
    told of an ICMP error only one platform surfaces); that platform's fields are left empty.
    """
    e = lookup(name)
    p = lookup(posix_name) if posix_name else e
    if transport == "udp":
        posix, seen_as, note = _udp_view(e, p, posix_silent, windows_silent)
    else:
        posix = PosixErrno(p.posix_name, p.linux, p.macos)
        java, curl = ON_TRANSFER.get((p.name, operation), (p.java, p.curl))
        seen_as = SeenAs(dotnet=e.dotnet, java=java, python=p.python, curl=curl, python_windows=e.python_windows)
        note = ""
        if e.local_only:
            note = f"local to the host: the capture cannot show it. Record instead: {e.capture_instead}"
    return SocketErrorSeen(
        side=side,
        endpoint=endpoint,
        operation=operation,
        winsock=_shared(WinsockCode(e.code, e.name, e.message)),
        posix=_shared(posix),
        seen_as=_shared(seen_as),
        note=note,
    )


# One instance of each distinct WinsockCode, PosixErrno and SeenAs (frozen, so they can be shared):
# a capture with thousands of findings holds a handful rather than three per error, and a pickled
# result (a --jobs worker's, a split share's) writes each once. The table's rows bound how many.
_SHARED: dict[object, object] = {}


def _shared(record: _R) -> _R:
    """The one instance equal to `record`."""
    return _SHARED.setdefault(record, record)  # type: ignore[return-value]


# What Java and curl print for an error whose row speaks of connect() (the usual place for it)
# when it ends a connection already established: a read or a write that timed out after the
# retransmissions ran out.
ON_TRANSFER: dict[tuple[str, str], tuple[str | None, str | None]] = {
    ("WSAETIMEDOUT", "recv"): (
        "java.net.SocketException: Connection timed out",
        "curl: (56) Recv failure: Connection timed out",
    ),
    ("WSAETIMEDOUT", "send"): (
        "java.net.SocketException: Connection timed out",
        "curl: (55) Send failure: Connection timed out",
    ),
}


def _udp_view(
    e: WinsockError, p: WinsockError, posix_silent: bool, windows_silent: bool
) -> tuple[PosixErrno, SeenAs, str]:
    """What a datagram socket is told: no curl (its transfers run over TCP), .NET's SocketException
    (UdpClient and Socket have no stream to wrap it in), and nothing on a platform that ignores
    the ICMP error (a soft error on Linux, one Windows does not surface)."""
    if posix_silent:
        posix, java, python = PosixErrno(None, None, None), None, None
        note = UDP_NOTE_WINDOWS_ONLY
    else:
        posix, python = PosixErrno(p.posix_name, p.linux, p.macos), p.python
        java = UDP_JAVA_PORT_UNREACHABLE if p.posix_name == "ECONNREFUSED" else p.java
        note = UDP_NOTE_LINUX_ONLY if windows_silent else UDP_NOTE
    dotnet = python_windows = None
    if not windows_silent:
        python_windows = e.python_windows
        dotnet = f"System.Net.Sockets.SocketException ({e.code}): {_windows_text(e)}"
    return posix, SeenAs(dotnet=dotnet, java=java, python=python, curl=None, python_windows=python_windows), note


def _windows_text(e: WinsockError) -> str:
    """Windows' own wording of an error (FormatMessage), as CPython on Windows prints it."""
    text = (e.python_windows or "").partition("] ")[2]
    return f"{text}." if text else e.message


class Runtime(NamedTuple):
    """A runtime whose error text reports show: its SeenAs field and the label readers know it by."""

    field: str
    label: str


# The runtimes every report lists, in this order (python_windows is JSON-only: Windows CPython).
RUNTIMES: tuple[Runtime, ...] = (
    Runtime("dotnet", ".NET"),
    Runtime("java", "Java"),
    Runtime("python", "Python"),
    Runtime("curl", "curl"),
)


def seen_lines(seen: SeenAs) -> list[tuple[str, str]]:
    """(label, text) for each runtime of RUNTIMES that surfaces the error."""
    out = []
    for runtime in RUNTIMES:
        text = getattr(seen, runtime.field)
        if text:
            out.append((runtime.label, text))
    return out


# What a UDP socket is told, which depends on the platform and on whether the socket is connected.
UDP_NOTE = (
    "Windows reports it on the socket's next receive whether or not the socket is connected "
    "(unless SIO_UDP_CONNRESET is turned off); Linux and macOS report it only on a connected UDP "
    "socket (an unconnected one sees nothing unless IP_RECVERR is set)."
)
UDP_NOTE_WINDOWS_ONLY = (
    "Windows reports it on the socket's next receive (connected or not); Linux and macOS record only "
    "a soft error for it, seen with IP_RECVERR: without that the application waits for its own timeout."
)
UDP_NOTE_LINUX_ONLY = (
    "Linux reports it on a connected UDP socket's next receive; Windows does not surface this ICMP "
    "error on a UDP socket, and an unconnected Linux socket sees it only with IP_RECVERR."
)
UDP_JAVA_PORT_UNREACHABLE = "java.net.PortUnreachableException: ICMP Port Unreachable"  # connected DatagramSocket


# ---------------------------------------------------------------------------------------------
# ICMP and ICMPv6 messages: names, and the socket error each one turns into.

# Their names are the one table in analyzer.icmp (ICMP_NAMES and icmp_name are kept here as the
# names this module has always exported).
ICMP_NAMES = icmp.NAMES
icmp_name = icmp.icmp_name


# Linux net/ipv4/icmp.c icmp_err_convert[], indexed by destination-unreachable code:
# (errno, fatal). "fatal" errors end a connected UDP socket's wait; RFC 1122 4.2.3.9 lets TCP treat
# only some as hard, so Linux TCP uses them only while connecting (tcp_v4_err).
LINUX_ICMP4_UNREACH: tuple[tuple[str, bool], ...] = (
    ("ENETUNREACH", False),  # 0 net unreachable
    ("EHOSTUNREACH", False),  # 1 host unreachable
    ("ENOPROTOOPT", True),  # 2 protocol unreachable
    ("ECONNREFUSED", True),  # 3 port unreachable
    ("EMSGSIZE", False),  # 4 fragmentation needed (handled as path MTU first)
    ("EOPNOTSUPP", False),  # 5 source route failed
    ("ENETUNREACH", True),  # 6 network unknown
    ("EHOSTDOWN", True),  # 7 host unknown
    ("ENONET", True),  # 8 host isolated
    ("ENETUNREACH", True),  # 9 network administratively prohibited
    ("EHOSTUNREACH", True),  # 10 host administratively prohibited
    ("ENETUNREACH", False),  # 11 network unreachable for TOS
    ("EHOSTUNREACH", False),  # 12 host unreachable for TOS
    ("EHOSTUNREACH", True),  # 13 communication administratively prohibited (filtered)
    ("EHOSTUNREACH", True),  # 14 host precedence violation
    ("EHOSTUNREACH", True),  # 15 precedence cutoff
)

# Linux net/ipv6/icmp.c tab_unreach[], indexed by ICMPv6 destination-unreachable code.
# Codes beyond the table: EPROTO, fatal (icmpv6_err_convert).
LINUX_ICMP6_UNREACH: tuple[tuple[str, bool], ...] = (
    ("ENETUNREACH", False),  # 0 no route
    ("EACCES", True),  # 1 administratively prohibited
    ("EHOSTUNREACH", False),  # 2 beyond scope (was "not a neighbour")
    ("EHOSTUNREACH", False),  # 3 address unreachable
    ("ECONNREFUSED", True),  # 4 port unreachable
    ("EACCES", True),  # 5 source address failed policy
    ("EACCES", True),  # 6 reject route
)

# Windows: what a Winsock socket reports for an ICMP error quoting its traffic. First match wins;
# code None matches any code, phase None any phase. The UDP rows are documented (KB 263823,
# SIO_UDP_CONNRESET on by default; recvfrom and WSAENETRESET references: a datagram socket
# reports TTL expiry, switchable with SIO_UDP_NETRESET). The TCP connect rows are inferred from
# observed behaviour, not from a document: Windows keeps retransmitting the SYN and, when the
# retries run out, connect fails with the unreachable error instead of WSAETIMEDOUT. An
# established Windows TCP connection does not end on ICMP (it ends later in WSAECONNABORTED when
# retransmissions run out). Every other combination: nothing.
WINDOWS_ICMP: tuple[tuple[int, int, int | None, str, str | None, str | None], ...] = (
    # family, type, code, transport, phase, error
    (4, icmp.ICMP_UNREACH, icmp.ICMP_UNREACH_PORT, "udp", None, "WSAECONNRESET"),
    (6, icmp.ICMP6_DST_UNREACH, icmp.ICMP6_DST_UNREACH_NOPORT, "udp", None, "WSAECONNRESET"),
    (4, icmp.ICMP_TIMEXCEED, None, "udp", None, "WSAENETRESET"),
    (6, icmp.ICMP6_TIME_EXCEEDED, None, "udp", None, "WSAENETRESET"),
    (4, icmp.ICMP_UNREACH, icmp.ICMP_UNREACH_NEEDFRAG, "tcp", None, None),  # path MTU discovery, not an error
    (4, icmp.ICMP_UNREACH, icmp.ICMP_UNREACH_PORT, "tcp", "connect", "WSAECONNREFUSED"),
    (4, icmp.ICMP_UNREACH, icmp.ICMP_UNREACH_NET, "tcp", "connect", "WSAENETUNREACH"),
    (4, icmp.ICMP_UNREACH, icmp.ICMP_UNREACH_NET_UNKNOWN, "tcp", "connect", "WSAENETUNREACH"),
    (4, icmp.ICMP_UNREACH, icmp.ICMP_UNREACH_NET_PROHIB, "tcp", "connect", "WSAENETUNREACH"),
    (4, icmp.ICMP_UNREACH, icmp.ICMP_UNREACH_TOSNET, "tcp", "connect", "WSAENETUNREACH"),
    (4, icmp.ICMP_UNREACH, None, "tcp", "connect", "WSAEHOSTUNREACH"),
    (6, icmp.ICMP6_DST_UNREACH, icmp.ICMP6_DST_UNREACH_NOROUTE, "tcp", "connect", "WSAENETUNREACH"),
    (6, icmp.ICMP6_DST_UNREACH, icmp.ICMP6_DST_UNREACH_NOPORT, "tcp", "connect", "WSAECONNREFUSED"),
    (6, icmp.ICMP6_DST_UNREACH, None, "tcp", "connect", "WSAEHOSTUNREACH"),
)

_FAMILIES = (4, 6)
_TRANSPORTS = ("tcp", "udp")
_OSES = ("windows", "linux")
_PHASES = ("connect", "established")


def _path_mtu(family: int, type: int, code: int) -> bool:
    """Fragmentation needed (ICMPv4) or packet too big (ICMPv6): path MTU discovery's messages."""
    if family == 4:
        return type == icmp.ICMP_UNREACH and code == icmp.ICMP_UNREACH_NEEDFRAG
    return type == icmp.ICMP6_PACKET_TOO_BIG


def _linux_icmp(family: int, type: int, code: int) -> tuple[str, bool] | None:
    """(errno, fatal) Linux derives from an ICMP error, or None where it ignores the message."""
    if family == 4:
        if type == icmp.ICMP_UNREACH:
            # Codes past the table: TCP ignores them, UDP takes EHOSTUNREACH as a soft error.
            return LINUX_ICMP4_UNREACH[code] if code < len(LINUX_ICMP4_UNREACH) else ("EHOSTUNREACH", False)
        if type == icmp.ICMP_TIMEXCEED:
            return ("EHOSTUNREACH", False)
        if type == icmp.ICMP_PARAMPROB:
            return ("EPROTO", True)
        return None  # source quench and redirects: no socket error
    if type == icmp.ICMP6_DST_UNREACH:
        return LINUX_ICMP6_UNREACH[code] if code < len(LINUX_ICMP6_UNREACH) else ("EPROTO", True)
    if type == icmp.ICMP6_PACKET_TOO_BIG:
        return ("EMSGSIZE", False)
    if type == icmp.ICMP6_TIME_EXCEEDED:
        return ("EHOSTUNREACH", False)
    if type == icmp.ICMP6_PARAM_PROB:
        return ("EPROTO", True)
    return None


def icmp_error(
    family: int,
    type: int,
    code: int,
    transport: Literal["tcp", "udp"],
    os: Literal["windows", "linux"],
    phase: Literal["connect", "established"] = "connect",
) -> str | None:
    """The error a socket sees for an ICMP error quoting its traffic, or None if it sees nothing.

    Returns the Winsock name for os="windows" and the errno name for os="linux". `phase` matters
    for TCP only: "connect" while the SYN is outstanding, "established" afterwards.

    Linux, TCP: while connecting, every destination-unreachable (except fragmentation needed /
    packet too big, which only lower the path MTU), time exceeded and parameter problem ends the
    connect with its errno; once established, ICMP only records a soft error (the errno reported
    instead of ETIMEDOUT if the connection later times out), so this returns None.
    Linux, UDP: a *connected* socket without IP_RECVERR gets the errno of "fatal" messages only
    (port unreachable -> ECONNREFUSED, admin prohibited -> EHOSTUNREACH/ENETUNREACH/EACCES,
    fragmentation needed -> EMSGSIZE); an unconnected one sees nothing unless IP_RECVERR is set.
    Linux can return EPROTO and ENONET, which have no Winsock code and so no catalogue row.
    """
    if family not in _FAMILIES or transport not in _TRANSPORTS or os not in _OSES or phase not in _PHASES:
        raise UsageError(
            f"icmp_error: unknown family/transport/os/phase {family!r}/{transport!r}/{os!r}/{phase!r}",
            hint="family 4 or 6, transport tcp or udp, os windows or linux, phase connect or established",
        )
    if os == "windows":
        for f, t, c, tr, ph, err in WINDOWS_ICMP:
            if (
                f == family
                and t == type
                and (c is None or c == code)
                and tr == transport
                and (ph is None or ph == phase)
            ):
                return err
        return None
    effect = _linux_icmp(family, type, code)
    if effect is None:
        return None
    err, fatal = effect
    if transport == "tcp":
        if _path_mtu(family, type, code):
            return None  # path MTU discovery: the stack resends smaller segments
        if family == 4 and type == icmp.ICMP_UNREACH and code >= len(LINUX_ICMP4_UNREACH):
            return None
        return err if phase == "connect" else None
    if _path_mtu(family, type, code):
        return "EMSGSIZE"  # hard error while path MTU discovery is on (the default)
    return err if fatal else None
