"""TLS alerts: what each description means and how the common TLS stacks report receiving one.

One row per alert description (RFC 8446 section 6, RFC 5246 section 7.2, RFC 7301 for
no_application_protocol). The receiving application's error text is built from each stack's own
pattern, written once below:
- OpenSSL 1.1/3.x reason strings (ssl/ssl_err.c: "sslv3 alert ..." for the SSLv3-era codes,
  "tlsv1 alert ..." and "tlsv13 alert ..." for later ones), which Python's ssl module and curl
  built on OpenSSL repeat;
- Java (JSSE): "Received fatal alert: NAME" (sun.security.ssl.Alert);
- .NET 7 and later on SslStream: "Authentication failed because the remote party sent a TLS
  alert: 'Name'." (TlsAlertMessage names); earlier versions say only "A call to SSPI failed".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

LEVEL_WARNING: Final = 1
LEVEL_FATAL: Final = 2
LEVEL_NAMES: Final[dict[int, str]] = {LEVEL_WARNING: "warning", LEVEL_FATAL: "fatal"}

CLOSE_NOTIFY: Final = 0  # the orderly end of a TLS session: never a failure
USER_CANCELED: Final = 90  # the sender gave up the handshake on purpose (warning level)
OPENSSL_SSL_LIB: Final = 20 << 23  # ERR_LIB_SSL in OpenSSL 3's packed error codes (include/openssl/err.h)
OPENSSL_ALERT_REASON: Final = 1000  # SSL_AD_REASON_OFFSET: an alert's reason code is 1000 + its description


@dataclass(frozen=True, slots=True)
class AlertKind:
    """One TLS alert description."""

    code: int
    name: str  # the RFC name, as Java prints it
    openssl: str  # OpenSSL's reason string for receiving it
    meaning: str  # what the sender is saying, for a support engineer


# (code, name, OpenSSL reason, meaning)
ALERTS: Final[tuple[AlertKind, ...]] = tuple(
    AlertKind(*row)
    for row in (
        (0, "close_notify", "", "the sender is closing the TLS session in an orderly way"),
        (10, "unexpected_message", "sslv3 alert unexpected message", "a message arrived out of place"),
        (20, "bad_record_mac", "sslv3 alert bad record mac", "a record failed its integrity check"),
        (22, "record_overflow", "tlsv1 alert record overflow", "a record was too long"),
        (
            40,
            "handshake_failure",
            "sslv3 alert handshake failure",
            "no acceptable set of parameters: no common cipher suite, group or signature algorithm",
        ),
        (42, "bad_certificate", "sslv3 alert bad certificate", "a certificate was corrupt or failed a check"),
        (43, "unsupported_certificate", "sslv3 alert unsupported certificate", "a certificate of an unsupported type"),
        (44, "certificate_revoked", "sslv3 alert certificate revoked", "a certificate was revoked by its issuer"),
        (45, "certificate_expired", "sslv3 alert certificate expired", "a certificate has expired or is not yet valid"),
        (
            46,
            "certificate_unknown",
            "sslv3 alert certificate unknown",
            "a certificate was not accepted for another reason",
        ),
        (47, "illegal_parameter", "sslv3 alert illegal parameter", "a handshake field was out of range"),
        (48, "unknown_ca", "tlsv1 alert unknown ca", "the certificate chain does not lead to a trusted CA"),
        (49, "access_denied", "tlsv1 alert access denied", "a valid certificate, but access was denied"),
        (50, "decode_error", "tlsv1 alert decode error", "a message could not be decoded"),
        (51, "decrypt_error", "tlsv1 alert decrypt error", "a signature or Finished check failed"),
        (70, "protocol_version", "tlsv1 alert protocol version", "the peer offered no TLS version the sender accepts"),
        (
            71,
            "insufficient_security",
            "tlsv1 alert insufficient security",
            "the offered cipher suites are all weaker than the sender requires",
        ),
        (80, "internal_error", "tlsv1 alert internal error", "the sender failed for a reason of its own"),
        (
            86,
            "inappropriate_fallback",
            "tlsv1 alert inappropriate fallback",
            "a client retried with a lower version than both support",
        ),
        (90, "user_canceled", "", "the sender gave the handshake up on purpose"),
        (109, "missing_extension", "tlsv13 alert missing extension", "a required extension was not sent"),
        (110, "unsupported_extension", "tlsv1 alert unsupported extension", "an extension was not offered first"),
        (112, "unrecognized_name", "tlsv1 unrecognized name", "the server knows no host by the SNI name sent"),
        (
            113,
            "bad_certificate_status_response",
            "tlsv1 bad certificate status response",
            "an OCSP response was invalid",
        ),
        (115, "unknown_psk_identity", "tlsv1 alert unknown psk identity", "no PSK for the identity offered"),
        (
            116,
            "certificate_required",
            "tlsv13 alert certificate required",
            "the server requires a client certificate and none was sent",
        ),
        (
            120,
            "no_application_protocol",
            "tlsv1 alert no application protocol",
            "no ALPN protocol in common (e.g. h2 only against http/1.1)",
        ),
    )
)
BY_CODE: Final[dict[int, AlertKind]] = {a.code: a for a in ALERTS}
BY_NAME: Final[dict[str, AlertKind]] = {a.name: a for a in ALERTS}


# The TLS stacks whose text a report shows for a received alert: seen_as() key, label.
TLS_STACKS: Final[tuple[tuple[str, str], ...]] = (
    ("openssl", "OpenSSL"),
    ("python", "Python"),
    ("curl", "curl"),
    ("java", "Java"),
    ("dotnet", ".NET"),
)


def alert_kind(code: int) -> AlertKind:
    """The table row for a description code; an unknown code gets a row naming its number."""
    return BY_CODE.get(code) or AlertKind(
        code, f"alert_{code}", f"tlsv1 alert {code}", "an alert this table does not know"
    )


def describe(level: int, code: int) -> str:
    """An alert as people read it: `fatal protocol_version (70)`."""
    return f"{LEVEL_NAMES.get(level, f'level {level}')} {alert_kind(code).name} ({code})"


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def seen_as(code: int) -> dict[str, str]:
    """What the application that RECEIVED this alert is told, per TLS stack."""
    kind = alert_kind(code)
    reason = kind.openssl or kind.name.replace("_", " ")
    # OpenSSL 3 packs the SSL library (20) and the reason (1000 + the alert code) into one number.
    error = f"error:{OPENSSL_SSL_LIB | (OPENSSL_ALERT_REASON + code):08X}:SSL routines::{reason}"
    return {
        "openssl": error,
        "python": f"ssl.SSLError: [SSL: {reason.upper().replace(' ', '_')}] {reason}",
        "curl": f"curl: (35) OpenSSL/3: {error}",
        "java": f"javax.net.ssl.SSLHandshakeException: Received fatal alert: {kind.name}",
        "dotnet": f"System.Security.Authentication.AuthenticationException: Authentication failed because the "
        f"remote party sent a TLS alert: '{_pascal(kind.name)}'.",
    }
