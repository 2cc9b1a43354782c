"""Raw TCP/UDP ports plan: exact objects for the homelab's Minecraft server and MQTT broker, checked against Kubernetes'
and Cilium's schemas at the versions the program runs (kubeconform), and where their names and routes go."""

from __future__ import annotations

import functools
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import yaml

from plans import certificates, edge, gateways, ports
from plans import remote_access as remote_plan
from plans.netboot import dnsmasq
from stacks import StackConfig, load_stack_file
from stacks.model import App
from tests.edit import HOMELAB
from tests.remote_stacks import HEADSCALE, TAILSCALE, remote_stack
from tools import upstream

MANAGED = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "iluvatar"}
LAN_PORTS = [{"ports": [{"port": "25565", "protocol": "TCP"}, {"port": "19132", "protocol": "UDP"}]}]


@functools.cache
def _stack() -> StackConfig:
    return load_stack_file(HOMELAB)


def _minecraft(stack: StackConfig) -> Any:
    return next(a for a in stack.apps if a.name == "minecraft")


def test_minecrafts_service_asks_cilium_for_its_own_address_with_both_protocols() -> None:
    assert ports.service(_minecraft(_stack())) == {
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
            "ports": [
                {"name": "tcp-25565", "port": 25565, "protocol": "TCP", "targetPort": 25565},
                {"name": "udp-19132", "port": 19132, "protocol": "UDP", "targetPort": 19132},
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
                {"fromCIDR": ["192.168.0.0/24"], "toPorts": LAN_PORTS},
                {"fromEntities": ["host", "remote-node"], "toPorts": LAN_PORTS},
            ],
        },
    }


def test_the_tailscale_routers_pods_are_admitted_only_when_a_group_reaches_the_ports() -> None:
    access = [{"group": "example:family", "members": ["bob@example.org"], "reach": ["ports"]}]
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


def test_reach_ports_advertises_each_apps_address_with_its_ports_alone() -> None:
    access = [{"group": "example:family", "members": ["bob@"], "reach": ["ports"]}]
    stack = remote_stack({**HEADSCALE, "access": access})
    targets = remote_plan.targets(stack)
    assert (targets["app-minecraft"], targets["app-mosquitto"]) == (IPv4Address("192.168.0.220"), IPv4Address("192.168.0.221"))
    assert {"192.168.0.220/32", "192.168.0.221/32"} <= {str(r) for r in remote_plan.routes(stack)}
    assert remote_plan.policy(stack)["acls"] == [
        {"action": "accept", "src": ["group:example-family"], "dst": ["192.168.0.220:25565,19132", "192.168.0.221:1883,8883", "192.168.0.14:53"]}
    ]


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
    assert ports.service(app)["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    listening = {(p["containerPort"], p["protocol"]) for c in pod["spec"]["containers"] for p in c["ports"]}
    assert {(p["targetPort"], p["protocol"]) for p in ports.service(app)["spec"]["ports"]} <= listening
    assert all(o["metadata"]["namespace"] == app.namespace for o in objects)
    crds = [("cert-manager", certificates.CERT_MANAGER_VERSION)]
    assert upstream.kubeconform(objects, stack.arda.kubernetes_version, crds=crds) == []
