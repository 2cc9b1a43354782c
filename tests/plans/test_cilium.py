"""Cilium values and custom resources, checked by the real chart, real Helm and real kubeconform.

The chart, its values schema and the CRDs are Cilium's own, from github.com/cilium/cilium at the
chart version each stack installs (tools.upstream; docs/proof/upstream.md).
"""

from __future__ import annotations

import copy
import functools
import json
from ipaddress import IPv4Address
from typing import Any

import jsonschema
import pytest

from plans import cilium, kms, logs
from stacks import StackConfig, StackConfigError, load_stack_file, parse_stack, read_stack_file
from stacks.apps import NODE_LISTENERS
from stacks.logs_model import Logs
from tests.edit import HOMELAB, RK1
from tests.schemas import crd_errors, prometheus_crds
from tools import upstream
from tools.upstream.crds import crd_schema_dir


def _stack_with_cilium(path: Any, **settings: Any) -> StackConfig:
    raw: dict[str, Any] = dict(read_stack_file(path).config)
    raw["iluvatar:arda"] = {**raw["iluvatar:arda"], "cilium": settings}
    return parse_stack(raw)


def _render(stack: StackConfig) -> list[dict[str, Any]]:
    return upstream.helm_template(
        upstream.chart(cilium.CHART, stack.arda.cilium.version),
        cilium.helm_values(stack),
        release="cilium",
        namespace=cilium.NAMESPACE,
        kube_version=stack.arda.kubernetes_version,
    )


@functools.cache
def _rendered(path: Any) -> tuple[dict[str, Any], ...]:
    return tuple(_render(load_stack_file(path)))


