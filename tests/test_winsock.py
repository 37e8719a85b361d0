"""The socket-error catalogue and the ICMP-to-error tables (analyzer.winsock)."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from analyzer import winsock
from analyzer.errors import UsageError

# A JSON report the project ships as its contract's reference (regenerated deliberately, see README).
CONTRACT = Path(__file__).resolve().parent / "golden" / "rst003.json"
ON_LINUX = sys.platform.startswith("linux")


# --- lookups ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "ask", [10054, "10054", " 10054 ", "WSAECONNRESET", "wsaeconnreset", "ECONNRESET", "econnreset"]
)
def test_lookup_by_code_name_or_errno_finds_the_same_row(ask):
    row = winsock.lookup(ask)
    assert (row.code, row.name, row.posix_name) == (10054, "WSAECONNRESET", "ECONNRESET")
    assert row.message == "Connection reset by peer."


def test_eagain_is_the_would_block_row():
    assert winsock.lookup("EAGAIN").code == 10035


@pytest.mark.parametrize("ask", ["nope", "WSAEBOGUS", "99999", 0, "", None, True])
def test_unknown_error_is_a_usage_error_that_says_how_to_ask(ask):
    with pytest.raises(UsageError) as info:
        winsock.lookup(ask)
    hint = info.value.hint or ""
    assert "10054" in hint and "WSAECONNRESET" in hint and "ECONNRESET" in hint


def test_catalogue_has_every_connection_failure_code():
    codes = {e.code for e in winsock.ALL}
    assert set(range(10048, 10066)) <= codes
    assert {10004, 10013, 10022, 10035, 10038, 11001} <= codes


def test_codes_names_and_errno_names_are_unique_and_in_code_order():
    codes = [e.code for e in winsock.ALL]
    names = [e.name for e in winsock.ALL]
    errnos = [e.posix_name for e in winsock.ALL if e.posix_name]
    assert codes == sorted(codes)
    assert len(set(codes)) == len(codes)
    assert len(set(names)) == len(names)
    assert len(set(errnos)) == len(errnos)
    assert all(e.name.startswith("WSA") and e.message.endswith(".") and e.meaning for e in winsock.ALL)


# --- numbers and texts checked against something other than the table ------------------------

@pytest.mark.skipif(not ON_LINUX, reason="the Linux column is checked against Linux's errno module")
@pytest.mark.parametrize("name", ["ECONNRESET", "ECONNREFUSED", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH"])
def test_linux_numbers_of_the_common_errors_match_this_machine(name):
    assert winsock.lookup(name).linux == getattr(errno, name)


@pytest.mark.skipif(not ON_LINUX, reason="the Linux column is checked against Linux's errno module")
def test_every_linux_number_matches_this_machine():
    for e in winsock.ALL:
        if e.posix_name:
            assert e.linux == getattr(errno, e.posix_name), e.name


def test_macos_numbers_follow_the_bsd_numbering_winsock_was_built_on():
    # winsock2.h defines WSAE<x> as WSABASEERR (10000) + the 4.3BSD errno, which macOS keeps;
    # macOS renumbered only EOPNOTSUPP (102; 45 became ENOTSUP).
    assert winsock.lookup("ECONNRESET").macos == 54
    for e in winsock.ALL:
        if e.posix_name and e.posix_name != "EOPNOTSUPP":
            assert e.macos == e.code - 10000, e.name
    assert winsock.lookup("EOPNOTSUPP").macos == 102


@pytest.mark.skipif(not ON_LINUX, reason="compares with CPython's errno-to-exception mapping and strerror on Linux")
def test_linux_python_text_is_what_cpython_prints_here():
    for e in winsock.ALL:
        if e.linux is None or e.python is None:
            continue
        exc = OSError(e.linux, os.strerror(e.linux))
        assert e.python == f"{type(exc).__name__}: {exc}", e.name


def test_windows_python_text_uses_the_same_exception_class_and_the_winsock_code():
    for e in winsock.ALL:
        if e.python_windows is None:
            continue
        assert f"[WinError {e.code}]" in e.python_windows or f"[Errno {e.code}]" in e.python_windows, e.name
        assert e.python_windows.split(":")[0] == e.python.split(":")[0], e.name


def test_dotnet_and_windows_python_quote_the_same_system_message():
    # Both print FormatMessage's text for the code; .NET ends it with a period, Python does not.
    for e in winsock.ALL:
        if e.dotnet is None or "WinError" not in (e.python_windows or ""):
            continue
        system_text = e.python_windows.split("] ", 1)[1]
        assert e.dotnet.endswith(system_text + "."), e.name
        if e.dotnet.startswith("System.Net.Sockets.SocketException"):
            assert f"({e.code})" in e.dotnet, e.name


def test_dotnet_enum_names_the_well_known_cases():
    assert winsock.lookup(10054).dotnet_name == "ConnectionReset"
    assert winsock.lookup(10061).dotnet_name == "ConnectionRefused"
    assert winsock.lookup(10058).dotnet_name == "Shutdown"
    assert winsock.lookup(10059).dotnet_name is None


def test_user_facing_strings_for_the_classic_failures():
    reset, refused, timeout = winsock.lookup(10054), winsock.lookup(10061), winsock.lookup(10060)
    assert "An existing connection was forcibly closed by the remote host." in reset.dotnet
    assert reset.java == "java.net.SocketException: Connection reset"
    assert reset.curl.startswith("curl: (56) Recv failure:")
    assert refused.java == "java.net.ConnectException: Connection refused"
    assert refused.curl.startswith("curl: (7) Failed to connect")
    assert timeout.curl.startswith("curl: (28)")
    for e in winsock.ALL:
        if e.curl:
            assert re.match(r"curl: \(\d+\) ", e.curl), e.name


def test_local_only_errors_say_what_to_record_instead():
    local = {e.name for e in winsock.ALL if e.local_only}
    assert {"WSAECONNABORTED", "WSAESHUTDOWN", "WSAENOTSOCK", "WSAEWOULDBLOCK"} <= local
    assert "WSAECONNRESET" not in local and "WSAECONNREFUSED" not in local
    for e in winsock.ALL:
        assert bool(e.capture_instead) == e.local_only, e.name


# --- seen(): the JSON contract ---------------------------------------------------------------

def _contract_error_example() -> dict:
    doc = json.loads(CONTRACT.read_text(encoding="utf-8"))
    return next(e for c in doc["captures"] for f in c["findings"] for e in f["errors"])


def _shape(value):
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    return type(value).__name__


def test_seen_builds_the_contract_record():
    record = winsock.seen("client", "192.0.2.33:49732", "recv", "WSAECONNRESET")
    doc = json.loads(json.dumps(dataclasses.asdict(record)))
    assert doc["winsock"] == {"code": 10054, "name": "WSAECONNRESET", "message": "Connection reset by peer."}
    assert doc["posix"] == {"name": "ECONNRESET", "linux": 104, "macos": 54}
    assert doc["seen_as"]["java"] == "java.net.SocketException: Connection reset"
    assert doc["note"] == ""


def test_seen_has_every_field_of_the_json_contract_with_the_same_types():
    example = _contract_error_example()
    record = dataclasses.asdict(winsock.seen("client", "192.0.2.33:49732", "recv", example["winsock"]["name"]))
    want, got = _shape(example), _shape(record)
    for key, kind in want.items():
        if isinstance(kind, dict):
            assert {k: got[key][k] for k in kind} == kind, key
        else:
            assert got[key] == kind, key
    assert record["winsock"]["code"] == example["winsock"]["code"]
    assert record["posix"] == example["posix"]


def test_seen_of_a_local_error_carries_the_note():
    record = winsock.seen("server", "[2001:db8::1]:443", "send", "ESHUTDOWN")
    assert record.winsock.code == 10058
    assert "cannot show it" in record.note and winsock.lookup(10058).capture_instead in record.note


def test_seen_of_an_unknown_error_is_a_usage_error():
    with pytest.raises(UsageError):
        winsock.seen("client", "192.0.2.1:1", "recv", "WSAENOPE")


# --- ICMP ------------------------------------------------------------------------------------

@pytest.mark.parametrize("family,type_,code,name", [
    (4, 3, 3, "port unreachable"),
    (4, 3, 13, "communication administratively prohibited"),
    (4, 11, 0, "time to live exceeded in transit"),
    (6, 1, 4, "port unreachable"),
    (6, 1, 1, "communication with destination administratively prohibited"),
    (6, 2, 0, "packet too big"),
])
def test_icmp_names(family, type_, code, name):
    assert winsock.icmp_name(family, type_, code) == name


def test_icmp_name_of_unknown_codes_still_reads():
    assert winsock.icmp_name(4, 3, 200) == "destination unreachable (code 200)"
    assert winsock.icmp_name(6, 250, 0) == "ICMPv6 type 250 code 0"


@pytest.mark.parametrize("family,type_,code,transport,os_,phase,want", [
    # ICMP port unreachable answering UDP
    (4, 3, 3, "udp", "windows", "connect", "WSAECONNRESET"),
    (6, 1, 4, "udp", "windows", "connect", "WSAECONNRESET"),
    (4, 3, 3, "udp", "linux", "connect", "ECONNREFUSED"),
    (6, 1, 4, "udp", "linux", "connect", "ECONNREFUSED"),
    # net / host unreachable answering a SYN
    (4, 3, 0, "tcp", "windows", "connect", "WSAENETUNREACH"),
    (4, 3, 1, "tcp", "windows", "connect", "WSAEHOSTUNREACH"),
    (4, 3, 0, "tcp", "linux", "connect", "ENETUNREACH"),
    (4, 3, 1, "tcp", "linux", "connect", "EHOSTUNREACH"),
    # administratively prohibited (Linux icmp_err_convert: 9 net, 10 and 13 host)
    (4, 3, 9, "tcp", "linux", "connect", "ENETUNREACH"),
    (4, 3, 10, "tcp", "linux", "connect", "EHOSTUNREACH"),
    (4, 3, 13, "tcp", "linux", "connect", "EHOSTUNREACH"),
    (4, 3, 13, "udp", "linux", "connect", "EHOSTUNREACH"),
    # net/host unreachable are soft errors for a Linux UDP socket
    (4, 3, 0, "udp", "linux", "connect", None),
    (4, 3, 1, "udp", "linux", "connect", None),
    # time exceeded
    (4, 11, 0, "udp", "windows", "connect", "WSAENETRESET"),
    (6, 3, 0, "udp", "windows", "connect", "WSAENETRESET"),
    (4, 11, 0, "udp", "linux", "connect", None),
    (4, 11, 0, "tcp", "linux", "connect", "EHOSTUNREACH"),
    # fragmentation needed / packet too big: path MTU for TCP, EMSGSIZE for UDP on Linux
    (4, 3, 4, "tcp", "linux", "connect", None),
    (4, 3, 4, "tcp", "windows", "connect", None),
    (4, 3, 4, "udp", "linux", "connect", "EMSGSIZE"),
    (6, 2, 0, "udp", "linux", "connect", "EMSGSIZE"),
    (6, 2, 0, "tcp", "linux", "connect", None),
    # an established TCP connection does not end on ICMP
    (4, 3, 1, "tcp", "linux", "established", None),
    (4, 3, 1, "tcp", "windows", "established", None),
    # parameter problem, source quench
    (4, 12, 0, "tcp", "linux", "connect", "EPROTO"),
    (4, 4, 0, "tcp", "linux", "connect", None),
])
def test_icmp_error(family, type_, code, transport, os_, phase, want):
    assert winsock.icmp_error(family, type_, code, transport, os_, phase) == want


def test_icmpv6_destination_unreachable_codes_on_linux():
    # net/ipv6/icmp.c tab_unreach: TCP takes every one while connecting, UDP only the fatal ones.
    connect = [winsock.icmp_error(6, 1, c, "tcp", "linux") for c in range(7)]
    assert connect == ["ENETUNREACH", "EACCES", "EHOSTUNREACH", "EHOSTUNREACH", "ECONNREFUSED", "EACCES", "EACCES"]
    udp = [winsock.icmp_error(6, 1, c, "udp", "linux") for c in range(7)]
    assert udp == [None, "EACCES", None, None, "ECONNREFUSED", "EACCES", "EACCES"]
    assert winsock.icmp_error(6, 1, 9, "tcp", "linux") == "EPROTO"


def test_every_error_icmp_error_names_is_in_the_catalogue_except_linux_only_ones():
    names = set()
    for family, types in ((4, (3, 4, 5, 11, 12)), (6, (1, 2, 3, 4))):
        for t in types:
            for c in range(17):
                for transport in ("tcp", "udp"):
                    for os_ in ("windows", "linux"):
                        names.add(winsock.icmp_error(family, t, c, transport, os_))
    names.discard(None)
    unknown = set()
    for n in names:
        try:
            winsock.lookup(n)
        except UsageError:
            unknown.add(n)
    assert unknown == {"EPROTO", "ENONET"}


@pytest.mark.parametrize("args", [(5, 3, 3, "udp", "linux"), (4, 3, 3, "sctp", "linux"), (4, 3, 3, "udp", "bsd")])
def test_icmp_error_rejects_unknown_arguments(args):
    with pytest.raises(UsageError):
        winsock.icmp_error(*args)


# --- the Linux rows against this machine's kernel ---------------------------------------------
# A client namespace routes through a router namespace whose routes answer with ICMP errors:
# no route (net unreachable, code 0), an `unreachable` route (host unreachable, code 1), a
# `prohibit` route (code 13), a closed UDP port on the router (port unreachable, code 3).
# Only addresses inside these two namespaces are used (RFC 5737 documentation prefixes).

_PROBE = r"""
import errno, socket, sys
kind, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    if kind == "tcp":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(3)
        s.connect((addr, port))
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1)
        s.connect((addr, port))
        s.send(b"x")
        s.recv(10)
    print("OK")
