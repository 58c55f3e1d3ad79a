"""A self-signed certificate for ``jobtracker simulate ... --tls``, so clients that only speak https (or that
must verify what they talk to) can use a simulator: trust the written certificate file (``curl --cacert``,
``REQUESTS_CA_BUNDLE``, urllib3 ``ca_certs``) and hostname verification succeeds for 127.0.0.1 and localhost.

Built with ``cryptography`` (a dependency of moto) rather than Werkzeug's ``make_ssl_devcert``: that one
names only DNS hosts in its subjectAltName, so a client verifying ``https://127.0.0.1:PORT`` rejects it.
The extensions (key identifiers, critical key usage) are those Python 3.13's default VERIFY_X509_STRICT
asks for.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CERT_FILE", "KEY_FILE", "LOCAL_NAMES", "write_self_signed_certificate"]

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
VALID_DAYS = 30


def _subject_alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def write_self_signed_certificate(directory: Path, hosts: Sequence[str] = LOCAL_NAMES) -> tuple[Path, Path]:
    """Write ``cert.pem`` (what clients trust) and ``key.pem`` (mode 0600, only the server reads it) into
    ``directory``; the certificate is valid for every name in ``hosts``. Returns (cert path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jobtracker provider simulator")])
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))  # tolerate a client clock slightly behind
        .not_valid_after(now + timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([_subject_alt_name(h) for h in dict.fromkeys(hosts)]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(key_id, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(key_bytes)
    return cert_path, key_path
