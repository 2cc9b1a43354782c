"""A scripted Talos API stand-in for tests: fake Talos nodes speaking machinery's real gRPC services.

`tools/talos-api` (Go, machinery v1.13.0) serves each node of a scenario on its own loopback
address, with a real Talos secrets bundle: mutual TLS signed by the cluster's OS CA once a node is
configured, Talos's insecure maintenance TLS before. What each call does follows the Talos source
(status codes included); what a node *is* and what a reboot or an upgrade does to it is scripted
by the test, and every call a node answers is recorded.

    with talos_api(scenario) as api:
        run_upgrader(talosconfig=api.talosconfig, node=f"valinor-1={api.ip('valinor-1')}")
        assert api.methods("valinor-1") == [...]
        api.script("valinor-2", reboot={"result": "never"})

The scenario is `tools/talos-api/scenario.go`'s JSON (cluster, etcd, nodes); `addresses()` picks
loopback addresses no other test is using. A control plane hands out the admin kubeconfig Talos
generates (`api.kubeconfig(node)`); with a test control plane's endpoint and CA in the scenario
(`scenario(..., endpoint=cluster.server, kubernetes_ca=cluster.ca)`) it signs in there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools import gotools

TOOL = "talos-api"
API_PORT = 50000  # Talos's apid port (constants.ApidPort), on every node's own address
# Image Factory's IDs of the vanilla schematic (no extensions) and of the generic boards' (the storage
# extensions, plans.talos.schematic_id), so tests can tell a schematic change from a version change.
VANILLA = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
STORAGE = "613e1592b2da41ae5e265e8789429f22e121aab91cb4deb6bc3c0b6262961245"


class TalosAPIError(Exception):
    """The stand-in could not start or answer (not a verdict on what a test checks)."""


def installer(schematic: str, version: str) -> str:
    """The Image Factory installer image that makes a node run `version` with `schematic`."""
    return f"factory.talos.dev/metal-installer/{schematic}:{version}"


def _free(address: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, API_PORT))
        except OSError:
            return False
    return True


def addresses(count: int) -> list[str]:
    """`count` loopback IPs in one random 127.x.y.0/24 whose Talos port is free (tests may run side by side)."""
    for _ in range(50):
        block = f"127.{1 + secrets.randbelow(254)}.{secrets.randbelow(255)}"
        chosen = [f"{block}.{10 + i}" for i in range(count)]
        if all(_free(a) for a in chosen):
            return chosen
    raise TalosAPIError(f"no free loopback block for {count} nodes on port {API_PORT}")


@dataclass
class TalosAPI:
    """A running stand-in: where its nodes are, its talosconfig, and its control API."""

    dir: Path
    scenario_path: Path
    talosconfig: Path
    control: str
    addresses: dict[str, str]  # node name -> IP:port
    binary: Path

    def ip(self, node: str) -> str:
        return self.addresses[node].rsplit(":", 1)[0]

    def node_arg(self, node: str) -> str:
        """The upgrader's NAME=IP for a node (the stand-in listens on Talos's own port)."""
        return f"{node}={self.ip(node)}"

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        # The stand-in's own loopback http:// URL, from its ready.json.
        request = urllib.request.Request(self.control + path, data=data, method=method, headers={"Content-Type": "application/json"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    def calls(self, node: str | None = None) -> list[dict[str, Any]]:
        """Every call the nodes answered, in order: {seq, ms, node, at (the node's IP:port it reached), method, args, code}."""
        calls: list[dict[str, Any]] = self._request("GET", "/calls")
        return [c for c in calls if node is None or c["node"] == node]

    def methods(self, node: str | None = None, only: Iterable[str] | None = None) -> list[str]:
        """The methods called (optionally on one node, optionally only those named), as 'node Service/Method'."""
        keep = set(only) if only is not None else None
        return [f"{c['node']} {c['method']}" if node is None else c["method"] for c in self.calls(node) if keep is None or c["method"] in keep]

    def state(self) -> dict[str, dict[str, Any]]:
        """What each node is now: address, version, schematic, boot ID, maintenance, install image, etcd member ID and version, ..."""
        nodes: dict[str, dict[str, Any]] = self._request("GET", "/nodes")
        return nodes

    def etcd(self) -> dict[str, Any]:
        answer: dict[str, Any] = self._request("GET", "/etcd")
        return answer

    def etcd_clusters(self) -> list[dict[str, list[str]]]:
        """Every etcd cluster a node's data directory holds: {members (as etcd lists them), holders}, each sorted.
        The cluster the others join comes first; a second entry is a split etcd (tools/talos-api/etcd.go)."""
        answer: dict[str, list[dict[str, list[str]]]] = self._request("GET", "/etcd/clusters")
        return answer["clusters"]

    def script(self, node: str, **changes: Any) -> None:
        """Change a node's script while it runs (keys as in the scenario's node)."""
        self._request("POST", f"/nodes/{node}", changes)

    def release_installer(self, node: str) -> None:
        """End the installer a node's script holds (upgrade={"held": True}, a test control, no Talos behaviour): it
        finishes as an installer does, and later ones run unheld. An error when none is held there."""
        self._request("POST", f"/nodes/{node}/installer-release", {})

    def release_etcd_pull(self, node: str) -> None:
        """End the etcd image pull a node's script holds (etcd={"pullHeld": True}, a test control, no Talos behaviour):
        its etcd then asks to join, and later boots pull unheld. An error when none is held there."""
        self._request("POST", f"/nodes/{node}/etcd-pull-release", {})

    def crash(self, node: str, down_ms: int = 0, result: str = "up") -> None:
        """Take a node off the network at once (a power cut); it comes back after `down_ms` as `result` says."""
        self._request("POST", f"/nodes/{node}/crash", {"downMs": down_ms, "result": result})

    def restart_kubelet(self, node: str) -> None:
        """Restart a node's kubelet (`talosctl service kubelet restart`): the new one reads Talos's static pod URL at once."""
        self._request("POST", f"/nodes/{node}/kubelet-restart", {})

    def set_alarms(self, alarms: list[dict[str, str]]) -> None:
        self._request("POST", "/etcd", {"alarms": alarms})

    def node_config(self, node: str) -> str:
        """The config a configured node booted with (generated with the stand-in's secrets)."""
        return (self.dir / "configs" / f"{node}.yaml").read_text()

    def config(self, machine_type: str, install_image: str, kubernetes_version: str | None = None, patches: Iterable[str] = ()) -> str:
        """A machine config generated with the stand-in's secrets, as the nodes' own are."""
        command = [str(self.binary), "config", "--dir", str(self.dir), "--scenario", str(self.scenario_path), "--type", machine_type]
        command += ["--install-image", install_image]
        if kubernetes_version is not None:
            command += ["--kubernetes-version", kubernetes_version]
        for patch in patches:
            command += ["--patch", patch]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)  # noqa: S603
        if result.returncode != 0:
            raise TalosAPIError(f"talos-api config failed: {result.stderr.strip()}")
        return result.stdout

    def talosconfig_text(self) -> str:
        return self.talosconfig.read_text()

    def talosctl_bootstrap(self, node: str) -> str:
        """One Bootstrap call, as `talosctl bootstrap` makes it (no check of its own): its answer, "CODE: message"."""
        command = [str(self.binary), "bootstrap", "--talosconfig", str(self.talosconfig), "--node", self.ip(node)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)  # noqa: S603
        if result.returncode != 0:
            raise TalosAPIError(f"talos-api bootstrap --node {self.ip(node)} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def kubeconfig(self, node: str) -> str:
        """The admin kubeconfig the node's MachineService.Kubeconfig hands out, fetched by machinery's own client
        as the Talos provider and `talosctl kubeconfig` fetch it (`talos-api kubeconfig`)."""
        command = [str(self.binary), "kubeconfig", "--talosconfig", str(self.talosconfig), "--node", self.ip(node)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)  # noqa: S603
        if result.returncode != 0:
            raise TalosAPIError(f"talos-api kubeconfig --node {self.ip(node)} failed: {result.stderr.strip()}")
        return result.stdout


def mac(name: str) -> str:
    """The permanent MAC the stand-in gives a node's link unless its script names one (locally administered)."""
    digest = hashlib.sha256(f"machine {name}".encode()).digest()[:5]
    return ":".join(f"{b:02x}" for b in (0x02, *digest))


def link(mac: str | None = None, address: str | None = None) -> list[str]:
    """Iluvatar's link documents (plans/talos.py), as config patches: the NIC found by its permanent MAC, and its static address."""
    patches = []
    if mac is not None:
        selector = {"match": f'mac(link.permanent_addr) == "{mac}"'}
        patches.append(json.dumps({"apiVersion": "v1alpha1", "kind": "LinkAliasConfig", "name": "lan0", "selector": selector}))
    if address is not None:
        patches.append(
            json.dumps({"apiVersion": "v1alpha1", "kind": "LinkConfig", "name": "lan0", "up": True, "addresses": [{"address": f"{address}/32"}]})
        )
    return patches


def node(name: str, address: str, role: str, version: str, schematic: str = VANILLA, **script: Any) -> dict[str, Any]:
    """One scenario node (script keys as in tools/talos-api/scenario.go, e.g. reboot={"downMs": 300})."""
    return {"name": name, "address": f"{address}:{API_PORT}", "role": role, "version": version, "schematic": schematic, **script}


def scenario(
    nodes: list[dict[str, Any]],
    bootstrapped: bool = True,
    endpoint: str = "https://127.0.0.1:6443",
    kubernetes_ca: tuple[str, str] | None = None,
    kubelet_poll_ms: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A scenario of cluster `arda`. `endpoint` is its Kubernetes API; `kubernetes_ca` (PEM certificate and key) its
    Kubernetes CA, e.g. a test control plane's (`Cluster.ca`): the admin kubeconfig the nodes hand out then signs in there.
    `kubelet_poll_ms`: every configured node runs a kubelet there (tools/talos-api/kubelet.go), which takes the static
    pods Talos renders on its next poll of the static pod URL, this often (a real kubelet's default: 20 s)."""
    cluster: dict[str, Any] = {"name": "arda", "endpoint": endpoint, "kubernetesVersion": "1.35.1", "configVersion": "v1.12"}
    if kubernetes_ca is not None:
        cluster["kubernetesCA"] = {"crt": kubernetes_ca[0], "key": kubernetes_ca[1]}
    if kubelet_poll_ms is not None:
        cluster["kubelet"] = {"httpCheckFrequencyMs": kubelet_poll_ms}
    return {"cluster": cluster, "etcd": {"bootstrapped": bootstrapped}, "nodes": nodes, **extra}


@contextlib.contextmanager
def talos_api(spec: Mapping[str, Any], workdir: Path | None = None, start_timeout: float = 60.0, netns: str | None = None) -> Iterator[TalosAPI]:
    """Serve `spec` until the block ends (in the network namespace `netns`, a machine's of a test LAN, when given);
    the folder keeps the secrets, talosconfig and the stand-in's log."""
    binary = gotools.build(TOOL)
    with contextlib.ExitStack() as stack:
        folder = workdir if workdir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="talos-api-")))
        folder.mkdir(parents=True, exist_ok=True)
        scenario_path = folder / "scenario.json"
        scenario_path.write_text(json.dumps(spec, indent=2))
        log = (folder / "talos-api.log").open("wb")
        stack.callback(log.close)
        inside = ["ip", "netns", "exec", netns] if netns else []  # `ip netns exec` execs the command: the signal reaches it
        process = subprocess.Popen([*inside, str(binary), "serve", "--scenario", str(scenario_path), "--dir", str(folder)], stdout=log, stderr=log)  # noqa: S603
        stack.callback(_stop, process)
        ready = folder / "ready.json"
        deadline = time.monotonic() + start_timeout
        while not ready.exists():
            if process.poll() is not None:
                raise TalosAPIError(f"talos-api exited with {process.returncode}: {(folder / 'talos-api.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TalosAPIError(f"talos-api did not start within {start_timeout:.0f} s")
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        yield TalosAPI(folder, scenario_path, folder / "talosconfig", info["control"], dict(info["nodes"]), binary)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
