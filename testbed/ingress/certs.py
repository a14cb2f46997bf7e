"""Certificates: checking a TLS Secret's pair before nginx sees it, and the self-signed
"Kubernetes Ingress Controller Fake Certificate" ingress-nginx serves when no Secret applies."""

from __future__ import annotations

import datetime as _dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FAKE_CERT_CN = "Kubernetes Ingress Controller Fake Certificate"


class CertError(ValueError):
    pass


def check_pair(crt: bytes, key: bytes) -> x509.Certificate:
    """The leaf certificate of ``crt`` if it parses, is currently valid and matches ``key``."""
    try:
        certs = x509.load_pem_x509_certificates(crt)
    except ValueError:
        raise CertError("tls.crt is not a PEM certificate") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise CertError("tls.key is not an unencrypted PEM private key") from None
    leaf = certs[0]
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(serialization.Encoding.PEM, pub) != \
            private.public_key().public_bytes(serialization.Encoding.PEM, pub):
        raise CertError("tls.key does not match the certificate in tls.crt")
    now = _dt.datetime.now(_dt.timezone.utc)
    if leaf.not_valid_after_utc < now:
        raise CertError(f"certificate expired on {leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")
    return leaf


def self_signed(common_name: str, hosts: list[str] | None = None, days: int = 365) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a fresh self-signed P-256 certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Co"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _dt.datetime.now(_dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=days)))
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
