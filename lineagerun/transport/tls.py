"""TLS for every TCP link of a cluster (optional; the token is required
either way).

A cluster is TLS or not as a whole: ``lineagerun start --head --tls-cert F
--tls-key F [--tls-ca F]`` records the files in the session directory
(``tls.json``) and hands them to every process it starts, both as flags and
as the ``LINEAGERUN_TLS_*`` environment variables, which the processes
those start (a node manager's workers) inherit. In a process, the *process
TLS setting* (``process_tls()``: what ``configure_process_tls`` set, else
the environment) is what ``transport.channels`` uses when a caller passes
nothing: ``bind`` serves TLS with its certificate and key, and
``make_channel``/``make_aio_channel`` check servers against its CA. So the
code of each service (control store, scheduler, node, worker) needs no TLS
argument of its own. Unix sockets (a driver or worker to its own node
manager) stay plain: only this machine's user can open them.

The certificate must name the addresses the processes dial (e.g.
``subjectAltName = IP:127.0.0.1`` for one machine, the hosts' IPs or names
otherwise). Without ``--tls-ca`` the certificate is its own CA (self-signed).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from lineagerun.exceptions import ConfigurationError

CERT_ENV = "LINEAGERUN_TLS_CERT"
KEY_ENV = "LINEAGERUN_TLS_KEY"
CA_ENV = "LINEAGERUN_TLS_CA"
SESSION_FILE_NAME = "tls.json"
_PEM_MARK = b"-----BEGIN "


@dataclass(frozen=True)
class TlsConfig:
    """Files (kept as paths, to pass on to child processes) and their bytes."""

    ca_file: str
    ca_pem: bytes
    cert_file: str = ""
    cert_pem: bytes = b""
    key_file: str = ""
    key_pem: bytes = b""

    @classmethod
    def load(cls, cert_file: str | os.PathLike | None = None, key_file: str | os.PathLike | None = None,
             ca_file: str | os.PathLike | None = None) -> "TlsConfig":
        """Read and check the files: a certificate and its key to serve, a
        CA to check servers against (default: the certificate itself)."""
        if bool(cert_file) != bool(key_file):
            raise ConfigurationError("--tls-cert and --tls-key go together (a certificate and its private key)")
        if not cert_file and not ca_file:
            raise ConfigurationError("TLS needs --tls-cert and --tls-key (to serve) or --tls-ca (to connect)")
        cert_file = str(Path(cert_file).absolute()) if cert_file else ""
        key_file = str(Path(key_file).absolute()) if key_file else ""
        ca_file = str(Path(ca_file).absolute()) if ca_file else cert_file
        cert_pem = _read_pem(cert_file, "certificate (--tls-cert)") if cert_file else b""
        key_pem = _read_pem(key_file, "private key (--tls-key)") if key_file else b""
        ca_pem = _read_pem(ca_file, "CA certificate (--tls-ca)") if ca_file != cert_file else cert_pem
        return cls(ca_file, ca_pem, cert_file, cert_pem, key_file, key_pem)

    @property
    def can_serve(self) -> bool:
        return bool(self.cert_pem and self.key_pem)

    def server_pair(self) -> tuple[bytes, bytes]:
        """(key, certificate) for ``channels.bind(..., tls=)``."""
        if not self.can_serve:
            raise ConfigurationError("this process has a TLS CA but no certificate and key to serve with; "
                                     "pass --tls-cert and --tls-key")
        return self.key_pem, self.cert_pem

    def argv(self) -> list[str]:
        """Flags for the service processes (``python -m lineagerun.*``)."""
        flags = ["--tls-ca", self.ca_file]
        if self.can_serve:
            flags += ["--tls-cert", self.cert_file, "--tls-key", self.key_file]
        return flags

    def env(self) -> dict[str, str]:
        """Environment for child processes (inherited further down)."""
        values = {CA_ENV: self.ca_file}
        if self.can_serve:
            values.update({CERT_ENV: self.cert_file, KEY_ENV: self.key_file})
        return values

    def client_only(self) -> "TlsConfig":
        """The CA alone: for a process that connects but never serves (a driver)."""
        return TlsConfig(self.ca_file, self.ca_pem)

    def record(self) -> dict[str, str]:
        return {"cert": self.cert_file, "key": self.key_file, "ca": self.ca_file}


def _read_pem(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from None
    if _PEM_MARK not in data:
        raise ConfigurationError(f"the TLS {what} {path} is not PEM (no '-----BEGIN' line)")
    return data


# ------------------------------------------------------------ process-wide

_UNSET = object()
_configured: "TlsConfig | None | object" = _UNSET
_from_env_cache: tuple[tuple, TlsConfig | None] | None = None


def configure_process_tls(config: TlsConfig | None) -> None:
    """Set this process's TLS setting (None: plaintext), over the environment."""
    global _configured
    _configured = config


def reset_process_tls() -> None:
    """Back to what the environment says."""
    global _configured
    _configured = _UNSET


def process_tls() -> TlsConfig | None:
    if _configured is not _UNSET:
        return _configured  # type: ignore[return-value]
    return _env_tls()


def _env_tls() -> TlsConfig | None:
    global _from_env_cache
    key = (os.environ.get(CERT_ENV, ""), os.environ.get(KEY_ENV, ""), os.environ.get(CA_ENV, ""))
    if _from_env_cache is None or _from_env_cache[0] != key:
        config = TlsConfig.load(*key) if any(key) else None
        _from_env_cache = (key, config)
    return _from_env_cache[1]


def child_env(config: TlsConfig | None, base: dict | None = None) -> dict[str, str]:
    """The environment for a child process of a cluster with ``config``
    (None: plaintext, so TLS variables this process has are not passed on)."""
    env = dict(os.environ if base is None else base)
    for name in (CERT_ENV, KEY_ENV, CA_ENV):
        env.pop(name, None)
    if config is not None:
        env.update(config.env())
    return env


def from_flags(cert_file, key_file, ca_file) -> TlsConfig | None:
    """The TLS flags of a service's command line (None: none given)."""
    if not (cert_file or key_file or ca_file):
        return None
    return TlsConfig.load(cert_file, key_file, ca_file)


def add_flags(parser) -> None:
    """``--tls-cert/--tls-key/--tls-ca`` on an argparse parser."""
    parser.add_argument("--tls-cert", default=None, help="PEM certificate to serve TLS with (with --tls-key)")
    parser.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    parser.add_argument("--tls-ca", default=None, help="PEM CA servers are checked against (default: --tls-cert)")


# ------------------------------------------------------------ session file


def write_session_tls(session_dir: str | os.PathLike, config: TlsConfig | None) -> None:
    """Record the cluster's TLS files in its session directory (drivers and
    joining nodes read them there); no file: a plaintext cluster."""
    path = Path(session_dir) / SESSION_FILE_NAME
    if config is None:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(config.record(), indent=2))
    os.replace(tmp, path)


def use_session_tls(session_dir: str | os.PathLike) -> bool:
    """A driver joining the cluster of ``session_dir``: if the cluster runs
    TLS, check its services against its CA (the driver serves nothing).
    True if it does; ``reset_process_tls()`` at disconnect."""
    config = read_session_tls(session_dir)
    if config is not None:
        configure_process_tls(config.client_only())
    return config is not None


def read_session_tls(session_dir: str | os.PathLike) -> TlsConfig | None:
    path = Path(session_dir) / SESSION_FILE_NAME
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read the cluster's TLS settings {path}: {exc}") from None
    return TlsConfig.load(record.get("cert") or None, record.get("key") or None, record.get("ca") or None)
