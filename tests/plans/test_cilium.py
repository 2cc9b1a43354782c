"""Cilium values and custom resources: the CRs pass their real CRD schemas."""

from __future__ import annotations

from typing import Any

from plans import cilium
from stacks import load_stack_file, parse_stack, read_stack_file
from tests.edit import HOMELAB, RK1
from tests.schemas import crd_errors


def test_the_crd_check_can_fail() -> None:
    bad = cilium.load_balancer_pool(load_stack_file(HOMELAB))
    bad["spec"]["blocks"][0]["begin"] = bad["spec"]["blocks"][0].pop("start")
    assert crd_errors(bad) != []


def test_custom_resources_validate_against_their_crds() -> None:
    for path in (HOMELAB, RK1):
        stack = load_stack_file(path)
        for manifest in (cilium.load_balancer_pool(stack), cilium.l2_announcement_policy(stack)):
            assert crd_errors(manifest) == [], manifest


def test_pool_is_the_stacks_load_balancer_pool() -> None:
    pool = cilium.load_balancer_pool(load_stack_file(HOMELAB))
    assert pool["spec"]["blocks"] == [{"start": "192.168.0.220", "stop": "192.168.0.239"}]


def test_values_replace_kube_proxy_through_kubeprism() -> None:
    values = cilium.helm_values(load_stack_file(HOMELAB))
    assert values["kubeProxyReplacement"] is True
    assert (values["k8sServiceHost"], values["k8sServicePort"]) == ("localhost", 7445)
    assert values["l2announcements"] == {"enabled": True}
    assert values["cgroup"] == {"autoMount": {"enabled": False}, "hostRoot": "/sys/fs/cgroup"}
    assert "SYS_MODULE" not in values["securityContext"]["capabilities"]["ciliumAgent"]
    assert values["loadBalancer"] == {"algorithm": "maglev"}


def test_raw_values_pass_through_and_win() -> None:
    raw: dict[str, Any] = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:arda"] = {
        **raw["iluvatar:arda"],
        "cilium": {"hubble": False, "values": {"loadBalancer": {"mode": "dsr"}, "bpf": {"masquerade": True}}},
    }
    values = cilium.helm_values(parse_stack(raw))
    assert values["loadBalancer"] == {"algorithm": "maglev", "mode": "dsr"}
    assert values["bpf"] == {"masquerade": True}
    assert values["hubble"]["enabled"] is False


def test_operator_replicas_fit_small_clusters() -> None:
    raw: dict[str, Any] = dict(read_stack_file(RK1).config)
    raw["iluvatar:nodes"] = raw["iluvatar:nodes"][:1]
    assert cilium.helm_values(parse_stack(raw))["operator"]["replicas"] == 1