except socket.timeout:
    print("TIMEOUT")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
"""


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20)


@pytest.fixture(scope="module")
def router_lab():
    if not ON_LINUX or shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2 on Linux")
    tag = uuid.uuid4().hex[:6]
    client, router = f"wsk-c-{tag}", f"wsk-r-{tag}"
    setup = [
        ("ip", "netns", "add", client),
        ("ip", "netns", "add", router),
        ("ip", "link", "add", f"wc{tag}", "netns", client, "type", "veth", "peer", "name", f"wr{tag}", "netns", router),
        ("ip", "-n", client, "addr", "add", "192.0.2.1/24", "dev", f"wc{tag}"),
        ("ip", "-n", router, "addr", "add", "192.0.2.2/24", "dev", f"wr{tag}"),
        ("ip", "-n", client, "link", "set", f"wc{tag}", "up"),
        ("ip", "-n", router, "link", "set", f"wr{tag}", "up"),
        ("ip", "-n", client, "link", "set", "lo", "up"),
        ("ip", "-n", router, "link", "set", "lo", "up"),
        ("ip", "-n", client, "route", "add", "default", "via", "192.0.2.2"),
        ("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"),
        # Linux sends at most about one ICMP error a second to a host (icmp_ratelimit): off here.
        ("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"),
        ("ip", "-n", router, "route", "add", "unreachable", "198.51.100.1/32"),
        ("ip", "-n", router, "route", "add", "prohibit", "198.51.100.13/32"),
    ]
    try:
        for cmd in setup:
            if _run(*cmd).returncode != 0:
                pytest.skip(f"cannot build the namespace lab: {' '.join(cmd)}")
        yield client
    finally:
        _run("ip", "netns", "del", client)
        _run("ip", "netns", "del", router)


@pytest.mark.parametrize("transport,addr,port,icmp_code", [
    ("tcp", "203.0.113.5", 80, 0),  # the router has no route: net unreachable
    ("tcp", "198.51.100.1", 80, 1),  # `unreachable` route: host unreachable
    ("tcp", "198.51.100.13", 80, 13),  # `prohibit` route: administratively prohibited
    ("udp", "198.51.100.13", 53, 13),
    ("udp", "192.0.2.2", 9, 3),  # nothing listens on the router's UDP port 9: port unreachable
    ("udp", "198.51.100.1", 53, 1),  # a soft error: the connected UDP socket sees nothing
    ("udp", "203.0.113.5", 53, 0),
])
def test_linux_kernel_agrees_with_the_table(router_lab, transport, addr, port, icmp_code):
    out = _run("ip", "netns", "exec", router_lab, sys.executable, "-c", _PROBE, transport, addr, str(port))
    seen_here = out.stdout.strip()
    want = winsock.icmp_error(4, 3, icmp_code, transport, "linux")
    assert seen_here == (want or "TIMEOUT"), out.stderr


def test_udp_port_unreachable_is_told_per_platform_on_a_real_capture():
    # Windows: 10054 on the next recvfrom; Linux/macOS: ECONNREFUSED on a connected socket only,
    # in the words a datagram socket's runtimes use (no curl, Java's PortUnreachableException).
    from pathlib import Path

    from analyzer.pipeline import analyze_capture
    from analyzer.rules import load_rules

    sample = Path(__file__).resolve().parents[1] / "samples" / "udp001-port-unreachable.pcap"
    (finding,) = analyze_capture(sample, load_rules()).findings
    (err,) = finding.errors
    assert (err.winsock.code, err.winsock.name) == (10054, "WSAECONNRESET")
    assert (err.posix.name, err.posix.linux, err.posix.macos) == ("ECONNREFUSED", 111, 61)
    assert err.seen_as.python.startswith("ConnectionRefusedError")
    assert err.seen_as.python_windows.startswith("ConnectionResetError")
    assert err.seen_as.curl is None and "PortUnreachableException" in err.seen_as.java
    assert "connected" in err.note


def _only_error(sample_name: str):
    from pathlib import Path

    from analyzer.pipeline import analyze_capture
    from analyzer.rules import load_rules

    sample = Path(__file__).resolve().parents[1] / "samples" / sample_name
    (finding,) = analyze_capture(sample, load_rules()).findings
    return finding


def test_udp_time_exceeded_is_told_on_windows_only_on_a_real_capture():
    # Windows: 10052 on the next recvfrom (.NET's SocketException: a UDP socket has no stream);
    # Linux/macOS: a soft error only, so no errno and no Linux runtime's text is claimed.
    (err,) = _only_error("udp002-ttl-expired.pcap").errors
    assert (err.winsock.code, err.winsock.name) == (10052, "WSAENETRESET")
    assert (err.posix.name, err.posix.linux, err.posix.macos) == (None, None, None)
    assert err.seen_as.python is None and err.seen_as.java is None and err.seen_as.curl is None
    assert err.seen_as.dotnet.startswith("System.Net.Sockets.SocketException (10052)")
    assert err.seen_as.python_windows.startswith("OSError: [WinError 10052]")


def test_udp_host_unreachable_claims_no_socket_error_on_a_real_capture():
    # ICMP host unreachable on UDP: Windows does not surface it, Linux keeps it a soft error: the
    # application only times out, so the finding names no error any socket returned.
    finding = _only_error("udp003-host-unreachable.pcap")
    assert finding.rule == "UDP003" and finding.errors == ()


def test_udp_admin_prohibited_is_told_on_linux_only_on_a_real_capture():
    # ICMPv6 administratively prohibited: a connected Linux UDP socket gets EACCES; Windows nothing.
    (err,) = _only_error("udp003-admin-prohibited-ipv6.pcap").errors
    assert (err.posix.name, err.posix.linux) == ("EACCES", 13)
    assert err.seen_as.python.startswith("PermissionError")
    assert err.seen_as.dotnet is None and err.seen_as.python_windows is None and err.seen_as.curl is None


def test_a_timeout_on_an_established_connection_is_not_told_as_a_failed_connect():
    # TMO001 on a real capture: the read timed out after the retransmissions ran out; Java and curl
    # say so as a read failure, not as connect()'s ConnectException / "Failed to connect".
    (err,) = [e for e in _only_error("tmo001-data-blackhole.pcap").errors if e.winsock.name == "WSAETIMEDOUT"]
    assert err.operation == "recv"
    assert err.seen_as.java == "java.net.SocketException: Connection timed out"
    assert err.seen_as.curl.startswith("curl: (56) Recv failure")
    refused = winsock.seen("client", "192.0.2.10:40000", "connect", "WSAETIMEDOUT")
    assert "ConnectException" in refused.seen_as.java and "Failed to connect" in refused.seen_as.curl


# --- shared records --------------------------------------------------------------------------

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def test_errors_share_one_record_per_code_across_findings_and_a_pickle():
    """Thousands of findings hold a handful of WinsockCode / PosixErrno / SeenAs records, not three
    each (memory, and a --jobs worker's pickle); a pickled result reads back equal and still shared."""
    import pickle

    from analyzer.pipeline import analyze_capture
    from analyzer.rules import load_rules

    rules = load_rules()
    findings = [f for path in sorted(SAMPLES.glob("*.pcap")) for f in analyze_capture(path, rules).findings]
    errors = [e for f in findings for e in f.errors]
    assert len(errors) > 40  # the samples fire rules with errors on both sides
    for part in ("winsock", "posix", "seen_as"):
        records = [getattr(e, part) for e in errors]
        distinct = len(set(records))
        assert distinct < len(records) / 2
        assert len({id(r) for r in records}) == distinct, f"{part}: equal records are separate objects"
    back = pickle.loads(pickle.dumps(findings, protocol=pickle.HIGHEST_PROTOCOL))
    assert back == findings
    assert len({id(e.winsock) for f in back for e in f.errors}) == len({e.winsock for e in errors})
