"""TLS certificates of a live endpoint or a PEM file: days to expiry, chain and host name.

Reading a certificate to measure its expiry trusts nothing: an endpoint's
leaf is read with an unverified handshake (an expired certificate must still
be measurable). Verifying is separate and never relaxed:

- a live endpoint: a full TLS handshake with verification on, against the
  target's CA file or the system store, for the expected host name (OpenSSL
  checks chain, validity dates and name);
- a PEM file (leaf first, then intermediates): ``cryptography``'s X.509
  path validation against the CA file or system store, for the host name,
  with the web PKI's rules except two that OpenSSL does not enforce either:
  a leaf's subjectAltName and extendedKeyUsage may be marked critical
  (private CAs, trustme among them, do so). The name must still match the
  subjectAltName, and an extendedKeyUsage must still allow TLS servers.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from .errors import TargetUnreachable, UnusableAnswer
from .verdict import Verdict

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class CertSource:
    """Where certificates come from: ``host:port`` (with SNI ``server_name``) or a PEM file."""

    label: str
    host: str | None = None
    port: int = 443
    server_name: str | None = None
    pem_file: Path | None = None
    ca_file: Path | None = None

    @property
    def expected_hostname(self) -> str | None:
        return self.server_name or self.host

    def describe(self) -> str:
        if self.pem_file is not None:
            return f"`{self.label}` ({self.pem_file})"
        return f"`{self.label}` ({self.host}:{self.port})"


def load_pem_chain(path: Path, *, label: str) -> list[x509.Certificate]:
    """Every certificate of a PEM file, leaf first; :class:`UnusableAnswer` when there is none."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TargetUnreachable(f"`{label}`: cannot read PEM file {path}: {exc.strerror}",
                                target=label, hint="check the target's `pem_file` path") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise UnusableAnswer(f"`{label}`: {path} holds no PEM certificate: {exc}", target=label,
                             hint="`pem_file` must be PEM text beginning with -----BEGIN CERTIFICATE-----"
                             ) from None
    return certs


def fetch_leaf(host: str, port: int, *, server_name: str | None, label: str) -> x509.Certificate:
    """The certificate a live endpoint presents, read without trusting it (expired ones too)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # reading only: verify_endpoint() does the trusting
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S) as raw, \
                context.wrap_socket(raw, server_hostname=server_name or host) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise TargetUnreachable(f"`{label}` ({host}:{port}) gives no TLS certificate: {exc}",
                                target=label, hint="check the target's `host` and `port`") from None
    if not der:
        raise UnusableAnswer(f"`{label}` ({host}:{port}) presented no certificate", target=label)
    return x509.load_der_x509_certificate(der)


def leaf_of(source: CertSource) -> x509.Certificate:
    if source.pem_file is not None:
        return load_pem_chain(source.pem_file, label=source.label)[0]
    if source.host is None:
        raise UnusableAnswer(f"`{source.label}` names neither a host nor a PEM file", target=source.label,
                             hint="give the tls target `host` (and `port`) or `pem_file`")
    return fetch_leaf(source.host, source.port, server_name=source.server_name, label=source.label)


def describe_cert(cert: x509.Certificate) -> dict[str, object]:
    """Subject, issuer, names, validity and fingerprint: what an auditor needs to find the certificate."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [str(n.value) for n in names]
    except x509.ExtensionNotFound:
        sans = []
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "subject_alt_names": sans,
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "serial": format(cert.serial_number, "x"),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
    }


def days_to_expiry(cert: x509.Certificate, *, now: datetime, min_days: int, where: str) -> Verdict:
    """The certificate stays valid for at least ``min_days`` more days (Sovra: 30)."""
    remaining = cert.not_valid_after_utc - now
    days = remaining.total_seconds() / 86400
    evidence = {"source": where, "certificate": describe_cert(cert), "days_left": round(days, 2)}
    if days < 0:
        message = (f"{where}: the certificate expired {-days:.1f} days ago "
                   f"({cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)")
    else:
        message = (f"{where}: the certificate expires in {days:.1f} days "
                   f"({cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC), expected at least {min_days}")
    return Verdict.compare("tls.expiry", measured=round(days, 2), expected=f">= {min_days} days",
                           ok=days >= min_days, message=message, evidence=evidence)


