"""A stand-in for a Turing Pi 2 BMC (bmcd, firmware 2.x): its HTTPS API as bmcd v2.3.7 answers it, with no board behind it.

Only what Iluvatar uses, each as the firmware's source has it (turing-machines/bmcd, tag v2.3.7):
- `POST /api/bmc/authenticate` with `{"username", "password"}`: 200 with the session (`{"id": <token>,
  ...}`) and an `X-Auth-Token` header, or 403 "credentials incorrect"; after 5 wrong attempts the
  caller is banned (bmcd/src/authentication/authentication_context.rs, ban_patrol.rs);
- every other `/api/bmc` request needs `Authorization: Bearer <token>` or `Basic`, else 401 with a
  `WWW-Authenticate` challenge (authentication_service.rs);
- `GET /api/bmc?opt=get&type=power`: `{"response": [{"result": [{"node1": "0"|"1", ...}]}]}`;
  `opt=set&type=power&node<N>=0|1`: `{"response": [{"result": "ok"}]}` (api/legacy.rs,
  into_legacy_response.rs); switching on a slot that is on changes nothing (app/bmc_application.rs
  activate_slot, hal/power_controller.rs);
- `opt=set&type=flash&node=<0..3>&file=<url>`: the BMC downloads the URL itself, unpacks `.xz`,
  writes the slot, reads it back, and leaves the slot off; the answer is the bare `{"handle": <id>}`;
  `opt=get&type=flash` is the bare state, `"Ready"`, `{"Transferring": {...}}`, `{"Done": [...]}` or
  `{"Error": "..."}` (streaming_data_service.rs, data_transfer.rs, app/upgrade_worker.rs flash_node).

It serves HTTPS with a self-signed certificate made by openssl, as the firmware does, and records
every request (method, path with query, the kind of Authorization sent) in order.
"""

from __future__ import annotations

import base64
import json
import lzma
import secrets
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.tools import require

