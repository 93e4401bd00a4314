"""TLS for the peer channel (``encrypt-channel=true``): a fresh self-signed certificate per
start, whose SHA-256 fingerprint the active transactor publishes in the lease so peers pin it.

Peers do not trust a certificate authority; they trust storage. The key never leaves the
transactor's temporary directory and is regenerated at every start.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import subprocess
import tempfile

from fastdatomic.errors import ConfigError

__all__ = ["server_context", "client_context", "fingerprint"]


def fingerprint(der: bytes) -> str:
    """The hex SHA-256 of a DER certificate (what peers compare against the lease).

    >>> fingerprint(b"cert")[:16]
    '06298432e8066b29'
    """
    return hashlib.sha256(der).hexdigest()


def server_context() -> tuple[ssl.SSLContext, str]:
    """A server ``SSLContext`` with a new self-signed EC certificate, and its fingerprint.

    Needs the ``openssl`` command (present wherever Python's ssl module is).
    """
    exe = shutil.which("openssl")
    if exe is None:
        raise ConfigError("encrypt-channel=true needs the 'openssl' command to make the "
                          "transactor's certificate; install it or set encrypt-channel=false")
    with tempfile.TemporaryDirectory(prefix="fd-tls-") as d:
        key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
        subprocess.run([exe, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "3650",
                        "-subj", "/CN=fastdatomic-transactor"],
                       check=True, capture_output=True)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        with open(cert) as f:
            der = ssl.PEM_cert_to_DER_cert(f.read())
    return ctx, fingerprint(der)


def client_context() -> ssl.SSLContext:
    """A client context that checks the certificate by fingerprint (after the handshake)
    instead of by authority: the pin comes from storage.

    >>> client_context().verify_mode == ssl.CERT_NONE
    True
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
