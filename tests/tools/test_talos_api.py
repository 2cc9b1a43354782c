"""The Talos API stand-in itself (tools/talos-api): TLS as a real node serves it, its script, its call log.

The protocol side is checked from Python's own TLS stack against the talosconfig the stand-in
writes; the gRPC side with the real machinery client, which the upgrader is (tests/upgrader has
the rest of what the stand-in does, through it).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest
import yaml

from iluvatar import golang
from plans import imagefactory, talos
from tests import talos_provider
from tests.upgrader.kube import unique
from tests.upgrader.run import secrets, upgrader, upgrader_watched
from tools import gotools
from tools.kube_cluster import Cluster, KubeClient
from tools.talos_api import API_PORT, STORAGE, VANILLA, TalosAPI, TalosAPIError, addresses, installer, link, node, scenario, talos_api

NEW = "v1.13.0"


def _context(api: TalosAPI) -> tuple[dict[str, Any], Path]:
    """The talosconfig's current context, and its CA written to a file for ssl."""
    config = yaml.safe_load(api.talosconfig_text())
    context = config["contexts"][config["context"]]
    ca = api.dir / "ca.crt"
    ca.write_bytes(base64.b64decode(context["ca"]))
    return context, ca


def _admin_context(api: TalosAPI) -> ssl.SSLContext:
    """TLS as talosctl speaks it with the talosconfig: the OS CA, the admin certificate, HTTP/2."""
    context, ca = _context(api)
    crt, key = api.dir / "admin.crt", api.dir / "admin.key"
    crt.write_bytes(base64.b64decode(context["crt"]))
    # Talos labels its Ed25519 PKCS#8 key "ED25519 PRIVATE KEY"; OpenSSL reads the same DER as "PRIVATE KEY".
    key.write_bytes(base64.b64decode(context["key"]).replace(b"ED25519 PRIVATE KEY", b"PRIVATE KEY"))
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(crt), str(key))
    ctx.set_alpn_protocols(["h2"])
    return ctx


def _handshake(address: str, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    host, port = address.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=5)
    return ctx.wrap_socket(raw, server_hostname=host)


def test_the_stand_ins_go_unit_tests_pass() -> None:
    # stop_test.go: a node a call takes down (a reboot, upgrade, install, reset) sends that call's reply before its
    # connections close, with 64 nodes going down at once so their connection writers run late.
    result = golang.run_go_tests(Path(__file__).resolve().parents[2] / "tools" / "talos-api")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert result.stdout.startswith("ok ")


def test_the_stand_ins_schematics_are_image_factorys() -> None:
    """The nodes run schematics Image Factory can have named: the vanilla one and the generic boards' (plans.imagefactory)."""
    assert (imagefactory.schematic_id(""), talos.schematic_id("generic-x86")) == (VANILLA, STORAGE)


def test_a_configured_node_serves_its_ip_signed_by_the_os_ca_and_requires_a_client_certificate() -> None:
    ips = addresses(1)
    with talos_api(scenario([node("valinor-1", ips[0], "controlplane", NEW)])) as api:
        context, ca = _context(api)
        assert context["endpoints"] == [f"{ips[0]}:{API_PORT}"]

        # Verified against the OS CA, for the node's IP (check_hostname matches IP SANs), with the admin certificate.
        ctx = _admin_context(api)
        with _handshake(api.addresses["valinor-1"], ctx) as tls:
            assert tls.selected_alpn_protocol() == "h2"
            peer = tls.getpeercert()
            assert peer is not None
            assert peer["subjectAltName"] == (("IP Address", ips[0]),)

        # Without a client certificate the node ends the connection (TLS 1.3 says so on the first read).
        bare = ssl.create_default_context(cafile=str(ca))
        bare.set_alpn_protocols(["h2"])
        with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"), _handshake(api.addresses["valinor-1"], bare) as tls:
            tls.recv(1)


def test_a_maintenance_mode_node_serves_a_certificate_no_talosconfig_trusts_and_asks_for_none() -> None:
    ips = addresses(1)
    with talos_api(scenario([node("istari-1", ips[0], "worker", NEW, maintenance=True)])) as api:
        _, ca = _context(api)
        trusting = ssl.create_default_context(cafile=str(ca))
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            _handshake(api.addresses["istari-1"], trusting).close()

        insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        insecure.set_alpn_protocols(["h2"])
        with _handshake(api.addresses["istari-1"], insecure) as tls:
            assert tls.selected_alpn_protocol() == "h2"
        assert not (api.dir / "configs" / "istari-1.yaml").exists()


def test_the_config_command_generates_what_the_nodes_booted_with() -> None:
    ips = addresses(2)
    with talos_api(scenario([node("valinor-1", ips[0], "controlplane", NEW), node("istari-1", ips[1], "worker", NEW)])) as api:
        for name, role in (("valinor-1", "controlplane"), ("istari-1", "worker")):
            generated = api.config(role, installer(VANILLA, NEW))
            assert generated == api.node_config(name)
            assert next(yaml.safe_load_all(generated))["machine"]["install"]["image"] == installer(VANILLA, NEW)


def test_the_bundle_is_the_scenarios_own_with_an_ecdsa_service_account_key() -> None:
    # Talos 1.7+ makes an RSA-4096 key there, 0.2 to 0.7 s of CPU per scenario for a key nothing here uses
    # (tools/talos-api/main.go: bundleContract); the rest is the scenario's contract's bundle.
    ips = addresses(1)
    with talos_api(scenario([node("valinor-1", ips[0], "controlplane", NEW)])) as api:
        bundle = yaml.safe_load((api.dir / "secrets.yaml").read_text())
        key = bundle["certs"]["k8sserviceaccount"]["key"]
        assert base64.b64decode(key).startswith(b"-----BEGIN EC PRIVATE KEY-----")
        assert sorted(bundle["secrets"]) == ["bootstraptoken", "secretboxencryptionsecret"]  # not a 1.2 contract's AES-CBC
        assert next(yaml.safe_load_all(api.node_config("valinor-1")))["cluster"]["serviceAccount"]["key"] == key