def _find(objects: Any, kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return copy.deepcopy(found)


def _container(workload: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    key = "initContainers" if init else "containers"
    [found] = [c for c in workload["spec"]["template"]["spec"].get(key, []) if c["name"] == name]
    return dict(found)


# --- custom resources against the CRDs at the chart version


def test_the_crd_check_can_fail() -> None:
    bad = cilium.load_balancer_pool(load_stack_file(HOMELAB))
    bad["spec"]["blocks"][0]["begin"] = bad["spec"]["blocks"][0].pop("start")
    assert crd_errors(bad) == ["spec/blocks/0: Additional properties are not allowed ('begin' was unexpected)"]


def test_custom_resources_validate_against_their_crds() -> None:
    for path in (HOMELAB, RK1):
        stack = load_stack_file(path)
        for manifest in (cilium.load_balancer_pool(stack), cilium.l2_announcement_policy(stack), *cilium.app_pools(stack)):
            assert crd_errors(manifest, stack.arda.cilium.version) == [], manifest


def test_custom_resources_pass_kubeconform_at_the_chart_version() -> None:
    for path in (HOMELAB, RK1):
        stack = load_stack_file(path)
        resources = [cilium.load_balancer_pool(stack), cilium.l2_announcement_policy(stack), *cilium.app_pools(stack)]
        assert upstream.kubeconform(resources, stack.arda.kubernetes_version, crds=[("cilium", stack.arda.cilium.version)]) == []


def test_kubeconform_rejects_a_broken_custom_resource() -> None:
    stack = load_stack_file(HOMELAB)
    policy = cilium.l2_announcement_policy(stack)
    policy["spec"]["interfaces"] = "lan0"  # a list in the CRD
    pool = cilium.load_balancer_pool(stack)
    pool["apiVersion"] = "cilium.io/v2alpha2"  # a version Cilium 1.18.4 does not serve
    assert upstream.kubeconform([policy, pool], "v1.35.1", crds=[("cilium", "1.18.4")]) == [
        "CiliumL2AnnouncementPolicy iluvatar-lan: /spec/interfaces: got string, want array",
        "CiliumLoadBalancerIPPool iluvatar-lan: could not find schema for CiliumLoadBalancerIPPool",
    ]


def test_pool_is_the_stacks_load_balancer_pool() -> None:
    pool = cilium.load_balancer_pool(load_stack_file(HOMELAB))
    assert pool["spec"]["blocks"] == [{"start": "192.168.0.222", "stop": "192.168.0.239"}]  # but the apps' own (app_pools)


# --- values against the chart's values schema


def test_values_match_the_charts_values_schema() -> None:
    for path in (HOMELAB, RK1):
        stack = load_stack_file(path)
        assert upstream.values_errors(upstream.chart(cilium.CHART, stack.arda.cilium.version), cilium.helm_values(stack)) == []


def test_a_misspelled_value_is_an_error() -> None:
    # A key one typo from a key Cilium's schema or templates read is refused at preview (stacks.chart_values), with the
    # key meant; Helm would drop it without a word, since Cilium's schema takes any key.
    with pytest.raises(StackConfigError) as raised:
        _stack_with_cilium(HOMELAB, values={"kubeProxyReplacment": False, "bpf": {"masqurade": True}})
    assert str(raised.value) == (
        "stack config: 2 problems:\n"
        "  iluvatar:arda.cilium.values.bpf.masqurade: masqurade is not a key of Cilium 1.18.4's values, and one typo from masquerade, "
        "which its values schema or templates read here; did you mean masquerade: true? (Helm would drop masqurade without a word)\n"
        "  iluvatar:arda.cilium.values.kubeProxyReplacment: kubeProxyReplacment is not a key of Cilium 1.18.4's values, and one typo "
        "from kubeProxyReplacement, which its values schema or templates read here; did you mean kubeProxyReplacement: false? "
        "(Helm would drop kubeProxyReplacment without a word)"
    )
    # A letter changed for another is no typo at preview (two real keys differ so); the closed schema the tests read
    # (tools.upstream.values_errors) still finds such a key in what the program renders.
    stack = _stack_with_cilium(HOMELAB, values={"devicez": ["eth0"]})
    assert upstream.values_errors(upstream.chart(cilium.CHART, "1.18.4"), cilium.helm_values(stack)) == [
        "<root>: Additional properties are not allowed ('devicez' was unexpected)",
    ]


def test_a_value_of_the_wrong_type_is_an_error() -> None:
    # Refused at preview with what Cilium's schema takes, where Helm would refuse it in the middle of `pulumi up`.
    with pytest.raises(StackConfigError) as raised:
        _stack_with_cilium(HOMELAB, values={"operator": {"replicas": "two"}})
    assert str(raised.value) == (
        "stack config: 1 problem:\n"
        "  iluvatar:arda.cilium.values.operator.replicas: two is not a whole number, which Cilium 1.18.4's values schema takes "
        "here; Helm would refuse it in the middle of pulumi up"
    )
    assert upstream.values_errors(upstream.chart(cilium.CHART, "1.18.4"), {"operator": {"replicas": "two"}}) == [
        "operator.replicas: 'two' is not of type 'integer'",
    ]


def test_a_value_only_the_templates_read_is_known() -> None:
    # loadBalancer.algorithm is commented out in Cilium's values.yaml, so its schema omits it, but
    # the config map template reads it: it is a real value.
    chart = upstream.chart(cilium.CHART, "1.18.4")
    assert ("loadBalancer", "algorithm") in upstream.template_value_paths(chart)
    assert upstream.values_errors(chart, {"loadBalancer": {"algorithm": "maglev"}}) == []
    assert upstream.values_errors(chart, {"loadBalancer": {"algoritm": "maglev"}}) == [
        "loadBalancer: Additional properties are not allowed ('algoritm' was unexpected)",
    ]


# --- the real chart rendered by real Helm with the program's values


def test_the_chart_renders_and_every_object_passes_kubeconform() -> None:
    for path in (HOMELAB, RK1):
        stack = load_stack_file(path)
        objects = list(_rendered(path))
        # With monitoring (both stacks): the agent's and the operator's metrics Services and ServiceMonitors.
        assert len(objects) == 34 + 4 * (stack.monitoring is not None)
        assert sorted(o["metadata"]["name"] for o in objects if o["kind"] == "ServiceMonitor") == ["cilium-agent", "cilium-operator"]
        crds = [("cilium", stack.arda.cilium.version), *prometheus_crds(stack)]
        assert upstream.kubeconform(objects, stack.arda.kubernetes_version, crds=crds) == []


def test_kubeconform_rejects_a_broken_rendered_object() -> None:
    agent = _find(_rendered(HOMELAB), "DaemonSet", "cilium")
    agent["spec"]["template"]["spec"]["hostNetwerk"] = True
    assert upstream.kubeconform([agent], "v1.35.1") == ["DaemonSet cilium: /spec/template/spec: additional properties 'hostNetwerk' not allowed"]


def _node_ports(objects: list[dict[str, Any]]) -> set[tuple[int, str]]:
    """Every port the rendered release opens on a machine's own network: its host-network pods' container ports, the
    listen addresses its ConfigMap hands the agent and the operator, Envoy's bootstrap listeners and the VXLAN tunnel."""
    found: set[tuple[int, str]] = set()
    for obj in objects:
        if obj["kind"] in ("DaemonSet", "Deployment") and obj["spec"]["template"]["spec"].get("hostNetwork"):
            for container in obj["spec"]["template"]["spec"]["containers"]:
                found |= {(p["containerPort"], p.get("protocol", "TCP").lower()) for p in container.get("ports") or []}
    config = _find(objects, "ConfigMap", "cilium-config")["data"]
    for key, value in config.items():
        if (key.endswith("-serve-addr") or key.endswith("-listen-address") or key == "hubble-metrics-server") and value:
            found.add((int(value.rsplit(":", 1)[1]), "tcp"))
    if config.get("routing-mode") == "tunnel":
        found.add(({"vxlan": 8472, "geneve": 6081}[config["tunnel-protocol"]], "udp"))
    if config.get("enable-wireguard") == "true":
        found.add((51871, "udp"))  # Cilium's WireGuard port (pkg/wireguard/types/types.go:9 at v1.18.4)
    bootstrap = json.loads(_find(objects, "ConfigMap", "cilium-envoy-config")["data"]["bootstrap-config.json"])
    found |= {(listener["address"]["socketAddress"]["portValue"], "tcp") for listener in bootstrap["staticResources"]["listeners"]}
    return found


def test_every_port_the_release_opens_on_a_machine_is_refused_to_a_host_network_app() -> None:
    """stacks.apps.NODE_LISTENERS, read from the chart Helm renders: a host-network app may take none of these ports."""
    opened = _node_ports(list(_rendered(HOMELAB)))
    assert opened == {(4244, "tcp"), (8472, "udp"), (9234, "tcp"), (9878, "tcp"), (9962, "tcp"), (9963, "tcp"), (9964, "tcp")}
    assert opened - set(NODE_LISTENERS) == set()
    # What arda.cilium.values may turn on beside: the Geneve tunnel, WireGuard, Hubble's metrics.
    values = {"tunnelProtocol": "geneve", "encryption": {"enabled": True, "type": "wireguard"}, "hubble": {"metrics": {"enabled": ["dns"]}}}
    more = _node_ports(_render(_stack_with_cilium(HOMELAB, values=values))) - opened
    assert more == {(6081, "udp"), (51871, "udp"), (9965, "tcp")}
    assert more - set(NODE_LISTENERS) == set()


def test_rendered_config_replaces_kube_proxy_through_kubeprism() -> None:
    config = _find(_rendered(HOMELAB), "ConfigMap", "cilium-config")["data"]
    assert config["kube-proxy-replacement"] == "true"
    kubeprism = [{"name": "KUBERNETES_SERVICE_HOST", "value": "localhost"}, {"name": "KUBERNETES_SERVICE_PORT", "value": "7445"}]
    agent, operator = _find(_rendered(HOMELAB), "DaemonSet", "cilium"), _find(_rendered(HOMELAB), "Deployment", "cilium-operator")
    for container in (_container(agent, "cilium-agent"), _container(operator, "cilium-operator")):
        assert [e for e in container["env"] if e["name"].startswith("KUBERNETES_SERVICE_")] == kubeprism
    assert config["enable-l2-announcements"] == "true"
    assert config["bpf-lb-algorithm"] == "maglev"
    assert config["ipam"] == "kubernetes"
    assert (config["k8s-client-qps"], config["k8s-client-burst"]) == ("20", "40")
    assert config["cgroup-root"] == "/sys/fs/cgroup"


def test_rendered_agent_fits_talos() -> None:
    agent = _find(_rendered(HOMELAB), "DaemonSet", "cilium")
    assert _container(agent, "cilium-agent")["securityContext"]["capabilities"] == {
        "add": ["CHOWN", "KILL", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "SYS_ADMIN", "SYS_RESOURCE", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"],
        "drop": ["ALL"],
    }
    assert _container(agent, "clean-cilium-state", init=True)["securityContext"]["capabilities"]["add"] == ["NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"]
    # Talos mounts cgroup v2 itself: no init container mounts it.
    init = [c["name"] for c in agent["spec"]["template"]["spec"]["initContainers"]]
    assert "mount-cgroup" not in init and "apply-sysctl-overwrites" in init


def test_rendered_operator_replicas_fit_the_cluster() -> None:
    for path in (HOMELAB, RK1):
        assert _find(_rendered(path), "Deployment", "cilium-operator")["spec"]["replicas"] == 2
    raw: dict[str, Any] = dict(read_stack_file(RK1).config)
    raw["iluvatar:nodes"] = raw["iluvatar:nodes"][:1]
    raw["iluvatar:storage"] = {"arda": {"ceph": {"replicas": 1}}}  # one OSD host: one copy
    assert _find(_render(parse_stack(raw)), "Deployment", "cilium-operator")["spec"]["replicas"] == 1


def test_hubble_off_renders_no_relay_or_ui() -> None:
    objects = _render(_stack_with_cilium(RK1, hubble=False))
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("Deployment", "hubble-relay") not in names and ("Deployment", "hubble-ui") not in names
    assert ("Deployment", "hubble-relay") in {(o["kind"], o["metadata"]["name"]) for o in _rendered(RK1)}


def test_helm_rejects_what_the_chart_refuses() -> None:
    # validate refuses it first (stacks.chart_owned: not true while Talos runs no kube-proxy); past it, Helm would too.
    stack = load_stack_file(HOMELAB)
    cilium_settings = stack.arda.cilium.model_copy(update={"values": {"kubeProxyReplacement": "yes"}})
    stack = stack.model_copy(update={"arda": stack.arda.model_copy(update={"cilium": cilium_settings})})
    with pytest.raises(upstream.HelmError, match="kubeProxyReplacement must be explicitly set to a valid value"):
        _render(stack)


# --- the plan's values


def test_values_replace_kube_proxy_through_kubeprism() -> None:
    values = cilium.helm_values(load_stack_file(HOMELAB))
    assert values["kubeProxyReplacement"] is True
    assert (values["k8sServiceHost"], values["k8sServicePort"]) == ("localhost", 7445)
    assert values["l2announcements"] == {"enabled": True}
    assert values["cgroup"] == {"autoMount": {"enabled": False}, "hostRoot": "/sys/fs/cgroup"}
    assert "SYS_MODULE" not in values["securityContext"]["capabilities"]["ciliumAgent"]
    assert values["loadBalancer"] == {"algorithm": "maglev"}


def test_raw_values_pass_through_and_win() -> None:
    stack = _stack_with_cilium(HOMELAB, hubble=False, values={"loadBalancer": {"mode": "dsr"}, "bpf": {"masquerade": True}})
    values = cilium.helm_values(stack)
    assert values["loadBalancer"] == {"algorithm": "maglev", "mode": "dsr"}
    assert values["bpf"] == {"masquerade": True}
    assert values["hubble"]["enabled"] is False


def test_operator_replicas_fit_small_clusters() -> None:
    raw: dict[str, Any] = dict(read_stack_file(RK1).config)
    raw["iluvatar:nodes"] = raw["iluvatar:nodes"][:1]
    raw["iluvatar:storage"] = {"arda": {"ceph": {"replicas": 1}}}  # one OSD host: one copy
    assert cilium.helm_values(parse_stack(raw))["operator"]["replicas"] == 1


def test_l2_policy_announces_pool_addresses_on_the_lan_interfaces() -> None:
    """What Cilium answers ARP for, and on which links: the Talos link alias and ethernet NICs, as Talos names them on every board."""
    assert cilium.l2_announcement_policy(load_stack_file(HOMELAB)) == {
        "apiVersion": "cilium.io/v2alpha1",
        "kind": "CiliumL2AnnouncementPolicy",
        "metadata": {"name": "iluvatar-lan"},
        "spec": {"loadBalancerIPs": True, "externalIPs": True, "interfaces": ["^lan0$", "^e.*"]},
    }


def test_a_private_key_in_the_values_is_refused_and_never_echoed() -> None:
    # `base64 -w0 ca.key` under tls.ca.key, as Cilium's values take it: in plain text it would reach the Helm release, the
    # Pulumi state and every render. The certificate beside it is public and stays.
    key = "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IY0NBUUVFSUNrZXlrZXlrZXk="
    cert = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM="
    with pytest.raises(StackConfigError) as raised:
        _stack_with_cilium(HOMELAB, values={"tls": {"ca": {"key": key, "cert": cert}}})
    assert str(raised.value) == (
        "stack config: 1 problem:\n"
        "  iluvatar:arda.cilium.values.tls.ca.key: holds a base64-encoded private key, in plain text; no secret key takes "
        "Cilium's chart values; remove it (docs/reference/stack.md#secrets)"
    )


def ccnp_spec_errors(spec: dict[str, Any], version: str) -> list[str]:
    """A CiliumClusterwideNetworkPolicy's spec against Cilium's CRD at `version`, its fields' own schemas: the whole
    object's schema does not load here (its `log.value` pattern `\\PC` is a Unicode class Python's `re` lacks) and
    kubeconform's conversion of its top-level anyOf/oneOf refuses every policy (tests/plans/test_ports.py)."""
    path = crd_schema_dir("cilium", version) / "cilium.io" / "ciliumclusterwidenetworkpolicy_v2.json"
    schema = {k: v for k, v in json.loads(path.read_text())["properties"]["spec"].items() if k not in ("anyOf", "oneOf")}
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k != "log"}
    validator = jsonschema.Draft7Validator(schema)
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(spec))


def test_no_pod_on_arda_reaches_the_kms_which_admits_the_machines_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pods masquerade to their node's address, the one the KMS and the Pis' Talos log receivers admit: a clusterwide
    deny keeps every pod from those ports without isolating any (enableDefaultDeny off), and Cilium's own CRD at the
    chart version accepts it."""
    stack = load_stack_file(HOMELAB)
    deny = cilium.kms_egress_deny(stack)
    assert deny == {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumClusterwideNetworkPolicy",
        "metadata": {"name": "iluvatar-kms-no-pods"},
        "spec": {
            "description": "No pod reaches the Ainur's KMS or Talos's log receivers: they admit the Arda machines' addresses, which pods masquerade as",
            "endpointSelector": {},
            "enableDefaultDeny": {"egress": False, "ingress": False},
            "egressDeny": [
                {"toCIDR": ["192.168.0.14/32"], "toPorts": [{"ports": [{"port": "4050", "protocol": "TCP"}]}]},
                # Every Pi's receiver answers on each of its addresses: the whole LAN, not the service address alone.
                {"toCIDR": ["192.168.0.0/24"], "toPorts": [{"ports": [{"port": "6050", "protocol": "TCP"}, {"port": "6051", "protocol": "TCP"}]}]},
            ],
        },
    }
    # Talos sends its services' and kernel's lines to those two ports of that address (plans.logs.talos_logging).
    assert (logs.talos_host(stack), logs.SERVICE_PORT, logs.KERNEL_PORT) == (IPv4Address("192.168.0.14"), 6050, 6051)
    # Without logs, no receiver: the KMS's port alone.
    no_logs = stack.model_copy(update={"logs": stack.logs.model_copy(update={"enabled": False}) if stack.logs else Logs(enabled=False)})
    assert not logs.enabled(no_logs)
    bare = cilium.kms_egress_deny(no_logs)
    assert bare is not None
    assert bare["spec"]["egressDeny"] == [{"toCIDR": ["192.168.0.14/32"], "toPorts": [{"ports": [{"port": "4050", "protocol": "TCP"}]}]}]
    # Without the KMS, the receivers are kept from the pods all the same.
    with monkeypatch.context() as m:
        m.setattr(kms, "enabled", lambda _stack: False)
        receivers_only = cilium.kms_egress_deny(stack)
    assert receivers_only is not None
    assert receivers_only["spec"]["egressDeny"] == [
        {"toCIDR": ["192.168.0.0/24"], "toPorts": [{"ports": [{"port": "6050", "protocol": "TCP"}, {"port": "6051", "protocol": "TCP"}]}]}
    ]
    # The chart masquerades (its default kept): the reason for the policy holds.
    assert "enableIPv4Masquerade" not in cilium.helm_values(stack)
    assert deny is not None
    assert ccnp_spec_errors(deny["spec"], stack.arda.cilium.version) == []
    broken = copy.deepcopy(deny["spec"])
    broken["enableDefaultDeny"]["egress"] = "no"
    broken["egressDeny"][0]["toCIDRs"] = broken["egressDeny"][0].pop("toCIDR")
    assert ccnp_spec_errors(broken, stack.arda.cilium.version) == [
        "egressDeny/0: Additional properties are not allowed ('toCIDRs' was unexpected)",
        "enableDefaultDeny/egress: 'no' is not of type 'boolean'",
    ]
    # Without the Ainur there is no KMS, and nothing to keep pods from.
    assert cilium.kms_egress_deny(load_stack_file(RK1)) is None
