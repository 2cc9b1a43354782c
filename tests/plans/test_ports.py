"""Raw TCP/UDP ports plan: exact objects for the homelab's Minecraft server and MQTT broker, checked against Kubernetes'
and Cilium's schemas at the versions the program runs (kubeconform), and where their names and routes go."""

from __future__ import annotations

import functools
import re
import subprocess
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import yaml

from plans import certificates, edge, gateways, ports
from plans import remote_access as remote_plan
from plans.netboot import dnsmasq
from stacks import StackConfig, load_stack_file
from stacks.model import App, AppClient
from tests.edit import HOMELAB
from tests.remote_stacks import HEADSCALE, TAILSCALE, remote_stack
from tools import gotools, netpol_check, upstream

MANAGED = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "iluvatar"}
# The Pis' addresses: the shipped homelab's tailnet reaches both raw-port apps through Headscale's subnet router on the
# Ainur, which masquerades as its Pi's address.
AINUR = ["192.168.0.11/32", "192.168.0.12/32", "192.168.0.13/32"]
LAN_PORTS = [{"ports": [{"port": "25565", "protocol": "TCP"}, {"port": "19132", "protocol": "UDP"}]}]


@functools.cache
def _stack() -> StackConfig:
    return load_stack_file(HOMELAB)


def _minecraft(stack: StackConfig) -> Any:
    return next(a for a in stack.apps if a.name == "minecraft")


def test_minecrafts_service_asks_cilium_for_its_own_address_with_both_protocols() -> None:
    assert ports.service(_stack(), _minecraft(_stack())) == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "minecraft-lan",
            "namespace": "selfhosted",
            "labels": {**MANAGED, "iluvatar/app": "minecraft"},
            "annotations": {"lbipam.cilium.io/ips": "192.168.0.220"},
        },
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Cluster",
            "selector": {"app.kubernetes.io/name": "minecraft"},
            "loadBalancerSourceRanges": ["192.168.0.0/24", *AINUR],
            # No NodePort on every Arda machine's address (plans.ports.service).
            "allocateLoadBalancerNodePorts": False,
            "ports": [
                {"name": "tcp-25565", "port": 25565, "protocol": "TCP", "targetPort": 25565, "nodePort": 0},
                {"name": "udp-19132", "port": 19132, "protocol": "UDP", "targetPort": 19132, "nodePort": 0},
            ],
        },
    }


def test_minecrafts_policy_admits_only_its_ports_from_the_lan_and_the_nodes() -> None:
    assert ports.network_policy(_stack(), _minecraft(_stack())) == {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "minecraft-lan", "namespace": "selfhosted", "labels": {**MANAGED, "iluvatar/app": "minecraft"}},
        "spec": {
            "endpointSelector": {"matchLabels": {"app.kubernetes.io/name": "minecraft"}},
            "ingress": [
                {"fromCIDR": ["192.168.0.0/24", *AINUR], "toPorts": LAN_PORTS},
                {"fromEntities": ["host", "remote-node"], "toPorts": LAN_PORTS},
            ],
        },
    }


MQTT_PORTS = [{"ports": [{"port": "1883", "protocol": "TCP"}, {"port": "8883", "protocol": "TCP"}]}]


def test_the_source_boundary_is_the_services_and_the_same_on_every_node() -> None:
    """Who reaches the broker from outside is its Service's source ranges, which Cilium checks at the address before
    it masquerades (plans.ports.service): the LAN and the IoT VLAN the homelab names for it. The policy admits the same
    ranges and the nodes (a packet masqueraded by the node that took it), so where the pod runs changes nothing."""
    stack = _stack()
    mosquitto = next(a for a in stack.apps if a.name == "mosquitto")
    assert ports.service(stack, mosquitto)["spec"]["loadBalancerSourceRanges"] == ["192.168.0.0/24", "192.168.20.0/24", *AINUR]
    ingress = ports.network_policy(stack, mosquitto)["spec"]["ingress"]
    assert ingress[:2] == [
        {"fromCIDR": ["192.168.0.0/24", "192.168.20.0/24", *AINUR], "toPorts": MQTT_PORTS},
        {"fromEntities": ["host", "remote-node"], "toPorts": MQTT_PORTS},
    ]


