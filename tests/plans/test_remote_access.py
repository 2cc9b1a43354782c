"""The remote access plan: exactly what is advertised, allowed and split, for the homelab in each flavour, and for any
stack (Hypothesis): every destination the policy allows is advertised, and nothing outside the homelab's networks is."""

from __future__ import annotations

import json
import os
import subprocess
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from plans import remote_access as plan
from plans import talos
from plans.k3s import server_url
from stacks import parse_stack
from stacks.model import StackConfig
from tests.remote_stacks import HEADSCALE, TAILSCALE, remote_stack
from tests.strategies import raw_stacks
from tools import gotools

ROUTES = ["192.168.0.10/32", "192.168.0.14/32", "192.168.0.16/32", "192.168.0.20/32", "192.168.0.238/32"]


@pytest.fixture(scope="module")
def headscale() -> StackConfig:
    return remote_stack(HEADSCALE)


@pytest.fixture(scope="module")
def tailscale() -> StackConfig:
    return remote_stack(TAILSCALE)


def test_the_router_advertises_envoy_internal_the_resolver_the_apis_and_the_front_door(headscale: StackConfig) -> None:
    assert {k: str(v) for k, v in plan.targets(headscale).items()} == {
        "envoy-internal": "192.168.0.238",
        "resolver": "192.168.0.14",
        "arda-api": "192.168.0.20",
        "ainur-api": "192.168.0.10",
        "front-door": "192.168.0.16",
    }
    assert [str(r) for r in plan.routes(headscale)] == ROUTES


def test_the_signin_kubeconfigs_servers_are_advertised(headscale: StackConfig) -> None:
    # What keeps the exported kubeconfigs unchanged: their servers (and Dex's front door) are inside the routes.
    routed = plan.routes(headscale)
    for url in (talos.cluster_endpoint(headscale), server_url(headscale)):
        host = IPv4Address(url.removeprefix("https://").split(":")[0])
        assert any(host in r for r in routed), url
    assert headscale.identity is not None and any(headscale.identity.ip in r for r in routed)


def test_the_stacks_own_routes_are_advertised_after_the_targets() -> None:
    stack = remote_stack({**HEADSCALE, "routes": ["192.168.20.0/24", "192.168.0.0/25"]})
    assert [str(r) for r in plan.routes(stack)] == ["192.168.0.0/25", *ROUTES, "192.168.20.0/24"]


def test_the_policy_of_the_headscale_homelab(headscale: StackConfig) -> None:
    assert plan.policy(headscale) == {
        "groups": {"group:example-homelab-admins": ["alice@"], "group:example-family": ["bob@"]},
        "tagOwners": {"tag:iluvatar-router": []},
        "autoApprovers": {"routes": {r: ["tag:iluvatar-router"] for r in ROUTES}},
        "acls": [
            {
                "action": "accept",
                "src": ["group:example-homelab-admins"],
                "dst": ["192.168.0.238:80,443", "192.168.0.14:53", "192.168.0.16:80,443", "192.168.0.20:6443", "192.168.0.10:6443"],
            },
            {"action": "accept", "src": ["group:example-family"], "dst": ["192.168.0.238:80,443", "192.168.0.14:53", "192.168.0.16:80,443"]},
        ],
    }


def test_tailscales_policy_lets_the_operator_own_the_routers_tag(tailscale: StackConfig) -> None:
    policy = plan.policy(tailscale)
    assert policy["tagOwners"] == {"tag:k8s-operator": [], "tag:iluvatar-router": ["tag:k8s-operator"]}
    assert policy["groups"] == {"group:example-homelab-admins": ["alice@example.org"], "group:example-family": ["bob@example.org"]}


def test_routes_reach_every_port_of_the_stacks_own_routes() -> None:
    access = [{"group": "example:homelab-admins", "members": ["alice@"], "reach": ["routes", "apps"]}]
    # A part of the LAN that holds none of the clusters' own addresses: this group does not reach kubernetes.
    stack = remote_stack({**HEADSCALE, "routes": ["192.168.0.32/27"], "access": access})
    assert plan.policy(stack)["acls"] == [
        {
            "action": "accept",
            "src": ["group:example-homelab-admins"],
            "dst": ["192.168.0.32/27:*", "192.168.0.238:80,443", "192.168.0.14:53", "192.168.0.16:80,443"],
        }
    ]


def test_the_policy_file_is_hujson_with_where_it_comes_from(headscale: StackConfig) -> None:
    text = plan.policy_text(headscale)
    assert text.startswith("// The tailnet's policy, written by Iluvatar from iluvatar:remoteAccess")
    assert text.count("\n//") == 0 and '"acls"' in text


def test_split_dns_sends_the_internal_zone_and_internal_app_hosts_to_the_ainur(headscale: StackConfig) -> None:
    # jellyfin.example.com is internal (LAN only) under the public zone; www.example.com is external: its public answer stays.
    assert plan.split_dns(headscale) == {"iluvatar.home.arpa": ["192.168.0.14"], "jellyfin.example.com": ["192.168.0.14"]}


def test_the_operators_values(tailscale: StackConfig) -> None:
    assert plan.operator_values(tailscale, "kOPERATOR1") == {
        "installCRDs": True,
        "operatorConfig": {
            "defaultTags": ["tag:k8s-operator"],
            "podAnnotations": {"iluvatar.dev/oauth-client": "kOPERATOR1"},
            "hostname": "arda-tailscale-operator",
            "image": {"tag": "v1.102.3", "pullPolicy": "IfNotPresent"},
            "logging": "info",
        },
        "proxyConfig": {"image": {"tag": "v1.102.3"}, "defaultTags": "tag:iluvatar-router"},
        "apiServerProxyConfig": {"mode": "false"},
        "ingressClass": {"enabled": False},
    }