def test_a_crash_takes_the_node_off_the_network_and_brings_it_back_with_a_new_boot_id() -> None:
    ips = addresses(1)
    with talos_api(scenario([node("istari-1", ips[0], "worker", NEW)])) as api:
        probe = ["probe", "--node", api.node_arg("istari-1"), "--deadline", "2s"]
        before = api.state()["istari-1"]["bootId"]
        # Down until the next power cycle, so the probe meets it down however long the upgrader takes to start: with a
        # node back after 1.5 s, a loaded machine started the probe late and it found the node running again.
        api.crash("istari-1", result="never")
        assert upgrader(probe, secrets(api)).stdout.strip() == '{"nodes":{"istari-1":"unreachable"}}'
        assert api.state()["istari-1"]["up"] is False
        # Powered again: back on its own after its down time.
        api.crash("istari-1", down_ms=1500)
        deadline = time.monotonic() + 10
        while not api.state()["istari-1"]["up"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert api.state()["istari-1"]["bootId"] != before
        assert upgrader(probe, secrets(api)).stdout.strip() == '{"nodes":{"istari-1":"running"}}'


def test_a_script_change_at_run_time_takes_effect() -> None:
    ips = addresses(1)
    with talos_api(scenario([node("istari-1", ips[0], "worker", NEW)])) as api:
        api.script("istari-1", upgrade={"result": "never"})
        config = api.config("worker", installer(VANILLA, "v1.13.1"))
        result = upgrader(
            ["apply", "--node", api.node_arg("istari-1"), "--role", "worker", "--timeout", "3s", "--no-kubernetes"], secrets(api, config)
        )
        assert result.code == 1
        assert api.state()["istari-1"]["up"] is False
        with pytest.raises(Exception, match="HTTP Error 400"):
            api.script("istari-1", reboot={"result": "sideways"})


def test_releasing_an_installer_no_script_holds_is_refused() -> None:
    """The installer hold is a test control (tools/talos-api/lifecycle.go): a release with nothing held is the test's own
    mistake, said at once rather than taken for a release."""
    with talos_api(scenario([node("istari-1", addresses(1)[0], "worker", NEW)])) as api:
        with pytest.raises(urllib.error.HTTPError) as refused:
            api.release_installer("istari-1")
        assert (refused.value.code, refused.value.read().decode()) == (409, "no held installer runs on istari-1\n")


def test_alarms_raised_at_run_time_stop_the_next_change() -> None:
    ips = addresses(3)
    with talos_api(scenario([node(f"valinor-{i + 1}", ip, "controlplane", NEW) for i, ip in enumerate(ips)])) as api:
        api.set_alarms([{"node": "valinor-2", "alarm": "NOSPACE"}])
        config = api.config("controlplane", installer(VANILLA, "v1.13.1"))
        result = upgrader(
            ["apply", "--node", api.node_arg("valinor-1"), "--role", "controlplane", "--timeout", "30s", "--no-kubernetes"], secrets(api, config)
        )
        assert result.code == 1
        assert "alarms raised: NOSPACE on member " in result.last
        api.set_alarms([])
        assert (
            upgrader(
                ["apply", "--node", api.node_arg("valinor-1"), "--role", "controlplane", "--timeout", "30s", "--no-kubernetes"], secrets(api, config)
            ).code
            == 0
        )
        with pytest.raises(Exception, match="HTTP Error 400"):
            api.set_alarms([{"node": "valinor-9", "alarm": "NOSPACE"}])


def test_the_call_log_records_each_answer_and_its_code() -> None:
    ips = addresses(1)
    with talos_api(scenario([node("valinor-1", ips[0], "controlplane", NEW)], bootstrapped=False)) as api:
        # As `talosctl bootstrap` asks: one call each.
        assert api.talosctl_bootstrap("valinor-1") == "OK:"
        assert api.talosctl_bootstrap("valinor-1") == "AlreadyExists: etcd data directory is not empty"
        calls = api.calls("valinor-1")
        assert [(c["seq"], c["node"], c["method"], c["args"], c["code"]) for c in calls] == [
            (1, "valinor-1", "MachineService/Bootstrap", {"recoverEtcd": False}, "OK"),
            (2, "valinor-1", "MachineService/Bootstrap", {"recoverEtcd": False}, "AlreadyExists"),
        ]
        assert calls[0]["ms"] <= calls[1]["ms"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"version": "1.13"}, 'node "istari-1": version "1.13" is not vX.Y.Z'),
        ({"role": "etcd"}, 'node "istari-1": role "etcd" is not controlplane or worker'),
        (
            {"reboot": {"result": "sideways"}},
            'node "istari-1": reboot result "sideways" is not one of up, never, old-version, maintenance, not-ready',
        ),
        ({"schematic": "abc"}, 'node "istari-1": schematic "abc" is not an Image Factory schematic ID'),
        (
            {"hang": ["MachineService/Versions"]},
            'node "istari-1": hang: "MachineService/Versions" is not a method the stand-in serves (e.g. MachineService/Version)',
        ),
    ],
    ids=["version", "role", "outcome", "schematic", "hang"],
)
def test_a_bad_scenario_is_refused_with_its_reason(spec: dict[str, object], message: str) -> None:
    bad = scenario([{**node("istari-1", addresses(1)[0], "worker", NEW), **spec}])
    with pytest.raises(TalosAPIError, match="talos-api exited with 1") as raised, talos_api(bad):
        pass
    assert message in str(raised.value)


