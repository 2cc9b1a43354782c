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

from plans import netpol
from plans.cilium import APP_SERVICE_SUFFIX
from plans.edge import MANAGED_BY
from plans.remote_access import OPERATOR_NAMESPACE, reached_apps
from stacks.model import App, AppClient, StackConfig

LBIPAM_ANNOTATION = "lbipam.cilium.io/ips"
# The label Cilium gives every endpoint for its pod's namespace (selecting another namespace's pods by it).
NAMESPACE_LABEL = "k8s:io.kubernetes.pod.namespace"
# The Service's name: the app's, with a suffix so it never takes the name of the Service its own chart makes; its
# address's pool selects it by that name (plans.cilium.app_pools).
SUFFIX = APP_SERVICE_SUFFIX


def apps(stack: StackConfig) -> list[App]:
    """The apps served on their own address, by name."""
    return sorted((a for a in stack.apps if a.ports), key=lambda a: a.name)


def _meta(app: App, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": app.namespace, "labels": {**MANAGED_BY, "iluvatar/app": app.name}}


def source_ranges(stack: StackConfig, app: App) -> list[str]:
    """Who outside the cluster reaches the app's address: its `sources` (network.lan, the VLANs it names), and the
    tailnet's router when a group reaches the app's ports through Headscale's router, on the Ainur (its packets leave from a
    Pi's own address, the tailnet's source masqueraded). Tailscale's routers are pods of Arda: their packets never
    meet this check (below), their policy rule admits them."""
    vlans = {v.name: str(v.cidr) for v in stack.network.vlans}
    found = [str(stack.network.lan) if name == "lan" else vlans[name] for name in app.sources if name == "lan" or name in vlans]
    remote = stack.remote_access
    if remote is not None and remote.flavour == "headscale" and app in reached_apps(stack):
        found += [f"{n.ip}/32" for n in stack.ainur_nodes]
    return list(dict.fromkeys(found))


def service(stack: StackConfig, app: App) -> dict[str, Any]:
    """The app's LoadBalancer Service at its address, one port per entry, to the pods its selector matches.

    externalTrafficPolicy stays Cluster: Cilium's L2 announcements elect the announcing node by lease without looking
    at where the pods run, so Local would drop the traffic that lands on a node without one. That node then masquerades
    the packet to its own address when the pod runs elsewhere, so the pod's policy cannot see who sent it: the source
    is checked where Cilium still sees it, at the Service's address. `loadBalancerSourceRanges` becomes the Service's
    source ranges (Cilium v1.18.4 pkg/loadbalancer/reflectors/conversions.go:126), checked for a packet from outside
    before any forwarding or masquerade (bpf/lib/nodeport.h:2610, nodeport_svc_lb4; lb.h:1395, lb4_src_range_ok)
    on whichever node took it; the chart compiles that check in by default (values.yaml svcSourceRangeCheck: true,
    pkg/datapath/linux/config/config.go:452). A pod's own connection is translated at its socket or its endpoint,
    where no source range applies: the policy below judges it.

    No NodePort (`netpol.load_balancer`): Cilium's kube-proxy replacement serves each NodePort on every Arda machine's
    address (v1.18.4 pkg/loadbalancer/reflectors/conversions.go:228-278, a frontend for each port with a nodePort), so
    one would open the app's port on every worker to whatever a remote-access route to that worker lets in, past
    `reach: ports`. The address needs none: LB IPAM takes any LoadBalancer Service (operator/pkg/lbipam/lbipam.go:
    1223-1238), the L2 announcements announce its ingress address (pkg/l2announcer/l2announcer.go:315-329), and the
    datapath serves that address on the Service's own port (conversions.go:281-321), none of them reading a NodePort."""
    assert app.address is not None
    ports = [
        {
            "name": p.port_name,
            "port": p.port,
            "protocol": p.protocol.upper(),
            "targetPort": p.container_port,
        }
        for p in app.ports
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {**_meta(app, app.name + SUFFIX), "annotations": {LBIPAM_ANNOTATION: str(app.address)}},
        "spec": netpol.load_balancer(
            ports, externalTrafficPolicy="Cluster", selector=app.pod_selector, loadBalancerSourceRanges=source_ranges(stack, app)
        ),
    }


def _to_ports(app: App, client: AppClient | None = None) -> list[dict[str, Any]]:
    if client is not None and client.ports:
        return [{"ports": [{"port": str(p), "protocol": "TCP"} for p in client.ports]}]
    return [{"ports": [{"port": str(p.container_port), "protocol": p.protocol.upper()} for p in app.ports]}]


def client_selector(client: AppClient) -> dict[str, Any]:
    """A client's pods as Cilium names them: its namespace (Cilium's own label of it) and its pods' labels."""
    return {"matchLabels": {NAMESPACE_LABEL: client.namespace, **(client.pods or {})}}


def network_policy(stack: StackConfig, app: App) -> dict[str, Any]:
    """Only the app's ports: from its sources, from the nodes, and from the pods it names.

    Outside sources are the Service's (`source_ranges`), already checked at the address on every node; a packet that
    passed reaches the pod with its own address when the pod runs on the node that took it, else masqueraded to that
    node's (`remote-node`; `host` for the node itself), so both are admitted and who gets in does not depend on where
    the pod runs. A NetworkPolicy's ipBlock cannot name those entities (plans.logs.store_network_policies says the
    same), so this is a CiliumNetworkPolicy. Pods are admitted by name only: the app's `clients`, and with the
    tailscale flavour the subnet routers, pods of the operator's namespace on Arda."""
    to_ports = _to_ports(app)
    ingress: list[dict[str, Any]] = [
        {"fromCIDR": source_ranges(stack, app), "toPorts": to_ports},
        {"fromEntities": ["host", "remote-node"], "toPorts": to_ports},
    ]
    ingress += [{"fromEndpoints": [client_selector(c)], "toPorts": _to_ports(app, c)} for c in app.clients]
    remote = stack.remote_access
    if remote is not None and remote.flavour == "tailscale" and app in reached_apps(stack):
        ingress.append({"fromEndpoints": [{"matchLabels": {NAMESPACE_LABEL: OPERATOR_NAMESPACE}}], "toPorts": to_ports})
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": _meta(app, app.name + SUFFIX),
        "spec": {"endpointSelector": {"matchLabels": app.pod_selector}, "ingress": ingress},
    }


def manifests(stack: StackConfig) -> list[dict[str, Any]]:
    """Each app's Service and its policy, by app name."""
    return [m for app in apps(stack) for m in (service(stack, app), network_policy(stack, app))]
