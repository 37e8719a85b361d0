"""Findings on real third-party captures: the failures issue 3 names are found, the healthy controls stay quiet."""

from __future__ import annotations

import functools

import pytest

from analyzer.pipeline import analyze_capture
from analyzer.rules import load_rules
from tests.corpus import corpus_file, needs_corpus

# capture -> (rule that must fire, side whose error is checked, the Winsock name it saw)
FAILURES = {
    "zeek/traces/pop3/pop3.pcap": ("CON001", "client", "WSAECONNREFUSED"),
    "zeek/traces/tcp/rst-inject-rae.pcap": ("RST009", "client", "WSAECONNRESET"),
    # TLS sent to a plain-HTTP port: the server answers in plain text and closes with a FIN, so the
    # client's TLS library fails on the reply; no RST reached the client, so no socket error is claimed.
    "zeek/traces/tls/https-to-http.pcap": ("TLS001", "client", None),
    # AFS datagrams go both ways (file server call-backs to the client's port too): the error
    # belongs to whichever side sent the datagram that drew the ICMP, so no side is pinned here.
    "tcpdump/afs.pcap": ("UDP001", None, "WSAECONNRESET"),
    "arkime/wireshark-smb-on-windows10.pcap": ("RST010", "server", "WSAECONNRESET"),
}
HEALTHY = [
    "zeek/traces/wikipedia.pcap",
    "zeek/traces/ftp/ipv4.pcap",
    "arkime/tds7.pcap",  # TDS logins
    "zeek/traces/ssh/ssh.server-side-half-duplex.pcap",  # half-duplex captures of SSH sessions
    "zeek/traces/mysql/tls-12-amazon-rds.pcap",  # a TLS 1.2 session that ends in order
    "zeek/traces/http/get.pcap",
]


@functools.cache
def _rules():
    return load_rules()


def _result(rel: str):
    result = analyze_capture(corpus_file(rel), _rules())
    assert result.error is None, result.error
    return result


@needs_corpus
@pytest.mark.parametrize("rel", sorted(FAILURES))
def test_known_failure_is_found_with_its_socket_error(rel):
    rule, side, winsock = FAILURES[rel]
    findings = [f for f in _result(rel).findings if f.rule == rule]
    assert findings, f"{rule} did not fire on {rel}"
    for finding in findings:
        seen = {(e.side, e.winsock.name) for e in finding.errors}
        if winsock is None:
            assert not [s for s, _ in seen if s == side], f"{rule} on {rel}: errors {seen}"
        else:
            assert any(w == winsock and side in (None, s) for s, w in seen), f"{rule} on {rel}: errors {seen}"
        assert finding.frames and finding.wireshark_filter


@needs_corpus
def test_refused_pop3_connections_are_each_reported():
    refused = [f for f in _result("zeek/traces/pop3/pop3.pcap").findings if f.rule == "CON001"]
    # Two connect() calls, each SYN sent three times with the same ISN and refused each time: Zeek
    # logs six REJ connections, Wireshark two tcp.streams; one finding per connect(), as Wireshark.
    assert len(refused) == 2


@needs_corpus
def test_windows_smb_resets_are_told_apart_as_harmless():
    findings = _result("arkime/wireshark-smb-on-windows10.pcap").findings
    assert len([f for f in findings if f.rule == "RST010"]) == 5
    assert all(f.level == "info" for f in findings)


@needs_corpus
def test_forged_reset_is_not_also_reported_as_a_refusal():
    rules = {f.rule for f in _result("zeek/traces/tcp/rst-inject-rae.pcap").findings}
    assert rules == {"RST009"}


@needs_corpus
@pytest.mark.parametrize("rel", HEALTHY)
def test_healthy_control_has_no_error_or_warning(rel):
    result = _result(rel)
    assert result.conversation_count > 0
    loud = [(f.rule, f.conversation) for f in result.findings if f.level in ("error", "warning")]
    assert loud == []