def test_a_kubernetes_ca_that_is_not_one_is_refused() -> None:
    bad = scenario([node("valinor-1", addresses(1)[0], "controlplane", NEW)], kubernetes_ca=("not a certificate", "nor a key"))
    with pytest.raises(TalosAPIError, match="talos-api exited with 1") as raised, talos_api(bad):
        pass
    assert "error: cluster: kubernetesCA: failed to parse PEM block" in str(raised.value)


def test_a_config_that_gives_the_node_another_address_moves_its_api_there_with_a_certificate_for_it() -> None:
    old, new = addresses(2)
    with talos_api(scenario([node("istari-1", old, "worker", NEW)])) as api:
        boot = api.state()["istari-1"]["bootId"]
        config = api.config("worker", installer(VANILLA, NEW), patches=link(address=new))
        args = ["apply", "--node", f"istari-1={new}", "--role", "worker", "--timeout", "30s", "--no-kubernetes"]
        result = upgrader(args, secrets(api, config), record={"node": "istari-1", "ip": old})
        assert result.code == 0, result.stderr
        # Applied without a reboot: the same boot, at the new address, no longer at the old one.
        assert (api.state()["istari-1"]["address"], api.state()["istari-1"]["bootId"]) == (f"{new}:{API_PORT}", boot)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((old, API_PORT), timeout=5).close()
        # Talos regenerates apid's certificate for the node's addresses: the new IP, signed by the OS CA.
        ctx = _admin_context(api)
        with _handshake(f"{new}:{API_PORT}", ctx) as tls:
            peer = tls.getpeercert()
            assert peer is not None
            assert peer["subjectAltName"] == (("IP Address", new),)


def test_a_reflashed_control_plane_removes_its_own_stale_member_when_it_joins_as_talos_does() -> None:
    ips = addresses(3)
    reflashed: dict[str, Any] = {"maintenance": True, "etcd": {"stale": True}, "install": {"downMs": 200}}
    nodes = [node(f"valinor-{i + 1}", ip, "controlplane", NEW, **(reflashed if i == 2 else {})) for i, ip in enumerate(ips)]
    with talos_api(scenario(nodes)) as api:
        stale = api.state()["valinor-3"]["etcdMemberId"]
        assert api.etcd()["members"] == ["valinor-1", "valinor-2", "valinor-3"]
        # Its old member is listed but down: the others' health checks see it.
        assert api.state()["valinor-3"]["etcdMember"] is True
        # No upgrader removal: Talos's own join (addMember) removes a member of its name, then adds itself.
        args = ["apply", "--node", api.node_arg("valinor-3"), "--role", "controlplane", "--timeout", "30s", "--no-kubernetes"]
        assert upgrader(args, secrets(api, api.config("controlplane", installer(VANILLA, NEW)))).code == 0
        deadline = time.monotonic() + 20
        while (s := api.state()["valinor-3"])["maintenance"] or not s["etcdMemberId"] or s["etcdMemberId"] == stale:
            assert time.monotonic() < deadline, s
            time.sleep(0.05)
        assert (s["etcdMemberId"] != stale, s["etcdJoinError"]) == (True, "")
        assert api.etcd()["members"] == ["valinor-1", "valinor-2", "valinor-3"]


def test_a_bootstrap_of_a_control_plane_still_pulling_etcd_starts_a_second_cluster_as_talos_does() -> None:
    ips = addresses(3)
    # Reflashed: maintenance mode, its old member still listed; once configured, etcd pulls its image, held there (a
    # test control) until the test releases it, which it never does.
    reflashed: dict[str, Any] = {"maintenance": True, "etcd": {"stale": True, "pullHeld": True}, "install": {"downMs": 200}}
    nodes = [node(f"valinor-{i + 1}", ip, "controlplane", NEW, **(reflashed if i == 0 else {})) for i, ip in enumerate(ips)]
    with talos_api(scenario(nodes)) as api:
        args = ["apply", "--node", api.node_arg("valinor-1"), "--role", "controlplane", "--timeout", "30s", "--no-kubernetes"]
        # The step waits for the machine to join once it handed the config over (a running cluster): stopped there.
        handed = upgrader_watched(args, secrets(api, api.config("controlplane", installer(VANILLA, NEW))), lambda line: "config handed over" in line)
        assert "config handed over" in handed.stderr, handed.stderr
        deadline = time.monotonic() + 20
        while not (s := api.state()["valinor-1"])["up"] or s["maintenance"]:
            assert time.monotonic() < deadline, s
            time.sleep(0.05)
        cluster = {"members": ["valinor-1", "valinor-2", "valinor-3"], "holders": ["valinor-2", "valinor-3"]}  # its old member, down
        assert api.etcd_clusters() == [cluster]
        # Talos checks only its own data directory, which is empty, and BootstrapEtcd stops the etcd still pulling.
        assert api.talosctl_bootstrap("valinor-1") == "OK:"
        assert api.etcd_clusters() == [cluster, {"members": ["valinor-1"], "holders": ["valinor-1"]}]
        assert api.talosctl_bootstrap("valinor-1") == "AlreadyExists: etcd data directory is not empty"
        # The pull the bootstrap stopped is held no more: nothing to release.
        with pytest.raises(urllib.error.HTTPError) as refused:
            api.release_etcd_pull("valinor-1")
        assert (refused.value.code, refused.value.read().decode()) == (409, "no held etcd image pull on valinor-1\n")
        # Its member list answers its own one-member cluster.
        result = upgrader(["bootstrap", "--node", api.node_arg("valinor-1"), "--timeout", "10s"], secrets(api))
        assert result.last == "upgrader: valinor-1: a cluster exists: valinor-1 answered etcd's member list (valinor-1): not bootstrapping"


