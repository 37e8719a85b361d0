"""Recognise what the first bytes of a TCP payload are: TLS records, TDS messages, HTTP, SSH.

Only fixed-offset byte tests (no regular expressions): this runs for every data segment.
"""

from __future__ import annotations

from typing import Final

# TLS record content types (RFC 8446 section 5.1) and handshake types (section 4).
TLS_CHANGE_CIPHER_SPEC: Final = 20
TLS_ALERT: Final = 21
TLS_HANDSHAKE: Final = 22
TLS_APPLICATION_DATA: Final = 23
TLS_HS_CLIENT_HELLO: Final = 1
TLS_HS_SERVER_HELLO: Final = 2

# TDS packet types (MS-TDS 2.2.3.1.1): the first byte of every TDS packet header.
TDS_SQL_BATCH: Final = 0x01
TDS_RPC: Final = 0x03
TDS_TABULAR_RESULT: Final = 0x04
TDS_ATTENTION: Final = 0x06
TDS_BULK_LOAD: Final = 0x07
TDS_TRANSACTION_MANAGER: Final = 0x0E
TDS_LOGIN7: Final = 0x10
TDS_SSPI: Final = 0x11
TDS_PRELOGIN: Final = 0x12
TDS_TYPES: Final = frozenset(
    {
        TDS_SQL_BATCH,
        TDS_RPC,
        TDS_TABULAR_RESULT,
        TDS_ATTENTION,
        TDS_BULK_LOAD,
        TDS_TRANSACTION_MANAGER,
        TDS_LOGIN7,
        TDS_SSPI,
        TDS_PRELOGIN,
    }
)

# HTTP/1.x request methods (RFC 9110 section 9, plus PATCH from RFC 5789), with the space after them.
HTTP_METHODS: Final = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE ")

# First bytes that can start a payload `sniff` recognises: the hot path calls it only for these.
# SSLv2-format hellos are recognised only with a record length under 512 bytes (0x80, 0x81).
SNIFF_FIRST_BYTES: Final = frozenset(
    [TLS_CHANGE_CIPHER_SPEC, TLS_ALERT, TLS_HANDSHAKE, TLS_APPLICATION_DATA, 0x80, 0x81, *TDS_TYPES]
    + [m[0] for m in HTTP_METHODS]
    + [ord("H"), ord("S")]
)

# The kinds `sniff` returns; rules name them in `payload:` steps.
PAYLOAD_KINDS: dict[str, str] = {
    "tls-client-hello": "a TLS handshake record carrying a ClientHello (or an SSLv2-format ClientHello)",
    "tls-server-hello": "a TLS handshake record carrying a ServerHello",
    "tls-handshake": "another TLS handshake record",
    "tls-alert": "a TLS alert record",
    "tls": "another TLS record (application data, change cipher spec)",
    "tds-prelogin": "a TDS PRELOGIN message (SQL Server connection setup)",
    "tds": "another TDS message",
    "http-request": "an HTTP/1.x request line",
    "http-response": "an HTTP/1.x status line",
    "ssh": "an SSH identification string",
}


def sniff(head: bytes) -> str:
    """Name what a payload starts with, or '' when it is none of the kinds above."""
    if len(head) < 4:
        return ""
    b0 = head[0]
    if TLS_CHANGE_CIPHER_SPEC <= b0 <= TLS_APPLICATION_DATA and head[1] == 3 and head[2] <= 4:
        if b0 == TLS_HANDSHAKE:
            if len(head) > 5:
                if head[5] == TLS_HS_CLIENT_HELLO:
                    return "tls-client-hello"
                if head[5] == TLS_HS_SERVER_HELLO:
                    return "tls-server-hello"
            return "tls-handshake"
        return "tls-alert" if b0 == TLS_ALERT else "tls"
    if b0 in (0x80, 0x81) and len(head) > 3 and head[2] == TLS_HS_CLIENT_HELLO and head[3] in (2, 3):
        return "tls-client-hello"  # SSLv2-format record header (RFC 6101 appendix E.2)
    if b0 in TDS_TYPES and head[1] <= 0x1F and len(head) >= 8:
        length = (head[2] << 8) | head[3]
        if length >= 8:
            return "tds-prelogin" if b0 == TDS_PRELOGIN else "tds"
    if head.startswith(HTTP_METHODS):
        return "http-request"
    if head.startswith(b"HTTP/1."):
        return "http-response"
    if head.startswith(b"SSH-"):
        return "ssh"
    return ""


def tls_alert(payload: bytes) -> bytes:
    """The level and description bytes of a plaintext TLS alert record, or b"" when it is encrypted.

    A plaintext alert record is 5 header bytes and 2 body bytes (RFC 8446 section 6); once the
    handshake has keys, the body is encrypted and longer, and only the peer can read it.
    """
    if len(payload) >= 7 and payload[0] == TLS_ALERT and payload[3] == 0 and payload[4] == 2:
        return payload[5:7]
    return b""