def test_the_brokers_clients_in_the_cluster_are_admitted_by_namespace() -> None:
    """zigbee2mqtt and Home Assistant's MQTT integration, pods of home-automation, reach the broker's ports."""
    stack = _stack()
    mosquitto = next(a for a in stack.apps if a.name == "mosquitto")
    assert ports.network_policy(stack, mosquitto)["spec"]["ingress"][2:] == [
        {"fromEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "home-automation"}}], "toPorts": MQTT_PORTS}
    ]


def test_a_client_gateway_reaches_the_http_siblings_port_alone() -> None:
    """The HTTP part of a ports app (a map on 8100) is another app behind envoy-internal: its gateway's pods are named
    in clients with that port, which alone they reach."""
    stack = _stack()
    gateway = {"namespace": "envoy-gateway-system", "pods": {"gateway.envoyproxy.io/owning-gateway-name": "envoy-internal"}, "ports": [8100]}
    app = _minecraft(stack).model_copy(update={"clients": (AppClient.model_validate(gateway),)})
    assert ports.network_policy(stack, app)["spec"]["ingress"][2] == {
        "fromEndpoints": [
            {
                "matchLabels": {
                    "k8s:io.kubernetes.pod.namespace": "envoy-gateway-system",
                    "gateway.envoyproxy.io/owning-gateway-name": "envoy-internal",
                }
            }
        ],
        "toPorts": [{"ports": [{"port": "8100", "protocol": "TCP"}]}],
    }


def test_headscales_router_on_the_ainur_is_a_source_when_a_group_reaches_the_ports() -> None:
    access = [{"group": "example:family", "members": ["bob@"], "reach": ["ports"], "ports": ["minecraft"]}]
    stack = remote_stack({**HEADSCALE, "access": access})
    ainur = [f"{n.ip}/32" for n in stack.ainur_nodes]
    assert ports.service(stack, _minecraft(stack))["spec"]["loadBalancerSourceRanges"] == [str(stack.network.lan), *ainur]


def test_the_tailscale_routers_pods_are_admitted_only_when_a_group_reaches_the_ports() -> None:
    access = [{"group": "example:family", "members": ["bob@example.org"], "reach": ["ports"], "ports": ["minecraft"]}]
    reached = remote_stack({**TAILSCALE, "access": access})
    ingress = ports.network_policy(reached, _minecraft(reached))["spec"]["ingress"]
    assert ingress[2] == {"fromEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "tailscale"}}], "toPorts": LAN_PORTS}
    # The shipped tailscale access reaches apps and kubernetes only: no router pod reaches the ports.
    plain = remote_stack(TAILSCALE)
    assert len(ports.network_policy(plain, _minecraft(plain))["spec"]["ingress"]) == 2


def test_the_services_pass_kubeconform() -> None:
    stack = _stack()
    assert [(m["kind"], m["metadata"]["name"]) for m in ports.manifests(stack)] == [
        ("Service", "minecraft-lan"),
        ("CiliumNetworkPolicy", "minecraft-lan"),
        ("Service", "mosquitto-lan"),
        ("CiliumNetworkPolicy", "mosquitto-lan"),
    ]
    # Only the Services: kubeconform's conversion of Cilium's CRD refuses every CiliumNetworkPolicy (the log store's
    # writers' too: "/spec: oneOf failed"), so the real API server with Cilium's CRD judges them
    # (tests/kube/test_program.py deploys the homelab, these included).
    services = [m for m in ports.manifests(stack) if m["kind"] == "Service"]
    assert upstream.kubeconform(services, stack.arda.kubernetes_version) == []


def test_a_raw_port_app_has_no_http_route_and_its_host_names_its_own_address() -> None:
    stack = _stack()
    routes = [m["metadata"]["name"] for m in gateways.manifests(stack) if m["kind"] == "HTTPRoute"]
    assert "minecraft" not in routes and "mosquitto" not in routes
    zone = dict(dnsmasq.dns_records(stack, edge.lan_records(stack)))
    assert zone["minecraft.iluvatar.home.arpa"] == IPv4Address("192.168.0.220")
    assert zone["mqtt.iluvatar.home.arpa"] == IPv4Address("192.168.0.221")


def test_reach_ports_grants_each_named_app_by_protocol() -> None:
    """A group given Minecraft reaches its address, 25565 over TCP and 19132 over UDP only, and the resolver for its
    name; not the broker, which is neither advertised nor in a rule."""
    access = [{"group": "example:family", "members": ["bob@"], "reach": ["ports"], "ports": ["minecraft"]}]
    stack = remote_stack({**HEADSCALE, "access": access})
    targets = remote_plan.targets(stack)
    assert targets["app-minecraft"] == IPv4Address("192.168.0.220") and "app-mosquitto" not in targets
    advertised = {str(r) for r in remote_plan.routes(stack)}
    assert "192.168.0.220/32" in advertised and "192.168.0.221/32" not in advertised
    assert remote_plan.policy(stack)["acls"] == [
        {"action": "accept", "src": ["group:example-family"], "dst": ["192.168.0.14:53"]},
        {"action": "accept", "src": ["group:example-family"], "proto": "tcp", "dst": ["192.168.0.220:25565"]},
        {"action": "accept", "src": ["group:example-family"], "proto": "udp", "dst": ["192.168.0.220:19132"]},
    ]
    # The broker's Service admits Headscale's router only when a group reaches the broker.
    mosquitto = next(a for a in stack.apps if a.name == "mosquitto")
    assert ports.service(stack, mosquitto)["spec"]["loadBalancerSourceRanges"] == ["192.168.0.0/24", "192.168.20.0/24"]


def test_the_shipped_homelab_serves_its_raw_port_apps_by_name_on_the_tailnet(tmp_path: Path) -> None:
    """Pulumi.homelab.yaml's own remote access: the Minecraft server and the MQTT broker are advertised, their names are
    in the zone the split DNS sends to the Ainur's resolver (which answers their addresses), and the policy, which
    Headscale v0.27.1's own parser accepts, grants the family the game and the admins both, each port by protocol."""
    stack = _stack()
    advertised = {str(r) for r in remote_plan.routes(stack)}
    assert {"192.168.0.220/32", "192.168.0.221/32", "192.168.0.14/32"} <= advertised
    assert remote_plan.split_dns(stack)["iluvatar.home.arpa"] == ["192.168.0.14"]
    zone = dict(dnsmasq.dns_records(stack, edge.lan_records(stack)))
    assert (zone["minecraft.iluvatar.home.arpa"], zone["mqtt.iluvatar.home.arpa"]) == (IPv4Address("192.168.0.220"), IPv4Address("192.168.0.221"))
    raw = [rule for rule in remote_plan.policy(stack)["acls"] if "proto" in rule]
    assert raw == [
        {"action": "accept", "src": ["group:example-homelab-admins"], "proto": "tcp", "dst": ["192.168.0.220:25565", "192.168.0.221:1883,8883"]},
        {"action": "accept", "src": ["group:example-homelab-admins"], "proto": "udp", "dst": ["192.168.0.220:19132"]},
        {"action": "accept", "src": ["group:example-family"], "proto": "tcp", "dst": ["192.168.0.220:25565"]},
        {"action": "accept", "src": ["group:example-family"], "proto": "udp", "dst": ["192.168.0.220:19132"]},
    ]
    # Each group reaches the resolver its names need.
    assert all(
        any("192.168.0.14:53" in rule["dst"] for rule in remote_plan.policy(stack)["acls"] if rule["src"] == [g])
        for g in ("group:example-family", "group:example-homelab-admins")
    )
    # The Services admit what the tailnet sends: Headscale's router on the Ainur masquerades as its Pi's address.
    for app in ports.apps(stack):
        assert {f"{n.ip}/32" for n in stack.ainur_nodes} <= set(ports.service(stack, app)["spec"]["loadBalancerSourceRanges"]), app.name
    policy = tmp_path / "policy.hujson"
    policy.write_text(remote_plan.policy_text(stack))
    checked = subprocess.run(
        [str(gotools.build("headscale")), "policy", "check", "--file", str(policy)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        check=False,
    )
    assert (checked.returncode, "Policy is valid" in checked.stdout) == (0, True), checked.stdout + checked.stderr


def test_without_reach_ports_the_apps_addresses_are_not_advertised() -> None:
    stack = remote_stack(HEADSCALE)  # reach: apps and kubernetes
    assert not {"app-minecraft", "app-mosquitto"} & set(remote_plan.targets(stack))
    assert not {"192.168.0.220/32", "192.168.0.221/32"} & {str(r) for r in remote_plan.routes(stack)}


EXAMPLES = Path(__file__).parent.parent.parent / "examples" / "apps"


@pytest.mark.parametrize("name", ["minecraft", "mosquitto"])
def test_each_example_is_the_homelabs_app_and_its_workload_matches_the_service(name: str) -> None:
    """examples/apps/<app>: its registry entry is the homelab's (so the homelab's validation and render cover it), and
    what runs it carries the Service's selector and listens on each port with its protocol; kubeconform passes it."""
    stack = _stack()
    entry = yaml.safe_load((EXAMPLES / name / "app.yaml").read_text())
    app = next(a for a in stack.apps if a.name == name)
    assert App.model_validate(entry) == app
    objects = list(yaml.safe_load_all((EXAMPLES / name / "deployment.yaml").read_text()))
    workload = next(o for o in objects if o["kind"] in ("Deployment", "StatefulSet"))
    pod = workload["spec"]["template"]
    assert ports.service(stack, app)["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    listening = {(p["containerPort"], p["protocol"]) for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert {(p["targetPort"], p["protocol"]) for p in ports.service(stack, app)["spec"]["ports"]} <= listening
    assert all(o["metadata"]["namespace"] == app.namespace for o in objects)
    crds = [("cert-manager", certificates.CERT_MANAGER_VERSION)]
    assert upstream.kubeconform(objects, stack.arda.kubernetes_version, crds=crds) == []


def test_the_brokers_state_is_on_a_backed_up_claim() -> None:
    """Retained messages and sessions survive a restart (a claim, not an emptyDir), and the homelab backs it up (the
    claim is the one `iluvatar scaffold` writes for that backup, so the example makes none of its own)."""
    objects = list(yaml.safe_load_all((EXAMPLES / "mosquitto" / "deployment.yaml").read_text()))
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    [data] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "data"]
    assert data == {"name": "data", "persistentVolumeClaim": {"claimName": "mosquitto-data"}}
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    backup = next(a for a in _stack().apps if a.name == "mosquitto").backup
    assert backup is not None and [v.claim for v in backup.volumes] == ["mosquitto-data"]


def test_the_minecraft_example_leaves_the_eula_to_the_user() -> None:
    """itzg's image starts only once EULA is TRUE: the example does not accept Mojang's EULA for whoever copies it."""
    objects = list(yaml.safe_load_all((EXAMPLES / "minecraft" / "deployment.yaml").read_text()))
    [server] = [c for c in objects[0]["spec"]["template"]["spec"]["containers"] if c["name"] == "minecraft"]
    assert {"name": "EULA", "value": "FALSE"} in server["env"]


def test_the_minecraft_world_is_backed_up_from_archives_made_with_saving_off() -> None:
    """The homelab copies the backup sidecar's claim (itzg/mc-backup archives the world after save-off and a flush over
    RCON), not the world a running server writes; the sidecar reads the world read-only, both share RCON's password,
    and no image is a moving tag."""
    [statefulset] = list(yaml.safe_load_all((EXAMPLES / "minecraft" / "deployment.yaml").read_text()))
    containers = {c["name"]: c for c in statefulset["spec"]["template"]["spec"]["containers"]}
    assert containers["backup"]["volumeMounts"] == [
        {"name": "data", "mountPath": "/data", "readOnly": True},
        {"name": "backups", "mountPath": "/backups"},
    ]
    rcon = {"name": "RCON_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "minecraft-rcon", "key": "password"}}}
    assert rcon in containers["minecraft"]["env"] and rcon in containers["backup"]["env"]
    assert {"name": "BACKUP_METHOD", "value": "tar"} in containers["backup"]["env"]
    assert [t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]] == ["data", "backups"]
    assert all(c["image"].split(":")[1][:4].isdigit() for c in containers.values()), [c["image"] for c in containers.values()]
    backup = _minecraft(_stack()).backup
    assert backup is not None and [v.claim for v in backup.volumes] == ["backups-minecraft-0"]


# An image's release tag (a date or semver release, with itzg's -<java tag> suffix), never a moving one (latest, stable,
# java25): a restart runs what Git says.
_RELEASE_TAG = re.compile(r"^[^:@]+:\d+\.\d+\.\d+(-java\d+)?$")
# A GeyserMC download of one numbered build (download.geysermc.org/v2: projects/<p>/versions/<v>/builds/<n>).
_GEYSER_BUILD = re.compile(r"^https://download\.geysermc\.org/v2/projects/(geyser|floodgate)/versions/\d+\.\d+\.\d+/builds/\d+/downloads/spigot$")


@pytest.mark.parametrize("name", ["minecraft", "mosquitto", "home-assistant"])
def test_every_image_an_example_runs_is_a_release_tag(name: str) -> None:
    pods = [
        o["spec"]["template"]["spec"]
        for o in yaml.safe_load_all((EXAMPLES / name / "deployment.yaml").read_text())
        if "template" in o.get("spec", {})
    ]
    images = [c["image"] for pod in pods for c in [*pod.get("initContainers", []), *pod["containers"]]]
    assert images and all(_RELEASE_TAG.match(i) for i in images), images


def test_the_minecraft_server_and_its_plugins_are_pinned() -> None:
    """itzg's image downloads the server and the plugins at every start: Paper's build of one Minecraft version, and
    Geyser and Floodgate each at one numbered build (GeyserMC's API serves one file per build), so a restart never
    brings code next to the world that Git does not name; nothing is fetched as "the newest" from Modrinth."""
    [statefulset] = list(yaml.safe_load_all((EXAMPLES / "minecraft" / "deployment.yaml").read_text()))
    [server] = [c for c in statefulset["spec"]["template"]["spec"]["containers"] if c["name"] == "minecraft"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert (env["TYPE"], env["VERSION"], env["PAPER_BUILD"]) == ("PAPER", "26.2", "112")
    assert not {"MODRINTH_PROJECTS", "SPIGET_RESOURCES", "MODS", "PLUGINS_FILE"} & set(env)
    plugins = env["PLUGINS"].splitlines()
    assert [p.split("/")[5] for p in plugins] == ["geyser", "floodgate"] and all(_GEYSER_BUILD.match(p) for p in plugins), plugins


def _pod(namespace: str, name: str) -> list[dict[str, Any]]:
    """A namespace and a Deployment standing for an in-cluster client (the analyzer needs a workload to show a row)."""
    labels = {"app.kubernetes.io/name": name}
    container = {"name": name, "image": "stand-in", "ports": [{"containerPort": 8000, "protocol": "TCP"}]}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}},
        },
    ]