def test_a_control_plane_cannot_join_etcd_without_a_leader() -> None:
    ips = addresses(2)
    reflashed: dict[str, Any] = {"maintenance": True, "etcd": {"stale": True}, "install": {"downMs": 200}}
    nodes = [node("valinor-1", ips[0], "controlplane", NEW), node("valinor-2", ips[1], "controlplane", NEW, **reflashed)]
    with talos_api(scenario(nodes)) as api:
        # Two members, one of them the wiped node's: no quorum, so etcd refuses the join. Talos keeps etcd Preparing and
        # asks again (until EtcdJoinTimeout), and its Boot sequence, which waits for etcd, has not ended: "booting".
        # The apply hands it its config (valinor-1's etcd ran: a bootstrapped cluster), then waits for it in vain.
        args = ["apply", "--node", api.node_arg("valinor-2"), "--role", "controlplane", "--timeout", "10s", "--no-kubernetes"]
        result = upgrader(args, secrets(api, api.config("controlplane", installer(VANILLA, NEW))))
        assert result.code == 1
        ip = api.ip("valinor-2")
        assert result.last == (
            "upgrader: FAILED: valinor-2: machine-status: timed out; last seen: booting, not ready: services: etcd not running "
            f"(etcd Preparing: error getting etcd member list: etcdserver: no leader); look with: talosctl -n {ip} get machinestatus; "
            f"talosctl -n {ip} service etcd"
        )
        s = api.state()["valinor-2"]
        assert (s["up"], s["maintenance"], s["stage"], s["etcdService"], s["etcdJoinError"]) == (
            True,
            False,
            "booting",
            "Preparing",
            "error getting etcd member list: etcdserver: no leader",
        )


def _until(api: TalosAPI, name: str, done: Any, what: str, seconds: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while not done(state := api.state()[name]):
        assert time.monotonic() < deadline, f"{what}: {state}"
        time.sleep(0.05)
    return state


def test_a_refused_join_keeps_etcd_preparing_then_it_gives_up_and_the_boot_timeout_reboots_the_machine() -> None:
    """Talos asks to join for EtcdJoinTimeout (30 minutes), keeping etcd Preparing; then PreFunc fails, the service is
    Failed and never restarted; the Boot sequence, which waits for etcd, times out at BootTimeout (70 minutes) and machined
    reboots the machine, whose etcd asks again. Scaled down here (joinTimeoutMs, bootTimeoutMs). Before, a refused join
    showed Failed at once, and stayed so."""
    ips = addresses(2)
    reflashed: dict[str, Any] = {"maintenance": True, "etcd": {"stale": True}, "install": {"downMs": 100}, "reboot": {"downMs": 100}}
    nodes = [node("valinor-1", ips[0], "controlplane", NEW), node("valinor-2", ips[1], "controlplane", NEW, **reflashed)]
    spec = scenario(nodes)
    spec["etcd"].update(joinTimeoutMs=1500, bootTimeoutMs=4000)
    with talos_api(spec) as api:
        args = ["apply", "--node", api.node_arg("valinor-2"), "--role", "controlplane", "--timeout", "30s", "--no-kubernetes"]
        handed = upgrader_watched(args, secrets(api, api.config("controlplane", installer(VANILLA, NEW))), lambda line: "config handed over" in line)
        assert "config handed over" in handed.stderr, handed.stderr
        # Two members, one of them the wiped node's: no leader, so the join is refused, and asked again.
        first = _until(api, "valinor-2", lambda s: s["up"] and not s["maintenance"], "valinor-2 to boot configured")
        no_leader = "error getting etcd member list: etcdserver: no leader"
        assert (first["stage"], first["etcdService"], first["etcdJoinError"]) == ("booting", "Preparing", no_leader)
        gave_up = _until(api, "valinor-2", lambda s: s["etcdService"] != "Preparing", "etcd to give up")
        assert (gave_up["bootId"], gave_up["stage"], gave_up["etcdService"], gave_up["etcdJoinError"]) == (first["bootId"], "booting", "Failed", "")
        # The boot times out: machined reboots it, and its etcd asks to join again.
        again = _until(api, "valinor-2", lambda s: s["up"] and s["bootId"] != first["bootId"], "the boot timeout's reboot")
        assert (again["stage"], again["etcdService"], again["etcdJoinError"]) == ("booting", "Preparing", no_leader)


# --- What a control plane hands out, and for how long --------------------------------------------------------


def _validity(pem: bytes) -> tuple[datetime.datetime, datetime.datetime]:
    """A PEM certificate's NotBefore and NotAfter."""
    out = subprocess.run(["openssl", "x509", "-noout", "-startdate", "-enddate"], input=pem, capture_output=True, check=True, timeout=60).stdout
    dates = dict(line.split("=", 1) for line in out.decode().splitlines())
    return tuple(datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(dates[k]), datetime.UTC) for k in ("notBefore", "notAfter"))  # type: ignore[return-value]


def _subject(pem: bytes) -> str:
    return (
        subprocess.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253"], input=pem, capture_output=True, check=True, timeout=60)
        .stdout.decode()
        .strip()
    )