def test_the_connector_is_two_tagged_subnet_routers(tailscale: StackConfig) -> None:
    assert plan.connector(tailscale) == {
        "apiVersion": "tailscale.com/v1alpha1",
        "kind": "Connector",
        "metadata": {
            "name": "homelab",
            "labels": {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "iluvatar"},
            # `up` waits for the operator's own word that the routers run.
            "annotations": {"pulumi.com/waitFor": "condition=ConnectorReady", "pulumi.com/timeoutSeconds": "600"},
        },
        "spec": {"hostnamePrefix": "iluvatar-router", "replicas": 2, "tags": ["tag:iluvatar-router"], "subnetRouter": {"advertiseRoutes": ROUTES}},
    }


def test_headscales_router_environment(headscale: StackConfig) -> None:
    assert plan.router_env(headscale) == [
        {"name": "TS_KUBE_SECRET", "value": "subnet-router-state-7b6761d8"},
        {"name": "TS_USERSPACE", "value": "false"},
        {"name": "TS_AUTH_ONCE", "value": "true"},
        {"name": "TS_ROUTES", "value": ",".join(ROUTES)},
        {"name": "TS_HOSTNAME", "value": "iluvatar-router"},
        {"name": "TS_EXTRA_ARGS", "value": "--login-server=https://vpn.example.com"},
        {"name": "TS_AUTHKEY", "valueFrom": {"secretKeyRef": {"name": "subnet-router-key", "key": "TS_AUTHKEY", "optional": True}}},
        {"name": "TS_ENABLE_HEALTH_CHECK", "value": "true"},
        {"name": "TS_LOCAL_ADDR_PORT", "value": "0.0.0.0:9002"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
    ]


def test_the_router_reaches_headscale_on_the_lan_by_its_public_name(headscale: StackConfig) -> None:
    deployment = next(m for m in plan.router_manifests(headscale) if m["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["hostAliases"] == [{"ip": "192.168.0.17", "hostnames": ["vpn.example.com"]}]


def test_headscales_config(headscale: StackConfig) -> None:
    config = plan.headscale_config(headscale)
    assert (config["server_url"], config["listen_addr"], config["tls_letsencrypt_hostname"], config["tls_letsencrypt_challenge_type"]) == (
        "https://vpn.example.com",
        "0.0.0.0:8443",
        "vpn.example.com",
        "TLS-ALPN-01",
    )
    assert config["dns"] == {
        "magic_dns": True,
        "base_domain": "tailnet.iluvatar.home.arpa",
        "override_local_dns": False,
        "nameservers": {"global": [], "split": {"iluvatar.home.arpa": ["192.168.0.14"], "jellyfin.example.com": ["192.168.0.14"]}},
        "search_domains": [],
        "extra_records": [],
    }
    assert config["prefixes"] == {"v4": "100.64.0.0/10", "v6": "fd7a:115c:a1e0::/48", "allocation": "sequential"}
    assert config["policy"] == {"mode": "file", "path": "/etc/headscale/policy.hujson"}
    assert config["disable_check_updates"] is True
    # Tailscale's public relays by default: no UDP port to forward, no DERP of its own.
    assert config["derp"]["server"]["enabled"] is False and config["derp"]["urls"] == ["https://controlplane.tailscale.com/derpmap/default"]


def test_embedded_derp_serves_stun_and_uses_no_public_relay() -> None:
    stack = remote_stack({**HEADSCALE, "headscale": {**HEADSCALE["headscale"], "derp": "embedded"}})
    config = plan.headscale_config(stack)
    assert config["derp"]["server"]["enabled"] is True and config["derp"]["urls"] == []
    service = next(m for m in plan.headscale_manifests(stack) if m["kind"] == "Service")
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP", "nodePort": 0},
        {"name": "stun", "port": 3478, "targetPort": "stun", "protocol": "UDP", "nodePort": 0},
    ]


def test_every_pod_of_the_remote_access_namespace_admits_nothing_its_own_policy_does_not(headscale: StackConfig) -> None:
    """The namespace's default deny: the subnet router (its health listener on every address) admits nothing, and a pod
    added later without a policy is closed, not open."""
    manifests = {(m["kind"], m["metadata"]["name"]): m for m in plan.headscale_manifests(headscale)}
    assert manifests[("NetworkPolicy", "default-deny-ingress")] == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny-ingress", "namespace": "remote-access"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
    assert [m["kind"] for m in plan.router_manifests(headscale) if m["kind"] == "NetworkPolicy"] == []


def test_headscales_debug_listener_is_on_its_loopback_and_its_pod_admits_only_the_devices_ports(headscale: StackConfig) -> None:
    # Its metrics listener is its debug server (the config, the policy, the nodes): on 0.0.0.0 any pod or Pi read it.
    assert plan.headscale_config(headscale)["metrics_listen_addr"] == "127.0.0.1:9090"
    manifests = {(m["kind"], m["metadata"]["name"]): m for m in plan.headscale_manifests(headscale)}
    pod = manifests[("Deployment", "headscale")]["spec"]["template"]["spec"]
    assert pod["containers"][0]["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"}]
    assert manifests[("NetworkPolicy", "headscale")]["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "headscale"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"ports": [{"port": 8443, "protocol": "TCP"}]}],
    }
    embedded = remote_stack({**HEADSCALE, "headscale": {**HEADSCALE["headscale"], "derp": "embedded"}})
    policy = next(m for m in plan.headscale_manifests(embedded) if m["kind"] == "NetworkPolicy" and m["metadata"]["name"] == "headscale")
    assert policy["spec"]["ingress"] == [{"ports": [{"port": 8443, "protocol": "TCP"}, {"port": 3478, "protocol": "UDP"}]}]


def test_headscale_holds_its_lan_address_and_keeps_its_state(headscale: StackConfig) -> None:
    manifests = {(m["kind"], m["metadata"]["name"]): m for m in plan.headscale_manifests(headscale)}
    service = manifests[("Service", "headscale")]
    assert service["metadata"]["annotations"] == {"kube-vip.io/loadbalancerIPs": "192.168.0.17"}
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP", "nodePort": 0}]
    # kube-vip's address alone: no NodePort on every Pi's own address (plans.netpol).
    assert service["spec"]["allocateLoadBalancerNodePorts"] is False
    # Longhorn runs on the homelab's Pis, its encrypted class: Headscale can move to any of them with its state.
    assert manifests[("PersistentVolumeClaim", "headscale-state")]["spec"]["storageClassName"] == "longhorn-encrypted"
    assert manifests[("Deployment", "headscale")]["spec"]["strategy"] == {"type": "Recreate"}


def test_headscales_stun_sees_the_devices_own_addresses() -> None:
    # externalTrafficPolicy Local: kube-proxy does not masquerade, so STUN answers each device with its public address.
    stack = remote_stack({**HEADSCALE, "headscale": {**HEADSCALE["headscale"], "derp": "embedded"}})
    service = next(m for m in plan.headscale_manifests(stack) if m["kind"] == "Service")
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert {"name": "stun", "port": 3478, "targetPort": "stun", "protocol": "UDP", "nodePort": 0} in service["spec"]["ports"]


def test_health_checks_see_the_tailnet(headscale: StackConfig) -> None:
    # Headscale: ready when its CLI's health call answers, not when a port accepts; the router: ready once it has a
    # tailnet address (containerboot's /healthz), so Pulumi's await of a router that never logs in fails.
    headscale_pod = next(m for m in plan.headscale_manifests(headscale) if m["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert headscale_pod["containers"][0]["readinessProbe"] == {
        "exec": {"command": ["headscale", "health"]},
        "periodSeconds": 10,
        "timeoutSeconds": 5,
    }
    router = next(m for m in plan.router_manifests(headscale) if m["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert router["readinessProbe"] == {"httpGet": {"path": "/healthz", "port": "health"}, "periodSeconds": 5, "failureThreshold": 3}
    assert router["ports"] == [{"name": "health", "containerPort": 9002, "protocol": "TCP"}]
    env = {e["name"]: e.get("value") for e in router["env"]}
    assert (env["TS_ENABLE_HEALTH_CHECK"], env["TS_LOCAL_ADDR_PORT"]) == ("true", "0.0.0.0:9002")


def test_the_enrolment_makes_every_member_once_and_prints_only_the_key(headscale: StackConfig) -> None:
    users = plan.users_script(headscale, "headscale")
    assert "for user in alice bob; do" in users and "preauthkeys" not in users
    assert 'hs users create "$user" >/dev/null' in users and "hs health >/dev/null 2>&1" in users
    # The key's step names no member: adding one to `access` changes the users' step only, and mints no router key.
    script = plan.router_script(headscale, "headscale", "kubectl")
    assert "for user in iluvatar-router; do" in script and "alice" not in script and "bob" not in script
    assert '--user "$id" --expiration 1h --tags tag:iluvatar-router --output json' in script and "--reusable" not in script
    # Everything else it runs is quiet on stdout: the step keeps stdout as the key.
    assert 'hs users create "$user" >/dev/null' in script and "hs health >/dev/null 2>&1" in script


_FAKE_HEADSCALE = """#!/bin/sh
# Headscale's CLI as the enrolment calls it: healthy, one user, and what preauthkeys create does is the test's.
case "$1 $2" in
  "health "*) exit 0;;
  "users list") echo '[{"id": 7, "name": "iluvatar-router"}]';;
  "users create") exit 0;;
  "preauthkeys create") %s;;
esac
"""


@pytest.mark.parametrize(
    ("answer", "status", "stdout"),
    [
        (
            """echo '{"id": 3, "key": "0a1b2c3d4e5f0a1b2c3d4e5f0a1b2c3d4e5f0a1b2c3d4e5f", "reusable": false}'""",
            0,
            "0a1b2c3d4e5f0a1b2c3d4e5f0a1b2c3d4e5f0a1b2c3d4e5f\n",
        ),
        ("echo 'Error: rpc error: code = Unavailable' >&2; exit 1", 1, ""),
        ("echo '{\"id\": 3}'", 1, ""),
        ("""echo '{"key": "n/a"}'""", 1, ""),
    ],
    ids=["a-key", "the-cli-fails", "no-key", "not-a-key"],
)
def test_the_enrolment_fails_unless_headscale_gave_a_key(headscale: StackConfig, answer: str, status: int, stdout: str, tmp_path: Path) -> None:
    # Run by POSIX sh (dash here), as the Ainur's shell may be: a failing CLI inside a pipeline must still fail the step.
    fake = tmp_path / "headscale"
    fake.write_text(_FAKE_HEADSCALE % answer)
    fake.chmod(0o755)
    done = subprocess.run(["/bin/sh", "-c", plan.enroll_script(str(fake), wait_seconds=5)], capture_output=True, text=True, check=False, timeout=60)
    assert (done.returncode, done.stdout) == (status, stdout), done.stderr
    assert done.stderr == "" if status == 0 else "iluvatar: Headscale" in done.stderr


# The Ainur as the router's step sees it, in files under $W: Headscale's CLI (its users, keys and nodes) and kubectl (the
# router's state Secrets under $W/state, the one its pod template names in $W/state-name, the key Secret it writes, the
# router's rollout). `rollout restart` is the router starting: containerboot logs in with the key Secret's key only if
# Headscale made it, it is unused and not expired (a pre-auth key's validation, hscontrol/state/state.go at v0.27.1),
# then writes its node into its state Secret (device_id, cmd/containerboot/main.go:786) and advertises $W/advertise, of
# which Headscale approves $W/approve. Headscale lists the node its current state names as online (`online`, omitted
# when false: gen/go/headscale/v1/node.pb.go:95), every other one offline. `nodes list --user U` lists the nodes whose own
# user is U (Headscale filters server-side, hscontrol/grpcv1.go:469-477), not those whose pre-auth key names U; `nodes
# rename` refuses a name another node holds (state.go:682-688). A new router node takes the given name iluvatar-router
# unless a node holds it, then a suffixed one (state.go:1082-1087). `rollout status` notes what is in $TMPDIR.
_WORLD_HEADSCALE = r"""#!/bin/sh
W=$(dirname "$0")
case "$1 $2" in
  "health "*) exit 0;;
  "users list") echo '[{"id": 7, "name": "iluvatar-router"}]';;
  "users create") exit 0;;
  "preauthkeys create")
    n=$(( $(cat "$W/keys" 2>/dev/null | wc -l) + 1 ))
    key=$(printf '%048d' "$n")
    echo "$key fresh" >> "$W/keys"
    printf '{\n\t"id": %s,\n\t"key": "%s",\n\t"reusable": false\n}\n' "$n" "$key";;
  "nodes list")
    on=$(cat "$W/state/$(cat "$W/state-name")" 2>/dev/null || echo none)
    user=.; [ "$3" != --user ] || user="^{\"id\": [0-9]*, \(\"online\": true, \)\{0,1\}\"name\": \"[^\"]*\", \"user\": {\"id\": [0-9]*, \"name\": \"$4\"}"
    printf '[\n%s\n]\n' "$(sed "s/^{\"id\": $on,/{\"id\": $on, \"online\": true,/" "$W/nodes" 2>/dev/null | grep "$user" | paste -sd, -)";;
  "nodes delete") [ "$3 $5" = "--identifier --force" ] || exit 2
    sed -i "/^{\"id\": $4,/d" "$W/nodes"; echo "$4" >> "$W/deleted";;
  "nodes rename") [ "$3" = --identifier ] || exit 2
    ! grep -v "^{\"id\": $4," "$W/nodes" | grep -q "\"given_name\": \"$5\"" || { echo "Cannot rename node: name is not unique: $5" >&2; exit 1; }
    sed -i "/^{\"id\": $4,/s/\"given_name\": \"[^\"]*\"/\"given_name\": \"$5\"/" "$W/nodes"; echo "$4 $5" >> "$W/renamed";;
esac
"""
_WORLD_KUBECTL = r"""#!/bin/sh
W=$(dirname "$0")
shift 2  # -n remote-access
case "$1 $2" in
  "get secret") [ ! -f "$W/api-down" ] || { echo "error: the server is currently unable to handle the request" >&2; exit 1; }
    [ -f "$W/state/$3" ] && printf %s "$(cat "$W/state/$3")" | base64 -w0; exit 0;;
  "get secrets") for f in "$W"/state/*; do [ ! -f "$f" ] || echo "secret/${f##*/}"; done; echo secret/subnet-router-key;;
  "delete secret") rm "$W/state/$3"; echo "$3" >> "$W/deleted";;
  "create secret") printf 'apiVersion: v1\nkind: Secret\ndata:\n  TS_AUTHKEY: %s\n' "$(base64 -w0)";;
  "apply --server-side") cat > "$W/applied";;
  "rollout restart")
    key=$(sed -n 's/  TS_AUTHKEY: //p' "$W/applied" | base64 -d)
    grep -qx "$key fresh" "$W/keys" || exit 0
    sed -i "s/^$key fresh$/$key used/" "$W/keys"
    id=$(( $(cat "$W/ids" 2>/dev/null || echo 0) + 1 )); echo "$id" > "$W/ids"
    echo "$id" > "$W/state/$(cat "$W/state-name")"
    json() { sed 's/^/"/; s/$/"/' "$1" | paste -sd, -; }
    name=iluvatar-router; ! grep -q '"given_name": "iluvatar-router"' "$W/nodes" 2>/dev/null || name=iluvatar-router-x$id
    printf '{"id": %s, "name": "iluvatar-router", "user": {"id": 7, "name": "iluvatar-router"}, "forced_tags": ["tag:iluvatar-router"], "given_name": "%s", "approved_routes": [%s], "available_routes": [%s]}\n' "$id" "$name" "$(json "$W/approve")" "$(json "$W/advertise")" >> "$W/nodes";;
  "rollout status") ls -A "$TMPDIR" >> "$W/tmp-seen"; [ -f "$W/state/$(cat "$W/state-name")" ];;
esac
"""


@pytest.fixture
def ainur(headscale: StackConfig, tmp_path: Path) -> Path:
    for name, text in (("headscale", _WORLD_HEADSCALE), ("kubectl", _WORLD_KUBECTL)):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    for name in ("advertise", "approve"):
        (tmp_path / name).write_text("".join(f"{r}\n" for r in ROUTES))
    (tmp_path / "state").mkdir()
    (tmp_path / "tmp").mkdir()
    (tmp_path / "state-name").write_text(plan.router_state_secret(headscale))
    return tmp_path


def _device(w: Path) -> Path:
    """The router's current state Secret's device_id."""
    return w / "state" / (w / "state-name").read_text()


def _router_step(stack: StackConfig, w: Path) -> subprocess.CompletedProcess[str]:
    # Run by POSIX sh (dash here), as the Ainur's shell may be.
    script = plan.router_script(stack, str(w / "headscale"), str(w / "kubectl"), wait_seconds=1)
    env = {**os.environ, "TMPDIR": str(w / "tmp")}
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=False, timeout=60, env=env)


def _keys(w: Path) -> list[str]:
    return (w / "keys").read_text().split("\n")[:-1] if (w / "keys").exists() else []


def test_the_router_step_mints_a_key_only_for_a_router_without_a_node_and_never_shows_it(headscale: StackConfig, ainur: Path) -> None:
    done = _router_step(headscale, ainur)
    assert (done.returncode, done.stdout) == (0, f"subnet router: node 1, its routes advertised and approved: {' '.join(ROUTES)}\n"), done.stderr
    key = "0" * 47 + "1"
    assert _keys(ainur) == [f"{key} used"]
    # The key went to its Secret through a pipe, and into no output.
    assert "TS_AUTHKEY: MDAwMDAw" in (ainur / "applied").read_text()
    assert key not in done.stdout + done.stderr
    # Run again (the next `pulumi up`): the router has its node, nothing is minted.
    again = _router_step(headscale, ainur)
    assert (again.returncode, len(_keys(ainur))) == (0, 1), again.stderr


def test_a_router_whose_state_secret_was_deleted_is_enrolled_again_by_a_plain_rerun(headscale: StackConfig, ainur: Path) -> None:
    assert _router_step(headscale, ainur).returncode == 0
    _device(ainur).unlink()  # kubectl delete secret subnet-router-state-...: the router starts with a used key
    done = _router_step(headscale, ainur)
    assert (done.returncode, done.stdout.split(",")[0]) == (0, "subnet router: node 2"), done.stderr
    assert "minting it a key" in done.stderr and [k.split()[1] for k in _keys(ainur)] == ["used", "used"]


def test_a_router_whose_node_headscale_forgot_is_enrolled_again(headscale: StackConfig, ainur: Path) -> None:
    _device(ainur).write_text("5")
    done = _router_step(headscale, ainur)
    assert (done.returncode, len(_keys(ainur))) == (0, 1), done.stderr


def test_an_enrolment_killed_after_its_key_expired_unused_completes_on_the_next_run(headscale: StackConfig, ainur: Path) -> None:
    # The first run minted a key, then stopped before the router used it (Ctrl-C, the Ainur off over a weekend):
    # a day later that key has expired. The next run sees a router with no node and mints another, which it uses.
    (ainur / "keys").write_text("0" * 48 + " expired\n")
    (ainur / "applied").write_text("  TS_AUTHKEY: " + __import__("base64").b64encode(b"0" * 48).decode() + "\n")
    done = _router_step(headscale, ainur)
    assert done.returncode == 0, done.stderr
    assert [k.split()[1] for k in _keys(ainur)] == ["expired", "used"]


def _moved(url: str = "https://vpn.example.com", ip: str = "192.168.0.17") -> StackConfig:
    return remote_stack({**HEADSCALE, "headscale": {"url": url, "ip": ip}})


@pytest.mark.parametrize(
    "change",
    ["image", "url", "ip", "routes"],
)
def test_any_change_that_rolls_the_router_runs_its_step_again(headscale: StackConfig, change: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pulumi does not await the router (skipAwait): its step is its wait, and pulumi-command runs a step only when its
    # script changes. So the script carries a digest of the pod template: a new image, login server, Headscale address
    # or route each runs the step (its rollout status and route check see the new pod); an unchanged stack does not.
    def step(stack: StackConfig) -> str:
        return plan.router_script(stack, "hs", "kubectl")

    before = step(headscale)
    assert step(remote_stack(HEADSCALE)) == before
    if change == "image":
        monkeypatch.setattr(plan, "TAILSCALE_IMAGE", plan.TAILSCALE_IMAGE.replace("v1.102.3", "v1.102.4"))
        after = step(headscale)
    elif change == "url":
        after = step(_moved(url="https://vpn2.example.com"))
    elif change == "ip":
        after = step(_moved(ip="192.168.0.19"))
    else:
        after = step(remote_stack({**HEADSCALE, "routes": ["192.168.20.0/24"]}))
    assert after.splitlines()[1] != before.splitlines()[1]
    assert after.splitlines()[1].startswith("# its pod template ") and len(after.splitlines()[1].split()[4]) == 16


def test_the_routers_state_secret_is_named_after_its_login_server(headscale: StackConfig) -> None:
    # A new login server starts the router with no state (TS_AUTH_ONCE would keep the old server: `tailscale set` passes
    # no --login-server, cmd/containerboot/tailscaled.go:169-185 at v1.102.3); its Role may touch only that Secret.
    assert plan.router_state_secret(headscale) == "subnet-router-state-7b6761d8"
    assert plan.router_state_secret(_moved(url="https://vpn2.example.com")) != "subnet-router-state-7b6761d8"
    role = next(m for m in plan.router_manifests(headscale) if m["kind"] == "Role")
    assert role["rules"][1]["resourceNames"] == ["subnet-router-state-7b6761d8"]


def test_a_new_login_server_enrols_the_router_afresh_and_removes_its_old_node_and_state(headscale: StackConfig, ainur: Path) -> None:
    assert _router_step(headscale, ainur).returncode == 0
    moved = _moved(url="https://vpn2.example.com")
    (ainur / "state-name").write_text(plan.router_state_secret(moved))  # Pulumi rolled the router onto the new Secret
    done = _router_step(moved, ainur)
    assert (done.returncode, done.stdout.split(",")[0]) == (0, "subnet router: node 2"), done.stderr
    assert [k.split()[1] for k in _keys(ainur)] == ["used", "used"]
    # Its old node (offline, its routes approved, holding the name) and its old state Secret are gone.
    assert (ainur / "deleted").read_text().split() == ["1", "subnet-router-state-7b6761d8"]
    assert [json.loads(n)["id"] for n in (ainur / "nodes").read_text().splitlines()] == [2]
    assert (ainur / "renamed").read_text() == "2 iluvatar-router\n"
    assert "deleting the subnet router's earlier node 1" in done.stderr


def test_only_the_routers_own_offline_nodes_are_removed(headscale: StackConfig, ainur: Path) -> None:
    # Only an offline node of the router's user that is a router goes: its hostname and the tag its key gave it
    # (forced_tags, hscontrol/state/state.go:1067 at v0.27.1). A phone enrolled with the router's user, a node named
    # like the router without its tag, a tagged node under another name, one moved to another user (its pre-auth key
    # still names the router's user), and a router-user node still online (someone's second router) all stay.
    def node(i: int, name: str, user: str, tags: str = '"forced_tags": ["tag:iluvatar-router"], ', extra: str = "") -> str:
        who = f'"user": {{"id": {7 if user == "iluvatar-router" else 3}, "name": "{user}"}}'
        return f'{{"id": {i}, {extra}"name": "{name}", {who}, {tags}"given_name": "{name}-{i}"}}\n'

    key = '"pre_auth_key": {"user": {"id": 7, "name": "iluvatar-router"}, "acl_tags": ["tag:iluvatar-router"]}, '
    (ainur / "nodes").write_text(
        node(8, "iluvatar-router", "iluvatar-router")
        + node(9, "iluvatar-router", "iluvatar-router", extra='"online": true, ')
        + node(10, "iluvatar-router", "alice", tags=key + '"forced_tags": ["tag:iluvatar-router"], ')
        + node(11, "pixel-7", "iluvatar-router", tags="")
        + node(12, "iluvatar-router", "iluvatar-router", tags="")
        + node(13, "iluvatar-router2", "iluvatar-router")
    )
    (ainur / "ids").write_text("13")
    # The state Secret of a router enrolled before its name followed the URL goes too; other Secrets stay.
    (ainur / "state" / "subnet-router-state").write_text("8")
    (ainur / "state" / "subnet-router-statement").write_text("")
    done = _router_step(headscale, ainur)
    assert done.returncode == 0, done.stderr
    assert (ainur / "deleted").read_text().split() == ["8", "subnet-router-state"]
    assert [json.loads(n)["id"] for n in (ainur / "nodes").read_text().splitlines()] == [9, 10, 11, 12, 13, 14]


def test_a_failing_listing_of_the_routers_user_removes_nothing_and_is_said(headscale: StackConfig, ainur: Path) -> None:
    # The clean-up comes after the router is up with its routes: a listing that fails (say, a user Headscale does not
    # find, hscontrol/grpcv1.go:471-474 at v0.27.1) deletes nothing and fails nothing, and says so.
    assert _router_step(headscale, ainur).returncode == 0
    _device(ainur).unlink()
    (ainur / "headscale").write_text((ainur / "headscale").read_text().replace('"nodes list")\n', '"nodes list") [ "$3" != --user ] || exit 1\n', 1))
    done = _router_step(headscale, ainur)
    assert (done.returncode, done.stdout.split(",")[0]) == (0, "subnet router: node 2"), done.stderr
    assert not (ainur / "deleted").exists()
    assert "the subnet router's earlier nodes were not removed" in done.stderr


def test_the_router_takes_its_name_back_once_its_earlier_node_is_gone(headscale: StackConfig, ainur: Path) -> None:
    # Headscale names a node only when it makes it: enrolled while the old node held iluvatar-router, the new one is
    # iluvatar-router-<random> (state.go:1082-1087 at v0.27.1); after the clean-up it is renamed (nodes.go:343-385).
    assert _router_step(headscale, ainur).returncode == 0
    assert not (ainur / "renamed").exists()  # already its name: nothing to do
    moved = _moved(url="https://vpn2.example.com")
    (ainur / "state-name").write_text(plan.router_state_secret(moved))
    done = _router_step(moved, ainur)
    assert done.returncode == 0, done.stderr
    assert (ainur / "renamed").read_text() == "2 iluvatar-router\n"
    assert [json.loads(n)["given_name"] for n in (ainur / "nodes").read_text().splitlines()] == ["iluvatar-router"]


def test_a_refused_rename_fails_nothing_and_is_said(headscale: StackConfig, ainur: Path) -> None:
    # Another node (online, so not removed) holds the name: Headscale refuses the rename (state.go:682-688), the router
    # works all the same, the step says so and succeeds.
    other = '{"id": 5, "online": true, "name": "iluvatar-router", "user": {"id": 3, "name": "alice"}, "given_name": "iluvatar-router"}\n'
    (ainur / "nodes").write_text(other)
    (ainur / "ids").write_text("5")
    done = _router_step(headscale, ainur)
    assert done.returncode == 0, done.stderr
    assert "iluvatar: the subnet router's node 6 keeps its name: Cannot rename node: name is not unique: iluvatar-router" in done.stderr


def test_the_step_writes_headscales_node_listing_to_no_file(headscale: StackConfig, ainur: Path) -> None:
    # The listing carries every node's pre-auth key (hscontrol/types/node.go:407-408 at v0.27.1): it stays in the
    # step's variables, so a step killed mid-way leaves nothing in /tmp (on a Pi, the SD card).
    assert _router_step(headscale, ainur).returncode == 0
    assert (ainur / "tmp-seen").read_text() == ""
    assert list((ainur / "tmp").iterdir()) == []


@pytest.mark.parametrize("down", ["kubectl", "headscale"])
def test_a_failing_read_of_the_routers_state_mints_nothing(headscale: StackConfig, ainur: Path, down: str) -> None:
    # An API that does not answer is not a router without its node: the step fails (and runs again), no key is made.
    _device(ainur).write_text("1")
    if down == "kubectl":
        (ainur / "api-down").write_text("")
    else:
        (ainur / "headscale").write_text((ainur / "headscale").read_text().replace('"nodes list")\n', '"nodes list") exit 1;;\n  "unused")\n'))
    done = _router_step(headscale, ainur)
    assert (done.returncode, _keys(ainur)) == (1, []), done.stderr
    assert "nothing was minted" in done.stderr


def test_a_router_that_never_gets_on_the_tailnet_fails_the_step(headscale: StackConfig, ainur: Path) -> None:
    (ainur / "headscale").write_text((ainur / "headscale").read_text().replace('echo "$key fresh"', 'echo "$key expired"'))
    done = _router_step(headscale, ainur)
    assert done.returncode == 1
    assert (
        "iluvatar: the subnet router was not on the tailnet within 1 s; look with: sudo k3s kubectl -n remote-access logs deploy/subnet-router"
        in done.stderr
    )


@pytest.mark.parametrize(
    ("advertise", "approve", "message"),
    [
        (ROUTES, ROUTES[1:], "iluvatar: Headscale has not approved the route(s) 192.168.0.10/32 the subnet router (node 1) advertises"),
        (ROUTES[:-1], ROUTES[:-1], "iluvatar: the subnet router (node 1) does not advertise: 192.168.0.238/32"),
        (
            [*ROUTES, "10.9.0.0/24"],
            [*ROUTES, "10.9.0.0/24"],
            "iluvatar: the subnet router (node 1) advertises routes the stack does not: 10.9.0.0/24",
        ),
    ],
    ids=["unapproved", "unadvertised", "stale"],
)
def test_the_router_step_fails_unless_the_approved_routes_are_the_advertised_ones(
    headscale: StackConfig, ainur: Path, advertise: list[str], approve: list[str], message: str
) -> None:
    (ainur / "advertise").write_text("".join(f"{r}\n" for r in advertise))
    (ainur / "approve").write_text("".join(f"{r}\n" for r in approve))
    done = _router_step(headscale, ainur)
    assert (done.returncode, done.stdout) == (1, ""), done.stderr
    assert message in done.stderr


@pytest.mark.parametrize(
    ("printed", "count"),
    [
        ('{"secret": "absent"}\n', 4),
        ('{"secret": "present"}\n', 3),
        ('{"secret": "present", "deployment": "unavailable"}\n', 4),
        ('{"secret": "absent", "deployment": "unavailable"}\n', 4),
        ('{"secret": "present", "deployment": "available"}\n', 3),
        ('{"secret": "present", "deployment": "unreachable"}\n', 3),
        ("[1]", 3),
        ('{"secret": "unreachable"}\n', 3),
        ("", 3),
        ("not json", 3),
        ('{"nodes": {}}', 3),
    ],
    ids=[
        "no-node",
        "its-node",
        "not-ready",
        "neither",
        "ready",
        "deployment-unknown",
        "a-list",
        "no-answer",
        "nothing-printed",
        "not-json",
        "another-answer",
    ],
)
def test_only_a_router_without_its_node_or_not_available_raises_its_enrolment(printed: str, count: int) -> None:
    assert plan.router_enrolment(3, printed) == count


def test_the_probe_asks_for_containerboots_device_id_and_the_routers_availability(headscale: StackConfig) -> None:
    assert plan.router_probe_command(headscale) == (
        ".venv/bin/iluvatar upgrader secret-key --namespace remote-access --secret subnet-router-state-7b6761d8 --key device_id"
        " --deployment subnet-router --deadline 3s"
    )


def test_the_summary_says_where_to_sign_in(headscale: StackConfig, tailscale: StackConfig) -> None:
    assert plan.sign_in(headscale) == {
        "flavour": "headscale",
        "loginServer": "https://vpn.example.com",
        "routes": ROUTES,
        "splitDns": {"iluvatar.home.arpa": ["192.168.0.14"], "jellyfin.example.com": ["192.168.0.14"]},
        "groups": {"group:example-homelab-admins": ["apps", "kubernetes"], "group:example-family": ["apps"]},
        "issuer": "https://dex.iluvatar.home.arpa",
    }
    assert plan.sign_in(tailscale)["loginServer"] == "https://controlplane.tailscale.com"


# --- Any stack --------------------------------------------------------------------------------------------------


@st.composite
def remote_stacks(draw: st.DrawFn) -> dict[str, Any]:
    raw = draw(raw_stacks(ainur=True, identity=True))
    assume("iluvatar:identity" in raw)
    lan = IPv4Network(raw["iluvatar:network"]["lan"])
    pool = raw["iluvatar:network"]["loadBalancerPool"]
    start, end = IPv4Address(pool["start"]), IPv4Address(pool["end"])
    # A route must leave Arda's Services out (stacks.remote_access._routes): the LAN's quarters clear of the pool.
    clear = [str(s) for s in lan.subnets(new_prefix=min(lan.prefixlen + 2, 30)) if s.broadcast_address < start or end < s.network_address]
    assume(clear)
    routes = draw(st.lists(st.sampled_from(clear), unique=True, max_size=2))
    reach = draw(st.lists(st.sampled_from(["apps", "kubernetes", *(["routes"] if routes else [])]), min_size=1, unique=True))
    if "routes" in reach and "kubernetes" not in reach:
        # A drawn quarter may hold a machine of the clusters, which a group reaching routes without kubernetes may not
        # be routed to (stacks.remote_access._routes); which quarters do depends on the drawn machines.
        reach.append("kubernetes")
    raw["iluvatar:remoteAccess"] = {
        "flavour": "tailscale",
        "tailscale": {"oauthClientId": "kQ2wZp7CNTRL", "replacePolicy": True},
        "routes": routes,
        "access": [{"group": "admins", "members": ["admin@lab.example"], "reach": reach}],
    }
    raw["iluvatar:tailscaleOauthClientSecret"] = {"secure": "v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHQ="}
    return raw


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(remote_stacks())
def test_every_destination_is_advertised_and_every_route_is_the_homelabs(raw: dict[str, Any]) -> None:
    stack = parse_stack(raw, frozenset({"iluvatar:identityConnectorSecret", "iluvatar:tailscaleOauthClientSecret"}))
    routed = plan.routes(stack)
    own = [stack.network.lan, *(v.cidr for v in stack.network.vlans)]
    assert all(any(r.subnet_of(n) for n in own) for r in routed)
    policy = plan.policy(stack)
    # The routes the router advertises are exactly the ones the policy approves, and the Connector's.
    assert (
        sorted(policy["autoApprovers"]["routes"])
        == sorted(str(r) for r in routed)
        == sorted(plan.connector(stack)["spec"]["subnetRouter"]["advertiseRoutes"])
    )
    for rule in policy["acls"]:
        for dst in rule["dst"]:
            network = IPv4Network(dst.rpartition(":")[0])
            assert any(network.subnet_of(r) for r in routed), dst
    # Nothing in the tailnet's range, and the resolver the split names go to is advertised.
    assert not any(r.overlaps(plan.TAILNET_RANGE) for r in routed)
    assert all(any(IPv4Address(ns) in r for r in routed) for servers in plan.split_dns(stack).values() for ns in servers)


# --- Headscale's own checks: its policy parser and its config loader, v0.27.1 (tools.gotools) -------------------


def _headscale(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(gotools.build("headscale")), *args], capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", **(env or {})}, cwd=cwd
    )


def test_headscales_policy_parser_accepts_the_headscale_policy(headscale: StackConfig, tmp_path: Path) -> None:
    policy = tmp_path / "policy.hujson"
    policy.write_text(plan.policy_text(headscale))
    checked = _headscale("policy", "check", "--file", str(policy), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "Policy is valid" in checked.stdout


def test_the_tailscale_policy_differs_from_headscales_only_by_the_operators_tag_owner(tailscale: StackConfig, tmp_path: Path) -> None:
    # Tailscale's own parser is its control server's, which does not run here. Headscale's reads the same format and
    # refuses one thing of it: a tag owned by a tag, which the operator needs on Tailscale ("If you specify custom
    # tags here, you must also make the operator an owner of these tags", the Connector CRD's `tags`,
    # tailscale.com_connectors.yaml:176 at v1.102.3) and Headscale v0.27.1 does not take (its OwnerEnc).
    policy = tmp_path / "policy.hujson"
    policy.write_text(plan.policy_text(tailscale))
    checked = _headscale("policy", "check", "--file", str(policy), cwd=tmp_path)
    assert checked.returncode != 0
    assert 'within "/tagOwners/tag:iluvatar-router/0": Invalid Owner "tag:k8s-operator"' in checked.stdout + checked.stderr
    # Without that one owner, Headscale's parser accepts the rest of the document: groups, rules, auto-approval.
    rest = plan.policy(tailscale)
    rest["tagOwners"] = {plan.ROUTER_TAG: []}
    policy.write_text(json.dumps(rest))
    checked = _headscale("policy", "check", "--file", str(policy), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_headscales_policy_parser_refuses_a_member_without_an_at(headscale: StackConfig, tmp_path: Path) -> None:
    # The break: what stacks.remote_access refuses at preview (a login without @), Headscale's parser refuses too.
    broken = plan.policy(headscale)
    broken["groups"]["group:example-family"] = ["bob"]
    policy = tmp_path / "policy.hujson"
    policy.write_text(json.dumps(broken))
    checked = _headscale("policy", "check", "--file", str(policy), cwd=tmp_path)
    assert checked.returncode != 0
    assert 'Username has to contain @, got: "bob"' in checked.stdout + checked.stderr


@pytest.mark.parametrize("derp", ["tailscale", "embedded"])
def test_headscale_loads_the_rendered_config(derp: str, tmp_path: Path) -> None:
    # `headscale configtest` builds the server from the config (its database, its keys, the policy file, DNS); the
    # paths under /var/lib, /etc and /var/run are the pod's volumes, moved here by Headscale's own environment overrides.
    stack = remote_stack({**HEADSCALE, "headscale": {**HEADSCALE["headscale"], "derp": derp}})
    manifests = {(m["kind"], m["metadata"]["name"]): m for m in plan.headscale_manifests(stack)}
    data = manifests[("ConfigMap", plan.HEADSCALE)]["data"]
    (tmp_path / "config.yaml").write_text(data["config.yaml"])
    (tmp_path / "policy.hujson").write_text(data["policy.hujson"])
    env = {
        "HEADSCALE_DATABASE_SQLITE_PATH": str(tmp_path / "db.sqlite"),
        "HEADSCALE_NOISE_PRIVATE_KEY_PATH": str(tmp_path / "noise_private.key"),
        "HEADSCALE_DERP_SERVER_PRIVATE_KEY_PATH": str(tmp_path / "derp_server_private.key"),
        "HEADSCALE_TLS_LETSENCRYPT_CACHE_DIR": str(tmp_path / "cache"),
        "HEADSCALE_UNIX_SOCKET": str(tmp_path / "headscale.sock"),
        "HEADSCALE_POLICY_PATH": str(tmp_path / "policy.hujson"),
    }
    checked = _headscale("configtest", "--config", str(tmp_path / "config.yaml"), env=env, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert (tmp_path / "db.sqlite").exists() and (tmp_path / "noise_private.key").exists()
