"""The WSS handshake scenario: TLS + WebSocket handshakes through nginx, HAProxy and clbproxy.

Each proxy runs twice more, terminating TLS with a self-signed RSA-2048 and with
an ECDSA P-256 certificate for 127.0.0.1 (generated for the run, the same files
for all three; rows ``<proxy>-<rsa|ecdsa>-<full|resumed>``).  The load generator
(``load.js tlshake``) keeps 50 connections going: TLS handshake, WebSocket
handshake, one 64 B echo, close.  ``full`` offers no session; ``resumed`` offers
the newest session ticket it received on every connect and counts, with
``tlsSocket.isSessionReused()``, how many connections of the window were resumed.
A resumed row under :data:`RESUMED_FLOOR` resumed did not measure resumption and
is reported as failed.  nginx is told to offer TLS 1.3 (1.22 leaves it out by
default); the three then negotiate the same protocol and cipher with Node's client
(recorded per row in ``protocols``).
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from procs import Target

#: Share of a resumed row's connections that must have been resumed for it to count.
RESUMED_FLOOR = 0.95
MODES = ("full", "resumed")
PARALLEL = 50


def write_certificates(directory: Path) -> dict[str, tuple[Path, Path]]:
    """Self-signed certificates for localhost, 127.0.0.1: ``{"rsa": (cert, key), "ecdsa": ...}``."""
    keys = {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ecdsa": ec.generate_private_key(ec.SECP256R1()),
    }
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    files = {}
    for kind, key in keys.items():
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        cert, key_file = directory / f"bench-{kind}.crt", directory / f"bench-{kind}.key"
        cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        files[kind] = (cert, key_file)
    return files


def start_targets(bench, backend: int) -> list[Target]:
    """nginx, HAProxy and clbproxy once per certificate, in front of the plain echo backend."""
    saved = getattr(bench, "cert", None), getattr(bench, "key", None)
    targets = []
    for kind, (cert, key) in write_certificates(bench.tmp).items():
        bench.cert, bench.key = cert, key
        started = [
            bench.start_nginx(backend, "wss", f"nginx-{kind}"),
            bench.start_haproxy(backend, "wss", f"haproxy-{kind}"),
            bench.start_clbproxy(backend, "wss", f"clbproxy-{kind}", "", 1, bench.args.python),
        ]
        for target in started:
            target.cert, target.ws, target.http = kind, False, False
        targets += started
    bench.cert, bench.key = saved
    return targets


def handshakes(bench, targets: list[Target]) -> None:
    """One round: every TLS target, full then resumed handshakes."""
    for t in targets:
        proxy = t.name[: -len("-wss")]
        for mode in MODES:
            row = Target(f"{proxy}-{mode}", t.port, t.pid)
            r = bench.load(t, "tlshake", PARALLEL, bench.args.seconds, mode)
            r["rate"] = r["handshakes"] / r["seconds"]
            r["reused_share"] = r["reused"] / r["handshakes"] if r["handshakes"] else 0.0
            bench.record("wss_handshake", row, r)
            rounds = bench.samples["wss_handshake"][row.name]
            chosen = bench.results["scenarios"]["wss_handshake"][row.name]
            chosen["reused_share_min"] = min(s["reused_share"] for s in rounds)