@pytest.mark.kube
def test_a_control_plane_hands_out_talos_s_own_admin_kubeconfig_which_signs_in(kube_talos: Cluster, tmp_path: Path) -> None:
    ips = addresses(2)
    spec = scenario(
        [node("valinor-1", ips[0], "controlplane", NEW), node("istari-1", ips[1], "worker", NEW)],
        endpoint=kube_talos.server,
        kubernetes_ca=kube_talos.ca,
    )
    with talos_api(spec) as api:
        text = api.kubeconfig("valinor-1")
        config = yaml.safe_load(text)
        # Talos's names (pkg/kubeconfig/generate.go:103-128 at v1.12.4 and v1.13.0), laid out as clientcmd.Write lays it out: every certificate embedded.
        assert {k: v for k, v in config.items() if k not in ("clusters", "users")} == {
            "apiVersion": "v1",
            "kind": "Config",
            "contexts": [{"name": "admin@arda", "context": {"cluster": "arda", "namespace": "default", "user": "admin@arda"}}],
            "current-context": "admin@arda",
        }
        assert [(c["name"], sorted(c["cluster"])) for c in config["clusters"]] == [("arda", ["certificate-authority-data", "server"])]
        assert [(u["name"], sorted(u["user"])) for u in config["users"]] == [("admin@arda", ["client-certificate-data", "client-key-data"])]
        # The accepted CAs then the issuing one: the cluster's, the API server's client CA.
        assert base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode() == kube_talos.ca[0]

        # The Talos provider stores it (Create) and decodes its certificate on every plan (ModifyPlan) without an error,
        # and finds nothing to renew for a year.
        stored = talos_provider.stored_configuration(text)
        assert stored.host == kube_talos.server
        now = datetime.datetime.now(datetime.UTC)
        assert not talos_provider.kubeconfig_needs_renewal(stored.client_certificate, now)
        crt = base64.b64decode(stored.client_certificate)
        assert _subject(crt) == "subject=CN=admin,O=system:masters"

        # client-go itself (Helm's) loads it and signs in with it; the API server knows it as Talos's admin.
        path = tmp_path / "kubeconfig"
        path.write_text(text)
        env = {**os.environ, **{f"HELM_{kind}_HOME": str(tmp_path / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}}
        helm = [str(gotools.build("helm")), "list", "--kubeconfig", str(path), "--namespace", "default", "--output", "json"]
        listed = subprocess.run(helm, capture_output=True, text=True, timeout=60, env=env)
        assert (listed.returncode, listed.stdout.strip()) == (0, "[]"), listed.stderr
        (tmp_path / "admin.crt").write_bytes(crt)
        (tmp_path / "admin.key").write_bytes(base64.b64decode(stored.client_key))
        ca = tmp_path / "ca.crt"
        ca.write_bytes(base64.b64decode(stored.ca_certificate))
        client = KubeClient(stored.host, ca, tmp_path / "admin.crt", tmp_path / "admin.key")
        review = client.checked(
            "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        )
        client.close()
        # This very certificate (the API server names an x509 credential by its DER's SHA-256).
        der = hashlib.sha256(ssl.PEM_cert_to_DER_cert(crt.decode())).hexdigest()
        assert review["status"]["userInfo"] == {
            "username": "admin",
            "groups": ["system:masters", "system:authenticated"],
            "extra": {"authentication.kubernetes.io/credential-id": [f"X509SHA256={der}"]},
        }

        # A worker has none to give (Talos: "kubeconfig is only available on control plane nodes").
        with pytest.raises(TalosAPIError, match="kubeconfig is only available on control plane nodes"):
            api.kubeconfig("istari-1")


def test_the_providers_decode_refuses_a_kubeconfig_that_names_certificate_files() -> None:
    # What the stand-in handed out before: the control plane's kubeconfig, naming files. The provider stores an empty
    # certificate and every plan after fails ("failed to decode PEM block"), as the real engine run did.
    named = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority": "/pki/ca.crt"}}],
            "users": [{"name": "u", "user": {"client-certificate": "/pki/admin.crt", "client-key": "/pki/admin.key"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
    )
    stored = talos_provider.stored_configuration(named)
    assert stored.client_certificate == ""
    with pytest.raises(talos_provider.ProviderError, match=r"^failed to decode kubernetes client certificate: failed to decode PEM block$"):
        talos_provider.kubeconfig_needs_renewal(stored.client_certificate, datetime.datetime.now(datetime.UTC))


@pytest.mark.kube
def test_every_certificate_the_stand_ins_hand_a_client_outlives_the_providers_renewal_window(kube_talos: Cluster) -> None:
    """Each certificate a client keeps (in a kubeconfig or a talosconfig) or checks on every connection lives as long as a
    real cluster's, so no run against the stand-ins is inside the Talos provider's renewal windows: 720 h for a
    kubeconfig (talos_cluster_kubeconfig_resource.go:154), a month for the talosconfig (talos_machine_secrets_resource.go:369)."""
    now = datetime.datetime.now(datetime.UTC)
    kept: dict[str, bytes] = {}
    for path in sorted(kube_talos.root.glob("*.kubeconfig")):  # the admin's, and each component's
        config = yaml.safe_load(path.read_text())
        kept[f"{path.name} CA"] = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
        kept[f"{path.name} client"] = base64.b64decode(config["users"][0]["user"]["client-certificate-data"])
    host, port = kube_talos.server.removeprefix("https://").rsplit(":", 1)
    kept["kube-apiserver serving"] = ssl.get_server_certificate((host, int(port))).encode()
    ips = addresses(1)
    with talos_api(scenario([node("valinor-1", ips[0], "controlplane", NEW)], endpoint=kube_talos.server, kubernetes_ca=kube_talos.ca)) as api:
        talosconfig = yaml.safe_load(api.talosconfig_text())
        context = talosconfig["contexts"][talosconfig["context"]]
        kept["talosconfig CA"], kept["talosconfig client"] = base64.b64decode(context["ca"]), base64.b64decode(context["crt"])
        kubeconfig = talos_provider.stored_configuration(api.kubeconfig("valinor-1"))
        kept["Talos kubeconfig CA"] = base64.b64decode(kubeconfig.ca_certificate)
        kept["Talos kubeconfig client"] = base64.b64decode(kubeconfig.client_certificate)
        apid = _admin_context(api)
        with _handshake(api.addresses["valinor-1"], apid) as tls:
            served = ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True) or b"").encode()

    day, year = datetime.timedelta(days=1), datetime.timedelta(days=365)
    lifetimes = {what: _validity(pem)[1] - _validity(pem)[0] for what, pem in kept.items()}
    components = [p.name for p in sorted(kube_talos.root.glob("*.kubeconfig"))]
    assert components == ["admin.kubeconfig", "kube-controller-manager.kubeconfig", "kube-scheduler.kubeconfig", "kwok.kubeconfig"]
    assert lifetimes == {
        # The control plane: its CA ten years, every other certificate a year (tools/kube_cluster.py, CA_DAYS and LEAF_DAYS).
        **{f"{name} CA": 3650 * day for name in components},
        **{f"{name} client": year for name in components},
        "kube-apiserver serving": year,
        # Talos: its CAs ten years (CAValidityTime), the talosconfig's certificate a year (TalosAPIDefaultCertificateValidityDuration),
        # the admin kubeconfig's a year and the 10 s of clock skew it allows before now (generate.go:76).
        "talosconfig CA": 3650 * day,
        "talosconfig client": year,
        "Talos kubeconfig CA": 3650 * day,
        "Talos kubeconfig client": year + datetime.timedelta(seconds=10),
    }
    window = max(talos_provider.KUBECONFIG_RENEWAL, talos_provider.add_month(now) - now)
    assert {what: _validity(pem)[1] > now + window for what, pem in kept.items()} == dict.fromkeys(kept, True)
    assert not talos_provider.kubeconfig_needs_renewal(kubeconfig.client_certificate, now)
    assert not talos_provider.talos_client_needs_renewal(context["crt"], now)
    # apid's own serving certificate is inside the window on purpose: Talos issues it for 24 h and renews it every 12 h
    # (internal/app/machined/pkg/controllers/secrets/api.go:182 and 291 at v1.12.4: x509.DefaultCertificateValidityDuration),
    # and no client keeps it. (Its NotBefore is read from the clock just after its NotAfter: a second either way.)
    assert abs(_validity(served)[1] - _validity(served)[0] - day) <= datetime.timedelta(seconds=1)


def _resource(api: TalosAPI, node_name: str, *args: str, talosconfig: bool = False) -> str:
    cmd = [str(api.binary), "resource", f"--node={api.addresses[node_name]}", *args] + ([f"--talosconfig={api.talosconfig}"] if talosconfig else [])
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_machine_in_maintenance_mode_tells_anyone_what_talos_does_not_mark_sensitive_and_refuses_the_rest() -> None:
    """The resource API's access policy (hardware.go, accessPolicy: internal/app/resources/access.go:25-65), asked as
    `talosctl get --insecure` asks, of a Talos 1.12 machine, whose maintenance service has no authorizer, and a 1.13
    one, whose apid gives the reader role and machined's authorizer refuses a reader's write first."""
    disks = {
        "disks": [
            {"id": "sda", "size": 10**11, "model": "M", "serial": "S", "transport": "sata"},
            {"id": "nvme0n1", "size": 10**12, "transport": "nvme"},
        ]
    }
    a, b, c = addresses(3)
    spec = scenario(
        [
            node("old", a, "worker", "v1.12.4", maintenance=True, hardware=disks),
            node("new", b, "worker", NEW, maintenance=True, hardware=disks),
            node("configured", c, "worker", "v1.12.4"),
        ]
    )
    with talos_api(spec) as api:
        # machinery's COSI client hands a Create's error back as text (its code Unknown, the node's own code in it).
        refused = "Unknown: rpc error: code = PermissionDenied desc = "
        for name, write in (("old", refused + "write access is not allowed"), ("new", refused + "not authorized")):
            assert _resource(api, name, "--type=Disks.block.talos.dev") == "OK 2", name
            assert (
                _resource(api, name, "--verb=get", "--type=SystemInformations.hardware.talos.dev", "--namespace=hardware", "--id=systeminformation")
                == "OK 1"
            )
            assert _resource(api, name, "--type=LinkStatuses.net.talos.dev", "--namespace=network") == "OK 2"
            assert _resource(api, name, "--type=MachineConfigs.config.talos.dev", "--namespace=config") == "PermissionDenied: not authorized"
            assert _resource(api, name, "--verb=create", "--type=Disks.block.talos.dev", "--id=sdz") == write, name
            assert _resource(api, name, "--type=Foos.talos.dev") == 'PermissionDenied: resource type "Foos.talos.dev" is not supported'
            assert _resource(api, name, "--type=Disks.block.talos.dev", "--namespace=nope") == 'PermissionDenied: namespace "nope" is not supported'
        # The admin reads the sensitive machine config of a configured node, and still writes nothing.
        assert _resource(api, "configured", "--type=MachineConfigs.config.talos.dev", "--namespace=config", talosconfig=True).startswith("OK ")
        assert _resource(api, "configured", "--verb=create", "--type=Disks.block.talos.dev", "--id=sdz", talosconfig=True) == (
            refused + "write access is not allowed"
        )


def test_a_machine_in_maintenance_mode_lets_anyone_wipe_its_disks_as_talos_does() -> None:
    """Review 1 HIGH 3: BlockDeviceWipe, which the maintenance service registers with no authorizer (Talos 1.12:
    internal/app/maintenance/server.go:74-79 at v1.12.4) and which a 1.13 machine lets the reader call until it is
    configured (machined.go:122-127, storaged/server.go:102-110 at v1.13.0): anyone on the segment can wipe any disk
    of a machine waiting to be discovered, which docs/day2.md says. A configured machine lets only its admin."""
    disks = {"disks": [{"id": "sda", "size": 10**11, "model": "M", "serial": "S", "transport": "sata",
                        "partitions": [{"label": "", "filesystem": "ntfs", "size": 10**10}]},
                       {"id": "sr0", "size": 10**9, "transport": "sata", "cdrom": True}],
             # A second NIC (review 1 MEDIUM 5: a machine found by either): one more physical LinkStatus.
             "links": [{"id": "enp2s0", "mac": "02:00:5e:00:0d:02", "up": True, "speedMbps": 1000}]}  # fmt: skip
    a, b, c = addresses(3)
    spec = scenario(
        [
            node("old", a, "worker", "v1.12.4", maintenance=True, hardware=disks),
            node("new", b, "worker", NEW, maintenance=True, hardware=disks),
            node("configured", c, "worker", "v1.12.4", hardware=disks),
        ]
    )
    volumes = ("--type=DiscoveredVolumes.block.talos.dev",)
    with talos_api(spec) as api:
        for name in ("old", "new"):
            assert _resource(api, name, "--type=LinkStatuses.net.talos.dev", "--namespace=network") == "OK 3", name  # lo, two NICs
            assert _resource(api, name, *volumes) == "OK 3", name  # sda, its ntfs partition, sr0
            assert _resource(api, name, "--verb=wipe", "--id=sdz") == 'NotFound: blockdevice "sdz" not found'
            assert _resource(api, name, "--verb=wipe", "--id=sr0") == 'FailedPrecondition: blockdevice "sr0" is a CD-ROM'
            assert _resource(api, name, "--verb=wipe", "--id=sda") == "OK 0", name  # no certificate, no role: wiped
            assert _resource(api, name, *volumes) == "OK 2", name  # its partition is gone
        assert _resource(api, "configured", "--verb=wipe", "--id=sda", talosconfig=True) == "OK 0"


# --- A control plane's own kube-apiserver (tools/talos-api/apiserver.go) --------------------------------------------


def _kube_api_context(api: TalosAPI, name: str) -> ssl.SSLContext:
    """TLS as a client of a node's own API server speaks it with the admin kubeconfig the node hands out (Talos's): its
    client certificate, and the Kubernetes CA to check the server's against, for the name the client dials (check_hostname)."""
    user = yaml.safe_load(api.kubeconfig(name))
    cluster, creds = user["clusters"][0]["cluster"], user["users"][0]["user"]
    ca, crt, key = api.dir / "k8s-ca.crt", api.dir / "k8s-admin.crt", api.dir / "k8s-admin.key"
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    crt.write_bytes(base64.b64decode(creds["client-certificate-data"]))
    key.write_bytes(base64.b64decode(creds["client-key-data"]).replace(b"ED25519 PRIVATE KEY", b"PRIVATE KEY"))
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(crt), str(key))
    return ctx


def _readyz(ip: str, ctx: ssl.SSLContext, server_hostname: str) -> tuple[str, dict[str, Any]]:
    """One GET /readyz from the node's API server at its address and local port (6443), its certificate checked for
    `server_hostname`, as the upgrader asks it (upgrader/internal/kube/kube.go, ReadyzAt): the status line and body, and the
    certificate it served."""
    with socket.create_connection((ip, 6443), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
        peer = tls.getpeercert()
        tls.sendall(b"GET /readyz HTTP/1.1\r\nHost: " + server_hostname.encode() + b"\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    head, _, body = answer.decode().partition("\r\n\r\n")
    return f"{head.splitlines()[0] if head else ''} {body}".strip(), peer or {}


def _answers(api: TalosAPI, ip: str, ctx: ssl.SSLContext, server_hostname: str) -> tuple[str, dict[str, Any]]:
    """The node's API server's first answer to /readyz, waiting (10 s at most) for it to run its pod: until then it takes
    the connection and closes it without a word (apiserver.go, serveAPI). Connection refused: nothing listens."""
    deadline = time.monotonic() + 10
    while True:
        try:
            found = _readyz(ip, ctx, server_hostname)
            if found[0]:
                return found
            last = "closed without an answer"
        except OSError as e:
            last = str(e)
        assert time.monotonic() < deadline, f"the API server at {ip}:6443 never answered: {last}"
        time.sleep(0.05)


def test_a_control_planes_api_server_certificate_carries_the_names_talos_gives_it() -> None:
    """Talos's KubernetesCertSANsController (secrets/kubernetes_cert_sans.go:118-143 at v1.13.0): the cluster endpoint's host
    (the VIP clients reach the API by, which the upgrader checks each API server's certificate for), the in-cluster names, the
    hostname, the kubernetes Service's IP, the node's addresses and 127.0.0.1, sorted (line 143), so the endpoint is among them,
    not first. Before, the endpoint was missing and a check for the VIP failed against every control plane."""
    ips, vip = addresses(1), "10.20.0.5"
    with talos_api(scenario([node("valinor-1", ips[0], "controlplane", NEW)], endpoint=f"https://{vip}:6443")) as api:
        answer, peer = _answers(api, ips[0], _kube_api_context(api, "valinor-1"), server_hostname=vip)
        assert answer == "HTTP/1.1 200 OK ok"
        names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", "valinor-1"]
        # The IPs sorted as Talos sorts them (netip.Addr.Compare); 10.96.0.1: the first address of the default service subnet.
        addrs = sorted([vip, "10.96.0.1", "127.0.0.1", ips[0]], key=lambda a: tuple(int(p) for p in a.split(".")))
        assert peer["subjectAltName"] == (*(("DNS", n) for n in names), *(("IP Address", a) for a in addrs))


def test_a_power_cycle_leaves_no_port_of_the_boot_before_bound() -> None:
    """Each boot's API server listens until the boot ends, and a boot back at once (a power cut of no length) binds its port.
    Before, the old boot's listener was closed by a goroutine that looked every 50 ms: a boot back within that found the port
    bound ("bind: address already in use"), and had no API server until its next reboot."""
    ips = addresses(1)
    with talos_api(scenario([node("valinor-1", ips[0], "controlplane", NEW)])) as api:
        ctx = _kube_api_context(api, "valinor-1")
        assert _answers(api, ips[0], ctx, ips[0])[0] == "HTTP/1.1 200 OK ok"
        for _ in range(3):
            before = api.state()["valinor-1"]["bootId"]
            api.crash("valinor-1", down_ms=0)
            deadline = time.monotonic() + 10
            while not (api.state()["valinor-1"]["up"] and api.state()["valinor-1"]["bootId"] != before):
                assert time.monotonic() < deadline, "the node never came back"
                time.sleep(0.05)
            assert _answers(api, ips[0], ctx, ips[0])[0] == "HTTP/1.1 200 OK ok"
        assert "address already in use" not in (api.dir / "talos-api.log").read_text()


def test_a_boot_ended_before_its_api_server_served_leaves_its_port_free() -> None:
    """stopAPIServer closes the boot's listener itself. http.Server.Close closes only the listeners Serve has tracked, and Serve
    tracks its listener in its own goroutine (Go 1.26 net/http/server.go:3411-3417): a boot that ended before that goroutine ran
    left the listener to it, so a boot back at once found the port bound. The test hook apiServerServeHeld holds the first
    boot's serve goroutine until the next boot has tried to listen: that order, every time. Before, the second boot logged
    "bind: address already in use" and had no API server."""
    ips = addresses(1)
    with talos_api(scenario([node("valinor-1", ips[0], "controlplane", NEW, apiServerServeHeld=True)])) as api:
        before = api.state()["valinor-1"]["bootId"]
        api.crash("valinor-1", down_ms=0)
        _until(api, "valinor-1", lambda s: s["up"] and s["bootId"] != before, "the boot after the power cycle")
        assert _answers(api, ips[0], _kube_api_context(api, "valinor-1"), ips[0])[0] == "HTTP/1.1 200 OK ok"
        assert "address already in use" not in (api.dir / "talos-api.log").read_text()


# --- The Node a kubelet registers, and Talos's labels and taints on it (tools/talos-api/noderegister.go) --------------


def _labels(cluster: Cluster, name: str) -> dict[str, str]:
    found = cluster.client.get("v1", "Node", name)
    labels: dict[str, str] = (found or {}).get("metadata", {}).get("labels") or {}
    return labels


@pytest.mark.kube
def test_a_kubelet_registers_its_node_and_talos_gives_it_the_configs_labels_and_taints(kube_talos: Cluster) -> None:
    """No test makes the Nodes: each kubelet registers its own as Kubernetes v1.35.1's does (kubelet_node_status.go:301-365,
    initialNode), a control plane's with the NoSchedule taint Talos has it register with (kubelet_spec.go:327-342 at v1.13.0);
    then Talos applies the config's labels and taints, owning them (node_apply.go), a control plane's as admin, a worker's with
    its kubelet's credentials. Before, a kubelet only patched the status of a Node a test had made."""
    cp, worker = unique("valinor"), unique("istari")
    ips = addresses(2)
    spec = scenario(
        [node(cp, ips[0], "controlplane", NEW), node(worker, ips[1], "worker", NEW)],
        endpoint=kube_talos.server,
        kubernetes_ca=kube_talos.ca,
        kubelet_poll_ms=3_600_000,
    )
    role = "node-role.kubernetes.io/control-plane"
    with talos_api(spec) as api:
        kube_talos.wait_for_nodes([cp, worker])
        kube_talos.wait_for("Talos's labels on the control plane", lambda: _labels(kube_talos, cp).get(role) == "")
        boots = {name: api.state()[name]["bootId"] for name in (cp, worker)}
        found: dict[str, dict[str, Any]] = {}
        for name, ip in ((cp, ips[0]), (worker, ips[1])):
            n = kube_talos.client.get("v1", "Node", name)
            assert n is not None
            found[name] = n
            info = n["status"]["nodeInfo"]
            assert (info["kubeletVersion"], info["bootID"], info["osImage"], info["operatingSystem"], info["architecture"]) == (
                "v1.35.1",
                boots[name],
                f"Talos ({NEW})",
                "linux",
                "amd64",
            )
            assert n["status"]["addresses"] == [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]
            assert n["metadata"]["annotations"]["volumes.kubernetes.io/controller-managed-attach-detach"] == "true"
        kubelet = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}
        # A control plane's generated config labels it out of external load balancers (machinery v1.13.0 config/generate/
        # init.go:94, machine.nodeLabels); Talos adds its role.
        lb = "node.kubernetes.io/exclude-from-external-load-balancers"
        assert found[cp]["metadata"]["labels"] == {**kubelet, "kubernetes.io/hostname": cp, role: "", lb: ""}
        assert found[cp]["spec"]["taints"] == [{"key": role, "effect": "NoSchedule"}]
        owned = {k: v for k, v in found[cp]["metadata"]["annotations"].items() if k.startswith("talos.dev/")}
        assert owned == {"talos.dev/owned-labels": f'["{role}","{lb}"]', "talos.dev/owned-taints": f'["{role}"]'}
        assert found[worker]["metadata"]["labels"] == {**kubelet, "kubernetes.io/hostname": worker}
        assert "taints" not in found[worker]["spec"]
        assert not {k for k in found[worker]["metadata"]["annotations"] if k.startswith("talos.dev/")}

        # machine.nodeLabels applied without a reboot: Talos labels the worker's Node (a label a node may set on itself).
        labelled = api.config("worker", installer(VANILLA, NEW), patches=[json.dumps({"machine": {"nodeLabels": {"iluvatar.dev/disk": "ssd"}}})])
        result = upgrader(
            ["apply", "--node", api.node_arg(worker), "--role", "worker", "--timeout", "30s", "--no-kubernetes"], secrets(api, labelled)
        )
        assert result.code == 0, result.stderr
        kube_talos.wait_for("the worker's new label", lambda: _labels(kube_talos, worker).get("iluvatar.dev/disk") == "ssd")
        again = kube_talos.client.get("v1", "Node", worker)
        assert again is not None
        assert again["metadata"]["annotations"]["talos.dev/owned-labels"] == '["iluvatar.dev/disk"]'