def system_ca_file() -> Path | None:
    """The system's CA bundle, as OpenSSL finds it."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def verify_endpoint(source: CertSource, *, hostname: str) -> Verdict:
    """A verified handshake with the endpoint for ``hostname``: chain, dates and name all hold."""
    assert source.host is not None
    where = source.describe()
    try:
        context = ssl.create_default_context(cafile=str(source.ca_file) if source.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        return Verdict.error("tls.chain", f"{where}: cannot load the CA file {source.ca_file}: {exc}",
                             evidence={"source": where})
    trust = str(source.ca_file) if source.ca_file else "the system store"
    evidence: dict[str, object] = {"source": where, "hostname": hostname, "trusted": trust}
    try:
        with socket.create_connection((source.host, source.port), timeout=TIMEOUT_S) as raw, \
                context.wrap_socket(raw, server_hostname=hostname) as tls:
            der = tls.getpeercert(binary_form=True)
            evidence["tls_version"] = tls.version()
    except ssl.SSLCertVerificationError as exc:
        return Verdict.failed(
            "tls.chain", f"{where}: the certificate does not verify for {hostname} against {trust}: "
            f"{exc.verify_message}", measured=exc.verify_message, expected="verifies", evidence=evidence,
        )
    except (OSError, ssl.SSLError) as exc:
        return Verdict.error("tls.chain", f"{where}: no TLS handshake: {exc}", evidence=evidence)
    if der:
        evidence["certificate"] = describe_cert(x509.load_der_x509_certificate(der))
    return Verdict.passed("tls.chain", f"{where}: the chain verifies for {hostname} against {trust}",
                          measured="verifies", expected="verifies", evidence=evidence)


def verify_pem(source: CertSource, *, hostname: str, now: datetime) -> Verdict:
    """X.509 path validation of a PEM chain (leaf first) for ``hostname`` at ``now``."""
    assert source.pem_file is not None
    where = source.describe()
    chain = load_pem_chain(source.pem_file, label=source.label)
    roots_file = source.ca_file or system_ca_file()
    if roots_file is None:
        return Verdict.error("tls.chain", f"{where}: no CA file given and no system CA bundle found",
                             evidence={"source": where})
    roots = load_pem_chain(roots_file, label=source.label)
    trust = str(source.ca_file) if source.ca_file else f"the system store ({roots_file})"
    evidence: dict[str, object] = {"source": where, "hostname": hostname, "trusted": trust,
                                   "certificate": describe_cert(chain[0]), "chain_length": len(chain)}
    try:
        subject: verification.Subject = _subject(hostname)
        verifier = (verification.PolicyBuilder().store(verification.Store(roots))
                    .time(now.astimezone(UTC).replace(tzinfo=None))
                    .extension_policies(ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                                        ee_policy=_leaf_policy())
                    .build_server_verifier(subject))
        verifier.verify(chain[0], chain[1:])
    except verification.VerificationError as exc:
        return Verdict.failed("tls.chain", f"{where}: the certificate does not verify for {hostname} "
                              f"against {trust}: {exc}", measured=str(exc), expected="verifies",
                              evidence=evidence)
    except ValueError as exc:
        return Verdict.error("tls.chain", f"{where}: {hostname!r} is not a host name: {exc}",
                             evidence=evidence)
    return Verdict.passed("tls.chain", f"{where}: the chain verifies for {hostname} against {trust}",
                          measured="verifies", expected="verifies", evidence=evidence)


def _leaf_policy() -> verification.ExtensionPolicy:
    """Web PKI leaf rules, with subjectAltName and extendedKeyUsage allowed to be critical."""

    def server_auth(policy: object, cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
        if eku is not None and ExtendedKeyUsageOID.SERVER_AUTH not in eku:
            raise ValueError("the extendedKeyUsage does not allow TLS server authentication")

    return (verification.ExtensionPolicy.webpki_defaults_ee()
            .require_present(x509.SubjectAlternativeName, verification.Criticality.AGNOSTIC, None)
            .may_be_present(x509.ExtendedKeyUsage, verification.Criticality.AGNOSTIC, server_auth))


def _subject(hostname: str) -> verification.Subject:
    import ipaddress

    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)


def chain_verifies(source: CertSource, *, now: datetime) -> Verdict:
    """The certificate chains to a trusted root and names the expected host (SNI name, else host)."""
    hostname = source.expected_hostname
    if not hostname:
        return Verdict.error(
            "tls.chain", f"{source.describe()}: no host name to verify the certificate for",
            evidence={"source": source.describe(),
                      "hint": "give the tls target `server_name` (or `host`) in drillbook.toml"},
        )
    if source.pem_file is not None:
        return verify_pem(source, hostname=hostname, now=now)
    return verify_endpoint(source, hostname=hostname)