def test_netpol_check_shows_who_reaches_the_broker() -> None:
    """The rendered policy over the example's broker, by the real analyzer (netpol-check): its ports from the LAN, the
    IoT VLAN, the nodes and the pods of its namespace (zigbee2mqtt); not from a pod of another namespace."""
    stack = _stack()
    mosquitto = next(a for a in stack.apps if a.name == "mosquitto")
    nodes = [str(n.ip) for n in stack.arda_nodes]
    broker = [o for o in yaml.safe_load_all((EXAMPLES / "mosquitto" / "deployment.yaml").read_text()) if o["kind"] == "Deployment"]
    objects = [*_pod("home-automation", "zigbee2mqtt"), *_pod("attacker", "attacker"), *broker]
    objects.append(netpol_check.from_cilium(ports.network_policy(stack, mosquitto), nodes))
    found = netpol_check.matrix(netpol_check.analyze(objects))
    assert found["home-automation/mosquitto[Deployment]"] == {
        "TCP 1883,8883": frozenset(
            {
                "192.168.0.0-192.168.0.255",
                "192.168.20.0-192.168.20.255",
                "home-automation/zigbee2mqtt[Deployment]",
            }
        )
    }


def test_netpol_check_reads_the_tailscale_flavours_policy() -> None:
    """With the tailscale flavour the routers' pods (the operator's namespace) are admitted by namespace: the
    translation for the analyzer keeps that rule rather than refusing the policy."""
    access = [{"group": "example:family", "members": ["bob@example.org"], "reach": ["ports"], "ports": ["minecraft"]}]
    reached = remote_stack({**TAILSCALE, "access": access})
    translated = netpol_check.from_cilium(ports.network_policy(reached, _minecraft(reached)), ["192.168.0.21"])
    assert translated["spec"]["ingress"][-1] == {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "tailscale"}}, "podSelector": {}}],
        "ports": [{"port": 25565, "protocol": "TCP"}, {"port": 19132, "protocol": "UDP"}],
    }


