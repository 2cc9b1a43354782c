"""yaml-language-server: the program editors run on stack files, pinned, to check the editor schema with.

VS Code's YAML extension, Neovim, Helix and others run Red Hat's yaml-language-server; it reads the
`# yaml-language-server: $schema=...` line of a stack file, loads the schema and reports problems as
the user types. The tests start the real server (`--stdio`), speak the Language Server Protocol to it
as an editor does, open a stack file and read back the diagnostics it publishes.

`tools/yaml-language-server/package-lock.json` pins the server and every dependency with integrity
hashes; `npm ci` installs it into `$ILUVATAR_CACHE/node/` (never into the repository), keyed by the
lock's hash, so a second install is instant.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tools import npm

PACKAGE_DIR = Path(__file__).resolve().parent / "yaml-language-server"
SETTINGS = {"yaml": {"validate": True, "schemaStore": {"enable": False}, "format": {"enable": False}}}


class YamlLsError(Exception):
    """The language server could not be installed or did not answer (the message says which)."""


def install() -> Path:
    """The server's entry point, installed with `npm ci` from the committed lock if not already."""
    entry = npm.install_root(PACKAGE_DIR) / "node_modules" / "yaml-language-server" / "bin" / "yaml-language-server"
    if entry.exists():
        return entry
    found = shutil.which("npm")
    if found is None or shutil.which("node") is None:
        raise YamlLsError("node and npm are not installed; scripts/prerequisites.sh installs them (apt-get install nodejs npm)")
    try:
        npm.npm_ci(found, PACKAGE_DIR, entry.exists, timeout=600)
    except npm.NpmCiError as e:
        raise YamlLsError(str(e)) from e
    return entry


class LanguageServer:
    """A running yaml-language-server, spoken to over stdio as an editor speaks to it."""

    def __init__(self, entry: Path) -> None:
        node = shutil.which("node")
        if node is None:
            raise YamlLsError("node is not installed; scripts/prerequisites.sh installs it")
        self._process = subprocess.Popen(  # noqa: S603
            [node, str(entry), "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        self._request("initialize", {"processId": os.getpid(), "rootUri": None, "capabilities": {"workspace": {"configuration": True}}})
        self._notify("initialized", {})
        self._notify("workspace/didChangeConfiguration", {"settings": SETTINGS})

    def _read(self) -> None:
        stream = self._process.stdout
        assert stream is not None
        while True:
            length = None
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if length is None:
                self._messages.put(None)  # the server closed its output
                return
            self._messages.put(json.loads(stream.read(length)))

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self._process.stdin is not None
        self._process.stdin.write(f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        self._process.stdin.flush()

    def _notify(self, method: str, params: dict[str, Any]) -> None:
        self._send({"method": method, "params": params})

    def _request(self, method: str, params: dict[str, Any]) -> Any:
        self._next_id += 1
        self._send({"id": self._next_id, "method": method, "params": params})
        return self._wait(lambda m: m.get("id") == self._next_id and "method" not in m).get("result")

    def _wait(self, wanted: Any, timeout: float = 60) -> dict[str, Any]:
        """The next message `wanted` accepts, answering the server's own requests meanwhile."""
        while True:
            try:
                message = self._messages.get(timeout=timeout)
            except queue.Empty:
                raise YamlLsError(f"yaml-language-server did not answer within {timeout:.0f} s") from None
            if message is None:
                raise YamlLsError("yaml-language-server exited")
            if "method" in message and "id" in message:
                # An editor answers workspace/configuration with its settings, everything else with null.
                items = message.get("params", {}).get("items", [])
                answer = (
                    [SETTINGS["yaml"] if i.get("section") == "yaml" else None for i in items]
                    if message["method"] == "workspace/configuration"
                    else None
                )
                self._send({"id": message["id"], "result": answer})
            elif wanted(message):
                return message

    def diagnostics(self, path: Path, text: str | None = None) -> list[dict[str, Any]]:
        """What the editor shows for `path` (its text, or `text` as if typed into it): the published diagnostics."""
        uri = path.resolve().as_uri()
        content = path.read_text() if text is None else text
        self._notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "yaml", "version": 1, "text": content}})
        published = self._wait(lambda m: m.get("method") == "textDocument/publishDiagnostics" and m["params"]["uri"] == uri)
        # Closing clears the document's diagnostics; wait for that, so the next open of the same path reads fresh ones.
        self._notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        self._wait(lambda m: m.get("method") == "textDocument/publishDiagnostics" and m["params"] == {"uri": uri, "diagnostics": []})
        result: list[dict[str, Any]] = published["params"]["diagnostics"]
        return result

    def close(self) -> None:
        with contextlib.suppress(YamlLsError, OSError):
            self._request("shutdown", {})
            self._notify("exit", {})
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@contextlib.contextmanager
def language_server() -> Iterator[LanguageServer]:
    server = LanguageServer(install())
    try:
        yield server
    finally:
        server.close()
