"""A stand-in for the one corner of the Kubernetes API the netboot pod's lease scripts use.

The scripts keep dnsmasq's leases in the ConfigMap `netboot/dnsmasq-leases` (plans.netboot). No
API server can run here, so this serves exactly the calls they make, with the API server's
semantics for them: HTTPS with the service account's CA, a bearer token (401 without it), GET
(404 until created), PUT replaces (404 if absent), POST creates (409 if present), and a request
body that must be a ConfigMap of that name whose binaryData is base64. It checks the scripts'
requests; it is not a proof about the API server.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from plans import netboot

COLLECTION = f"/api/v1/namespaces/{netboot.NAMESPACE}/configmaps"
ITEM = f"{COLLECTION}/{netboot.LEASES_CONFIGMAP}"
TOKEN = "stand-in-service-account-token"


@dataclass
class ConfigMapStore:
    """The stand-in's state: the ConfigMap (None until created) and every call, for assertions."""

    configmap: dict[str, Any] | None = None
    calls: list[tuple[str, str, int]] = field(default_factory=list)

    def leases(self) -> bytes:
        assert self.configmap is not None
        return base64.b64decode(self.configmap["binaryData"]["leases"])


def _handler(store: ConfigMapStore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, code: int, body: dict[str, Any]) -> None:
            store.calls.append((self.command, self.path, code))
            data = json.dumps(body, separators=(",", ":")).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._reply(401, {"kind": "Status", "code": 401})
                return False
            return True

        def _body(self) -> dict[str, Any] | None:
            doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            ok = (
                doc.get("apiVersion") == "v1"
                and doc.get("kind") == "ConfigMap"
                and doc.get("metadata") == {"name": netboot.LEASES_CONFIGMAP, "namespace": netboot.NAMESPACE}
                and set(doc.get("binaryData", {})) == {"leases"}
            )
            if ok:
                base64.b64decode(doc["binaryData"]["leases"], validate=True)
                return dict(doc)
            self._reply(422, {"kind": "Status", "code": 422})
            return None

        def do_GET(self) -> None:
            if not self._authorised():
                return
            if self.path == ITEM and store.configmap is not None:
                self._reply(200, store.configmap)
            else:
                self._reply(404, {"kind": "Status", "code": 404})

        def do_PUT(self) -> None:
            if not self._authorised():
                return
            if self.path != ITEM or store.configmap is None:
                self._reply(404, {"kind": "Status", "code": 404})
            elif (doc := self._body()) is not None:
                store.configmap = doc
                self._reply(200, doc)

        def do_POST(self) -> None:
            if not self._authorised():
                return
            if self.path != COLLECTION:
                self._reply(404, {"kind": "Status", "code": 404})
            elif store.configmap is not None:
                self._reply(409, {"kind": "Status", "code": 409})
            elif (doc := self._body()) is not None:
                store.configmap = doc
                self._reply(201, doc)

    return Handler


@contextmanager
def kube_api(root: Path) -> Iterator[tuple[ConfigMapStore, dict[str, str]]]:
    """Serve the stand-in on 127.0.0.1; yields the store and the environment a pod's scripts see."""
    sa = root / "serviceaccount"
    sa.mkdir(exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(sa / "tls.key"), "-out", str(sa / "ca.crt")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (sa / "token").write_text(TOKEN)
    store = ConfigMapStore()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(store))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sa / "ca.crt", sa / "tls.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(server.server_address[1]), "SERVICEACCOUNT_DIR": str(sa)}
    try:
        yield store, env
    finally:
        server.shutdown()
        server.server_close()
