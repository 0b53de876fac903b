"""The control plane's throw-away certificates, made with openssl in its temporary folder."""
from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

from kflowgen.checks.server.errors import ControlPlaneError

SERVICE_IP = "10.0.0.1"  # the `kubernetes` Service's address (the first of process.SERVICE_CIDR)


def _openssl(folder: Path, *args: str) -> None:
    out = subprocess.run(["openssl", *args], cwd=folder, capture_output=True, text=True, timeout=60)
    if out.returncode:
        raise ControlPlaneError(f"openssl {' '.join(args)} failed: {out.stderr.strip()}")


def make_certificates(folder: Path) -> None:
    """A throw-away CA, the API server's serving certificate for 127.0.0.1, and the service-account signing key."""
    if not shutil.which("openssl"):
        raise ControlPlaneError("openssl is needed to make the control plane's certificates")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl(folder, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=kflowgen throw-away CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-addext", "subjectKeyIdentifier=hash")
    _openssl(folder, "req", "-new", *ec, "-keyout", "apiserver.key", "-out", "apiserver.csr",
             "-subj", "/CN=kube-apiserver")
    (folder / "apiserver.ext").write_text(
        f"subjectAltName=IP:127.0.0.1,DNS:localhost,IP:{SERVICE_IP},DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    _openssl(folder, "x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial",
             str(int.from_bytes(secrets.token_bytes(8), "big")), "-days", "2", "-out", "apiserver.crt",
             "-extfile", "apiserver.ext")
    _openssl(folder, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "sa.key")
    _openssl(folder, "pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub")
