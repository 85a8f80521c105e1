"""Throwaway TLS material for clusters on one machine (tests, demos):
a self-signed certificate for the addresses such a cluster dials
(127.0.0.1, localhost), made with the ``openssl`` command line tool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from lineagerun.exceptions import ConfigurationError

# A throwaway certificate outlives any test run, not much more.
CERTIFICATE_DAYS = 1
OPENSSL_TIMEOUT_S = 30.0


def make_certificate(directory: str | Path, name: str) -> tuple[Path, Path]:
    """(certificate, key) files ``NAME.crt``/``NAME.key`` in ``directory``:
    self-signed (it is its own CA), EC P-256, valid for a day, for
    ``IP:127.0.0.1`` and ``DNS:localhost``."""
    if shutil.which("openssl") is None:
        raise ConfigurationError("making a throwaway TLS certificate needs the `openssl` command; install it "
                                 "(e.g. apt-get install openssl) or pass your own certificate files")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", str(CERTIFICATE_DAYS),
                        "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True, timeout=OPENSSL_TIMEOUT_S)
    except subprocess.CalledProcessError as err:
        raise ConfigurationError(f"openssl could not make a certificate in {directory}: "
                                 f"{err.stderr.decode(errors='replace').strip()}") from None
    key.chmod(0o600)
    return cert, key
