"""A node's TLS certificate: made once, kept beside its state, pinned by its fingerprint on chain.

The certificate is self-signed: no certificate authority vouches for it. What tells a client it
reached the right node is the SHA-256 fingerprint that the member itself recorded in the
Consortium contract from its own account (`Consortium.set_certificate`). We pin that rather
than check an endorsement signed with the member's key: the chain is already the one root every
member trusts, a member replaces a lost or stolen TLS key with one transaction that every client
sees at once (an endorsement would stay valid until the Ethereum key itself was retired), and an
auditor can see on chain which certificate a member vouched for and when.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fedledger.errors import ConfigError

CERT_FILE = "tls.cert.pem"
KEY_FILE = "tls.key.pem"       # mode 0600: the node's TLS private key, never in the consortium directory
VALID_DAYS = 3650              # pinning, not expiry, decides trust; a replaced key is replaced on chain


@dataclass(frozen=True)
class NodeCertificate:
    cert: Path
    key: Path
    fingerprint: str           # hex SHA-256 of the DER certificate, as recorded on chain


def fingerprint_of(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def node_certificate(state_dir: Path, name: str) -> NodeCertificate:
    """The node's certificate in `state_dir`, made (EC P-256, self-signed) on first use."""
    cert_path, key_path = state_dir / CERT_FILE, state_dir / KEY_FILE
    if not cert_path.exists():
        _create(cert_path, key_path, name)
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the node certificate {cert_path}: {exc}") from None
    if key_path.stat().st_mode & 0o077:
        raise ConfigError(f"{key_path} is readable by others: chmod 600 it (it is the node's TLS private key)")
    return NodeCertificate(cert_path, key_path, fingerprint_of(cert.public_bytes(serialization.Encoding.DER)))


def _create(cert_path: Path, key_path: Path, name: str) -> None:
    cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"fedledger node {name}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .sign(key, hashes.SHA256()))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    # written last: a crash in between leaves no certificate, and the next start finds the key and stops
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def server_context(certificate: NodeCertificate) -> ssl.SSLContext:
    """TLS 1.2 or later, the node's certificate; clients authenticate by signed requests, not certificates."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate.cert, certificate.key)
    return context


def client_context() -> ssl.SSLContext:
    """TLS 1.2 or later, trusting no certificate authority: the caller pins the node's certificate
    (urllib3's assert_fingerprint) to the fingerprint its member recorded on chain. Made once per
    client: a context urllib3 makes itself loads the system's CA bundle for every connection, which
    cost a coordinator most of its round."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False      # the pin names the node, not its host name
    context.verify_mode = ssl.CERT_NONE
    return context
