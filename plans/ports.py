"""Raw TCP and UDP ports plan: each app with `ports` on its own fixed address of the load-balancer pool.

The mechanism is a LoadBalancer Service that asks Cilium's LB-IPAM for the app's address (`lbipam.cilium.io/ips`),
announced on the LAN by Cilium's L2 announcements, as the LAN resolver and the log store already are; not Envoy
Gateway's TCPRoute/UDPRoute on envoy-internal. Why (docs/apps.md, "Apps with raw ports"):

- UDP (Minecraft Bedrock 19132) and TCP both go straight to the pods through Cilium's eBPF load balancer; Envoy
  Gateway would add a proxy hop and TCPRoute/UDPRoute are still the Gateway API's experimental channel
  (v1alpha2, not in the standard CRDs the gateways run on).
- The address is the app's: two apps may both use 1883, and no app port can collide with the gateways' 80 and 443.
- LB-IPAM hands a requested address to one Service only: without a sharing key (which this program never sets) a
  second Service asking for it gets none (Cilium Documentation/network/lb-ipam.rst, "Requesting IPs" and "Sharing
  Keys"), and the inventory reserves it (stacks.apps) so nothing of the stack asks for it twice.

Every object here is plain data; components.edge.Ports creates them on Arda.
"""

from __future__ import annotations

from typing import Any

from plans.edge import MANAGED_BY
from plans.remote_access import OPERATOR_NAMESPACE
from stacks.model import App, StackConfig

LBIPAM_ANNOTATION = "lbipam.cilium.io/ips"
# The Service's name: the app's, with a suffix so it never takes the name of the Service its own chart makes.
SUFFIX = "-lan"


def apps(stack: StackConfig) -> list[App]:
    """The apps served on their own address, by name."""
    return sorted((a for a in stack.apps if a.ports), key=lambda a: a.name)


def _meta(app: App, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": app.namespace, "labels": {**MANAGED_BY, "iluvatar/app": app.name}}


def service(app: App) -> dict[str, Any]:
    """The app's LoadBalancer Service at its address, one port per entry, to the pods its selector matches.

    externalTrafficPolicy stays Cluster: Cilium's L2 announcements elect the announcing node by lease without looking
    at where the pods run, so Local would drop the traffic that lands on a node without one."""
    assert app.address is not None
    ports = [
        {
            "name": p.port_name,
            "port": p.port,
            "protocol": p.protocol.upper(),
            "targetPort": p.target_port if p.target_port is not None else p.port,
        }
        for p in app.ports
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {**_meta(app, app.name + SUFFIX), "annotations": {LBIPAM_ANNOTATION: str(app.address)}},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster", "selector": app.pod_selector, "ports": ports},
    }


def network_policy(stack: StackConfig, app: App) -> dict[str, Any]:
    """Only the app's ports, and only from the LAN and the tailnet's router.

    A LAN client's packet reaches the pod with its own address when the pod runs on the announcing node, else
    masqueraded to that node's (the `remote-node` identity; `host` for the node itself), as Cilium forwards a
    LoadBalancer Service's traffic with externalTrafficPolicy Cluster: a NetworkPolicy's ipBlock cannot name those
    (plans.logs.store_network_policies says the same), so this is a CiliumNetworkPolicy. With the tailscale flavour
    the subnet routers are pods of the operator's namespace on Arda; Headscale's router is on the Ainur, so on the
    LAN."""
    to_ports = [{"ports": [{"port": str(p.target_port if p.target_port is not None else p.port), "protocol": p.protocol.upper()} for p in app.ports]}]
    ingress: list[dict[str, Any]] = [
        {"fromCIDR": [str(stack.network.lan)], "toPorts": to_ports},
        {"fromEntities": ["host", "remote-node"], "toPorts": to_ports},
    ]
    remote = stack.remote_access
    if remote is not None and remote.flavour == "tailscale" and any("ports" in g.reach for g in remote.access):
        ingress.append({"fromEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": OPERATOR_NAMESPACE}}], "toPorts": to_ports})
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": _meta(app, app.name + SUFFIX),
        "spec": {"endpointSelector": {"matchLabels": app.pod_selector}, "ingress": ingress},
    }


def manifests(stack: StackConfig) -> list[dict[str, Any]]:
    """Each app's Service and its policy, by app name."""
    return [m for app in apps(stack) for m in (service(app), network_policy(stack, app))]
