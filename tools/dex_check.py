"""Dex itself (v2.45.1, tools/dex) on the config the identity plan renders: its own code loads and checks
the config, serves discovery and keys, and issues the tokens the API servers are asked to accept.

What a test changes in the rendered config, and only that: the storage (memory: Dex's `kubernetes`
storage needs the Ainur's API from inside a pod), the addresses Dex listens on (a loopback address
of the test's), and where its certificate files are. The issuer, the clients, the connector and the
rest are the plan's.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from tools import gotools


def bcrypt_hash(password: str) -> str:
    """The bcrypt hash Dex's static passwords take (golang.org/x/crypto/bcrypt, as Dex checks them)."""
    result = subprocess.run([str(gotools.build("bcrypt"))], input=password, capture_output=True, text=True, timeout=60, check=True)  # noqa: S603
    return result.stdout.strip()


def for_test(config: Mapping[str, Any], address: str, tls_dir: Path, telemetry: str) -> dict[str, Any]:
    """The rendered config with the test's storage, addresses and certificate files."""
    out: dict[str, Any] = json.loads(json.dumps(config))
    out["storage"] = {"type": "memory"}
    out["web"] = {"https": address, "tlsCert": str(tls_dir / "tls.crt"), "tlsKey": str(tls_dir / "tls.key")}
    out["telemetry"] = {"http": telemetry}
    return out


class DexError(Exception):
    """Dex did not start: its own words."""


@contextlib.contextmanager
def serving(config: Mapping[str, Any], root: Path, address: str, ca: Path, timeout: float = 60) -> Iterator[str]:
    """Run `dex serve` on `config` (already `for_test`), until its discovery document answers at `address`; yields the
    discovery document's URL there. Raises DexError with Dex's log if it stops or never answers."""
    path = root / "dex.yaml"
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    log = root / "dex.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(  # noqa: S603 - a pinned tool, under setpriv (dies with the test)
            ["setpriv", "--pdeathsig", "KILL", "--", str(gotools.build("dex")), "serve", str(path)],  # noqa: S607
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")},
        )
    issuer = urllib.parse.urlsplit(str(config["issuer"]))
    url = f"https://{address}{issuer.path.rstrip('/')}/.well-known/openid-configuration"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise DexError(f"dex stopped with status {process.returncode}:\n{log.read_text(errors='replace')}")
            try:
                status, _ = get(url, ca, issuer.hostname or "")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise DexError(f"dex did not answer at {url} within {timeout:.0f} s:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)


class _SniConnection(http.client.HTTPSConnection):
    """HTTPS to an address, checking the certificate against (and sending SNI for) another name."""

    def __init__(self, address: str, port: int, server_name: str, context: ssl.SSLContext) -> None:
        super().__init__(address, port, context=context, timeout=10)
        self.server_name = server_name
        self.tls_context = context

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self.tls_context.wrap_socket(self.sock, server_hostname=self.server_name)


def request(
    method: str, url: str, ca: Path, server_name: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, Any]:
    """One request to Dex at the test's address, its certificate checked for `server_name`; the status and the JSON answer."""
    parts = urllib.parse.urlsplit(url)
    connection = _SniConnection(parts.hostname or "", parts.port or 443, server_name, ssl.create_default_context(cafile=str(ca)))
    try:
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        text = response.read().decode(errors="replace")
    finally:
        connection.close()
    try:
        return response.status, json.loads(text)
    except json.JSONDecodeError:
        return response.status, text


def get(url: str, ca: Path, server_name: str) -> tuple[int, Any]:
    return request("GET", url, ca, server_name)


def password_grant(
    token_url: str, ca: Path, server_name: str, client_id: str, username: str, password: str, client_secret: str = ""
) -> tuple[int, Any]:
    """The resource-owner password grant (Dex's `passwordConnector`): what `kubelogin --grant-type=password` asks."""
    form = urllib.parse.urlencode(
        {"grant_type": "password", "username": username, "password": password, "scope": "openid email groups profile", "client_id": client_id}
    ).encode()
    credentials = base64.b64encode(f"{urllib.parse.quote(client_id)}:{urllib.parse.quote(client_secret)}".encode()).decode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Basic {credentials}"}
    return request("POST", token_url, ca, server_name, body=form, headers=headers)


def claims(token: str) -> dict[str, Any]:
    """A JWT's claims (unverified: the API server is what verifies it)."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded
