"""kopf's WebhookServer with its self-signed certificate made by `cryptography`.

kopf generates the certificate with `certbuilder`/`oscrypto`, an optional extra; oscrypto
cannot even load against OpenSSL 3 builds whose patch number has two digits ("Error detecting
the version of libcrypto"), and `cryptography` is already a Sundial dependency. Everything
else (serving, the CA bundle it reports, kopf managing the ValidatingWebhookConfiguration)
is kopf's own. For local development only: in a cluster, mount a real certificate and pass
certfile/pkeyfile instead.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Collection

import kopf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_LIFETIME = datetime.timedelta(days=365)


def self_signed(hostnames: Collection[str], password: str | None = None) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for `hostnames`, a CA of its own as kopf's is.

    Same conventions as kopf's: IP addresses become IP SANs (and DNS SANs, for clients that
    look there), unspecified addresses such as 0.0.0.0 are left out, the first real hostname
    (else the first address) is the common name.
    """
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    names: list[str] = []
    for hostname in dict.fromkeys(hostnames):
        try:
            ip = ipaddress.ip_address(hostname)
        except ValueError:
            names.append(hostname)
        else:
            if not ip.is_unspecified:
                ips.append(ip)
    if not names and not ips:
        raise ValueError("a certificate needs at least one hostname or address")
    common_name = names[0] if names else str(ips[0])
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    sans += [x509.IPAddress(ip) for ip in ips]
    sans += [x509.DNSName(str(ip)) for ip in ips]
    # Not from sundial.core.clock: a certificate's validity is wall time by definition, and a
    # skewed test clock would only make the apiserver refuse it.
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


class SelfSignedWebhookServer(kopf.WebhookServer):
    @staticmethod
    def build_certificate(hostnames: Collection[str], password: str | None = None) -> tuple[bytes, bytes]:
        return self_signed(hostnames, password)