ATTEMPTS = 5  # bmcd's default_config.yaml authentication_attempts


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate and key like the firmware's own: self-signed, for no name a client could check."""
    cert, key = folder / "bmcd_cert.pem", folder / "bmcd_key.pem"
    subprocess.run(
        [
            require("openssl"),
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=turingpi",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@dataclass
class StandInBmc:
    """The board's state as the API shows it: users, tokens, four slots' power and disks, one transfer."""

    users: dict[str, str] = field(default_factory=lambda: {"root": "turing"})
    power: list[bool] = field(default_factory=lambda: [False] * 4)
    disks: list[bytes] = field(default_factory=lambda: [b""] * 4)
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path?query, "none"|"bearer"|"basic")
    tokens: set[str] = field(default_factory=set)
    failures: int = 0
    flash_state: Any = "Ready"
    flash_seconds: float = 0.5  # how long a flash takes here
    lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticated(self, header: str | None) -> bool:
        if header is None:
            return False
        scheme, _, value = header.partition(" ")
        if scheme == "Bearer":
            return value in self.tokens
        if scheme == "Basic":
            user, _, password = base64.b64decode(value).decode().partition(":")
            return self.users.get(user) == password
        return False

    def flash(self, slot: int, url: str, handle: int) -> None:
        """What bmcd's flash_node does with a URL: download, unpack .xz, write, leave the slot off."""
        try:
            with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - the test's own local server
                data = response.read()
            if url.endswith(".xz"):
                data = lzma.decompress(data)
            with self.lock:
                self.flash_state = {
                    "Transferring": {
                        "id": handle,
                        "process_name": f"Node {slot + 1} os install service",
                        "size": len(data),
                        "cancelled": False,
                        "bytes_written": 0,
                    }
                }
            time.sleep(self.flash_seconds)
            with self.lock:
                self.disks[slot] = data
                self.power[slot] = False
                self.flash_state = {"Done": [{"secs": 1, "nanos": 0}, len(data)]}
        except Exception as e:  # as bmcd: the transfer's error becomes the state
            with self.lock:
                self.power[slot] = False
                self.flash_state = {"Error": f"http file request error: {e}"}


def _handler(bmc: StandInBmc) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: Any, raw: bool = False, headers: dict[str, str] | None = None) -> None:
            text = body if isinstance(body, str) and raw else json.dumps(body)
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if not raw else "text/plain")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> None:
            auth = self.headers.get("Authorization")
            kind = "none" if auth is None else auth.partition(" ")[0].lower()
            with bmc.lock:
                bmc.requests.append((self.command, self.path, kind))

        def do_POST(self) -> None:
            self._record()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if urlsplit(self.path).path != "/api/bmc/authenticate":
                self._reply(404, "not found", raw=True)
                return
            with bmc.lock:
                if bmc.failures >= ATTEMPTS:
                    self._reply(403, "Exceeded allowed authentication attempts. Access blocked for 1m", raw=True)
                    return
                try:
                    login = json.loads(body)
                    ok = bmc.users.get(login["username"]) == login["password"]
                except (ValueError, KeyError, TypeError):
                    self._reply(403, "error trying to parse credentials", raw=True)
                    return
                if not ok:
                    bmc.failures += 1
                    self._reply(403, "credentials incorrect", raw=True)
                    return
                bmc.failures = 0
                token = secrets.token_urlsafe(48)
                bmc.tokens.add(token)
            session = {"id": token, "name": "User Session", "description": "User Session", "username": login["username"]}
            self._reply(200, json.dumps(session), raw=True, headers={"X-Auth-Token": token})

        def do_GET(self) -> None:
            self._record()
            parts = urlsplit(self.path)
            if parts.path != "/api/bmc":
                self._reply(404, "not found", raw=True)
                return
            if not bmc.authenticated(self.headers.get("Authorization")):
                self._reply(
                    401,
                    "no authorization header provided",
                    raw=True,
                    headers={"WWW-Authenticate": 'Basic realm="Access to Baseboard Management Controller"'},
                )
                return
            query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            opt, kind = query.get("opt"), query.get("type")
            if (opt, kind) == ("get", "power"):
                with bmc.lock:
                    states = {f"node{i + 1}": "1" if on else "0" for i, on in enumerate(bmc.power)}
                self._reply(200, {"response": [{"result": [states]}]})
            elif (opt, kind) == ("set", "power"):
                with bmc.lock:
                    for i in range(4):
                        value = query.get(f"node{i + 1}")
                        if value not in (None, "0", "1"):
                            self._reply(400, {"response": [{"result": f"Invalid value `{value}` for parameter `node{i + 1}`"}]})
                            return
                        if value is not None:
                            bmc.power[i] = value == "1"
                self._reply(200, {"response": [{"result": "ok"}]})
            elif (opt, kind) == ("set", "flash"):
                node, url = query.get("node"), query.get("file")
                if node not in ("0", "1", "2", "3") or not url:
                    self._reply(400, {"response": [{"result": "Missing `node` parameter"}]})
                    return
                handle = secrets.randbelow(2**32)
                with bmc.lock:
                    bmc.flash_state = {"Transferring": {"id": handle, "process_name": "", "size": 0, "cancelled": False, "bytes_written": 0}}
                threading.Thread(target=bmc.flash, args=(int(node), url, handle), daemon=True).start()
                self._reply(200, json.dumps({"handle": handle}), raw=True)
            elif (opt, kind) == ("get", "flash"):
                with bmc.lock:
                    state = bmc.flash_state
                self._reply(200, json.dumps(state), raw=True)
            else:
                self._reply(400, {"response": [{"result": f"Invalid `type` parameter {kind}"}]})

    return Handler


@contextmanager
def serve(bmc: StandInBmc, folder: Path, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """The stand-in over HTTPS at `host:port` (0: any free port); yields its URL."""
    cert, key = self_signed(folder)
    server = ThreadingHTTPServer((host, port), _handler(bmc))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