def test_headscales_policy_parser_accepts_the_per_protocol_port_rules(tmp_path: Path) -> None:
    """The rules with `proto` are Headscale v0.27.1's own syntax: its parser (tools.gotools) accepts the policy."""
    access = [
        {"group": "example:family", "members": ["bob@"], "reach": ["apps", "ports"], "ports": ["minecraft"]},
        {"group": "example:homelab-admins", "members": ["alice@"], "reach": ["ports"], "ports": ["minecraft", "mosquitto"]},
    ]
    stack = remote_stack({**HEADSCALE, "access": access})
    policy = tmp_path / "policy.hujson"
    policy.write_text(remote_plan.policy_text(stack))
    checked = subprocess.run(
        [str(gotools.build("headscale")), "policy", "check", "--file", str(policy)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Policy is valid" in checked.stdout


def test_the_home_assistant_example_is_the_homelabs_app_on_its_machines_network() -> None:
    """examples/apps/home-assistant: its registry entry is the homelab's; its pod is on that machine's network, pinned to
    it, and listens on exactly the ports the entry declares (what validate checks against the machine's other
    listeners); its Service is the HTTP backend the entry names; kubeconform passes it."""
    stack = _stack()
    entry = yaml.safe_load((EXAMPLES / "home-assistant" / "app.yaml").read_text())
    app = next(a for a in stack.apps if a.name == "home-assistant")
    assert App.model_validate(entry) == app
    assert app.host_network is not None and app.pod_security == "privileged"
    objects = list(yaml.safe_load_all((EXAMPLES / "home-assistant" / "deployment.yaml").read_text()))
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert (pod["hostNetwork"], pod["nodeSelector"]) == (True, {"kubernetes.io/hostname": app.host_network.node})
    listening = {(p["containerPort"], p["protocol"]) for c in pod["containers"] for p in c.get("ports", [])}
    assert listening == {(p.port, p.protocol.upper()) for p in app.host_network.ports}
    service = next(o for o in objects if o["kind"] == "Service")
    assert service["metadata"]["name"] == app.service_name and service["spec"]["ports"][0]["port"] == app.http.port
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert all(o["metadata"]["namespace"] == app.namespace for o in objects)
    assert upstream.kubeconform(objects, stack.arda.kubernetes_version) == []
