"""Key material for the API server's HTTPS listener: a CA made for the cluster, a serving
certificate for 127.0.0.1 and a client certificate for an admin user (``O=system:masters``,
as kubeadm's admin.conf), all under one directory, every file 0600.

Made once per cluster and kept: a restarted control plane serves the same CA, so a
kubeconfig written at ``up`` stays valid."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ADMIN_USER = "kubernetes-admin"
ADMIN_GROUP = "system:masters"
_VALID = datetime.timedelta(days=3650)


class Paths:
    """Where each file of the key material lives."""

    def __init__(self, directory: str):
        self.directory = directory
        j = lambda f: os.path.join(directory, f)  # noqa: E731
        self.ca_cert, self.ca_key = j("ca.crt"), j("ca.key")
        self.server_cert, self.server_key = j("apiserver.crt"), j("apiserver.key")
        self.client_cert, self.client_key = j("admin.crt"), j("admin.key")

    def all(self) -> tuple[str, ...]:
        return (self.ca_cert, self.ca_key, self.server_cert, self.server_key, self.client_cert, self.client_key)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _cert(subject: x509.Name, key, issuer: x509.Name, issuer_key, *, ca: bool = False,
          server_ips: tuple[str, ...] = (), client: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + _VALID)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                          crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
    if server_ips:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips] + [x509.DNSName("localhost")]),
            critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if client:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)  # an existing file keeps its mode on O_CREAT


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ensure(directory: str, cluster: str) -> Paths:
    """The cluster's key material in *directory* (0700), made if missing."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    p = Paths(directory)
    if all(os.path.exists(f) for f in p.all()):
        return p
    ca_key = _key()
    ca_name = _name(f"testbed-{cluster}-ca")
    ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    srv_key, adm_key = _key(), _key()
    srv = _cert(_name("kube-apiserver"), srv_key, ca_name, ca_key, server_ips=("127.0.0.1",))
    adm = _cert(_name(ADMIN_USER, ADMIN_GROUP), adm_key, ca_name, ca_key, client=True)
    pem = serialization.Encoding.PEM
    for path, data in ((p.ca_key, _pem_key(ca_key)), (p.server_key, _pem_key(srv_key)),
                       (p.client_key, _pem_key(adm_key)), (p.server_cert, srv.public_bytes(pem)),
                       (p.client_cert, adm.public_bytes(pem)), (p.ca_cert, ca.public_bytes(pem))):
        _write_private(path, data)
    return p


def server_context(p: Paths) -> ssl.SSLContext:
    """TLS for the listener: a client certificate is asked for but not required, so an
    anonymous request reaches the handler and gets the API's 401 (as kube-apiserver answers);
    a certificate from another CA fails the handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(p.server_cert, p.server_key)
    ctx.load_verify_locations(p.ca_cert)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])  # no HTTP/2: kubectl then speaks HTTP/1.1
    return ctx


def peer_user(cert: dict | None) -> tuple[str, list[str]] | None:
    """(user, groups) of a verified client certificate as ``SSLSocket.getpeercert()`` gives it."""
    if not cert:
        return None
    user, groups = None, []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                user = value
            elif key == "organizationName":
                groups.append(value)
    return (user, groups) if user else None
