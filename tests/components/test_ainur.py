"""Ainur and netboot under the mock runtime: graph, join order, secrets, and what is served."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
import re
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components import netboot as netboot_component
from iluvatar import simulate as simulate_module
from iluvatar.graph import EngineRefusedError, StateEntry, state_delete, state_of
from iluvatar.simulate import MOCK_CA_HASH, PLACEHOLDER, SecretValue, Simulation
from iluvatar.simulate import _uuid as simulate_uuid
from plans import agent_token, cloudinit, k3s
from plans import netboot as netboot_plan
from plans.netboot import vip_roll
from stacks import day2, load_stack_file, read_stack_file, releases
from tests import runbook
from tests.edit import HOMELAB, RK1, edit, homelab_doc, write_stack
from tests.remote_stacks import HEADSCALE, remote_doc
from tests.sims import logged_run, outputs_of, simulate, simulated
from tools.kube_cluster import ProviderOptions, pulumi_replacement

# The shipped stack's dnsmasq.conf's ConfigMap (plans.netboot.base.dnsmasq_configmap).
CONF = netboot_plan.dnsmasq_configmap(netboot_plan.dnsmasq_conf(load_stack_file(HOMELAB)))


def test_bootstrap_cluster_graph(homelab: Simulation) -> None:
    regs = homelab.named()
    ainur = regs["ainur"]
    assert ainur.type == "iluvatar:ainur:BootstrapCluster"
    assert sorted(r.name for r in homelab.children(ainur)) == [
        "ainur-ca-hash", "ainur-command", "ainur-credentials", "ainur-eonwe", "ainur-gate-api", "ainur-ilmare", "ainur-k3s-token",
        "ainur-kubernetes", "ainur-manwe", "ainur-random",
        # While the flag is on: a config k3s kept from a disable turned back on (plans.k3s.secrets_on_script), then the
        # rewrite of the Ainur's Secrets under k3s's key, once every valar runs with it (plans.k3s.secrets_rewrite_script).
        # Which way the stack last asked for the flag (its id the on step's trigger), whatever the flag.
        "ainur-secrets-epoch",
        "ainur-secrets-on", "ainur-secrets-rewrite",
        "ainur-validatingadmissionpolicy-iluvatar-node-registration",
        "ainur-validatingadmissionpolicybinding-iluvatar-node-registration",
    ]  # fmt: skip
    # The Secrets rewritten once, on the first valar, after the last valar's step (its join and k3s upgrade, one at a time).
    on = regs["ainur-secrets-on"]
    assert on.inputs["create"] == k3s.secrets_on_script()
    assert [d.rsplit("::", 1)[1] for d in on.dependencies if "::ainur-manwe-" in d] != []
    rewrite = regs["ainur-secrets-rewrite"]
    assert rewrite.inputs["create"] == k3s.secrets_rewrite_script()
    assert rewrite.dependencies == (on.urn,)
    # Who may register a Node (plans.k3s.node_admission), through the Ainur's API, before any maia joins.
    policy = regs["ainur-validatingadmissionpolicy-iluvatar-node-registration"]
    assert policy.inputs["spec"] == k3s.node_admission(load_stack_file(HOMELAB))[0]["spec"]
    for pi in ("eonwe", "ilmare"):
        assert policy.urn in regs[f"ainur-{pi}-join"].dependencies, pi
    for pi in ("manwe", "eonwe", "ilmare"):
        assert regs[f"ainur-{pi}"].type == "iluvatar:ainur:Pi"
        # The cloud-init files are flashed before any `pulumi up` (iluvatar render): the Pi joins, then runs the stack's k3s.
        # A valar first installs its API server's authentication config (the homelab signs in with Dex, plans.apiserver).
        oidc = [f"ainur-{pi}-oidc"] if pi == "manwe" else []
        # A maia: its own join token (plans.agent_token), its id, its secret and its bootstrap-token Secret.
        own = [f"ainur-{pi}-token-id", f"ainur-{pi}-token-secret", f"ainur-{pi}-agent-token"] if pi != "manwe" else []
        children = [r.name for r in homelab.children(regs[f"ainur-{pi}"])]
        # Its netboot gate after its k3s step (the household's DHCP and DNS back before the next Pi: plans.netboot.roll).
        steps = [f"ainur-{pi}-join", f"ainur-{pi}-k3s", f"ainur-{pi}-netboot-ready", f"ainur-{pi}-uninstall"]
        assert sorted(children) == sorted([*oidc, *own, *steps])
        # The uninstall runs only when the Pi leaves (its delete); nothing runs at create, nothing waits for it.
        uninstall = regs[f"ainur-{pi}-uninstall"]
        assert (uninstall.inputs.get("create"), uninstall.inputs["delete"]) == (None, k3s.UNINSTALL_SCRIPT)
        assert uninstall.dependencies == (regs[f"ainur-{pi}-join"].urn,)
        assert "delete" not in regs[f"ainur-{pi}-join"].inputs


def test_first_valar_joins_first_and_serves_the_kubeconfig(homelab: Simulation) -> None:
    regs = homelab.named()
    first = regs["ainur-manwe-join"].urn
    assert first not in regs["ainur-manwe-join"].dependencies
    # One Pi after the other: the first valar, then each Pi after the one before it (a restart at a time).
    assert first in regs["ainur-eonwe-join"].dependencies
    assert regs["ainur-eonwe-join"].urn in regs["ainur-ilmare-join"].dependencies
    # One chain for joins and upgrades: a Pi's join waits for the previous Pi's k3s step, which waits for that Pi's join,
    # so a run with a k3s bump and a shared setting never restarts two Pis at once. With secrets encryption the valar's
    # part of the chain ends at ainur-secrets-on (its restart of the first valar's k3s, when one is needed, is one too).
    assert regs["ainur-manwe-k3s"].urn in regs["ainur-secrets-on"].dependencies
    for pi, before in (("eonwe", "secrets-on"), ("ilmare", "eonwe-k3s")):
        assert regs[f"ainur-{before}"].urn in regs[f"ainur-{pi}-join"].dependencies, pi
        assert {regs[f"ainur-{pi}-join"].urn, regs[f"ainur-{before}"].urn} <= set(regs[f"ainur-{pi}-k3s"].dependencies), pi
    assert first in regs["ainur-credentials"].dependencies
    connection = regs["ainur-credentials"].inputs["connection"]
    assert isinstance(connection, SecretValue)  # pulumi-command keeps the whole connection secret
    # SSH is retried while the Pi boots: 60 dials of up to 15 s each.
    assert connection.value == {"host": "192.168.0.11", "user": "ubuntu", "dialErrorLimit": 60, "perDialTimeout": 15, "port": 22}


def test_a_pis_journal_step_gives_up_on_a_pi_that_is_off_in_a_minute(homelab: Simulation) -> None:
    """The journal step's delete runs whenever logs go off: its own dial bound (4 dials of 15 s, plans.logs), not the
    Pis' 20 minutes, and otherwise the Pi's own connection and key."""
    regs = homelab.named()
    for pi, ip in (("manwe", "192.168.0.11"), ("eonwe", "192.168.0.12"), ("ilmare", "192.168.0.13")):
        connection = regs[f"logs-ainur-{pi}-journal-upload"].inputs["connection"]
        assert isinstance(connection, SecretValue)
        assert connection.value == {"host": ip, "user": "ubuntu", "dialErrorLimit": 3, "perDialTimeout": 15, "port": 22}, pi
        assert regs[f"ainur-{pi}-join"].inputs["connection"].value["dialErrorLimit"] == 60, pi


def test_the_provider_waits_for_the_api_through_the_vip(homelab: Simulation) -> None:
    regs = homelab.named()
    gate = regs["ainur-gate-api"]
    assert gate.inputs["create"] == ".venv/bin/iluvatar upgrader wait-kube --api --timeout 10m"
    assert regs["ainur-credentials"].urn in gate.dependencies
    stdin = json.loads(gate.inputs["stdin"].value)
    kubeconfig = yaml.safe_load(stdin["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://192.168.0.10:6443"
    # A ServiceAccount token made on the first valar: it does not expire with k3s's admin certificate.
    assert kubeconfig["users"] == [{"name": "iluvatar-pulumi", "user": {"token": "[secret]"}}]
    credentials = regs["ainur-credentials"]
    assert credentials.inputs["logging"] == "stderr"  # the token, on stdout, is never printed
    assert sorted(credentials.additional_secret_outputs) == ["connection", "stdout"]
    provider = regs["ainur-kubernetes"]
    assert gate.urn in provider.dependencies
    assert gate.urn in provider.property_dependencies["kubeconfig"]


def test_the_netboot_configmap_changes_in_place(homelab: Simulation) -> None:
    """The `netboot` ConfigMap, whose records the running dnsmasq follows, changes with every app and
    machine added. Replaced, pulumi-kubernetes deletes it and creates it again only after (same name), and a netboot pod
    started in between waits for its volume, the LAN's DHCP and DNS with it. The Ainur's provider updates ConfigMaps in
    place; dnsmasq.conf's own ConfigMap, immutable and named by its content, is still a new object for a new conf."""
    regs = homelab.named()
    options = ProviderOptions.from_inputs(regs["ainur-kubernetes"].inputs)
    assert options.enable_config_map_mutable
    stack = load_stack_file(HOMELAB)

    def configmaps(extra: list[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
        return {m["metadata"]["name"]: m for m in netboot_plan.manifests(stack, [], extra) if m["kind"] == "ConfigMap"}

    before, after = configmaps([]), configmaps([("grafana", IPv4Address("192.168.0.60"))])
    assert before["netboot"]["data"] != after["netboot"]["data"]
    assert pulumi_replacement(before["netboot"], after["netboot"], options) == ([], False)
    # What the provider does without it: the delete first.
    assert pulumi_replacement(before["netboot"], after["netboot"]) == ([".data"], True)
    # The conf's own ConfigMap is immutable: a change of it is a replacement, under another name (create first).
    other = {**before[CONF], "metadata": {**before[CONF]["metadata"], "name": "netboot-dnsmasq-0000000000000000"}, "data": {"dnsmasq.conf": "#"}}
    assert pulumi_replacement(before[CONF], other, options) == ([".metadata.name", ".data"], False)


def test_join_token_travels_only_as_a_secret(homelab: Simulation) -> None:
    regs = homelab.named()
    for pi in ("manwe", "eonwe", "ilmare"):
        join = regs[f"ainur-{pi}-join"].inputs
        assert isinstance(join["stdin"], SecretValue)
        config = yaml.safe_load(join["stdin"].value)
        # The valar: the server token (the RandomPassword result); a maia its own (test_each_maia_joins_with_its_own_agent_token).
        assert (config["token"] == PLACEHOLDER) == (pi == "manwe")
        assert PLACEHOLDER not in join["create"] and config["token"] not in join["create"]
        assert join["logging"] == "none"
    assert "cluster-init" in yaml.safe_load(regs["ainur-manwe-join"].inputs["stdin"].value)
    assert yaml.safe_load(regs["ainur-eonwe-join"].inputs["stdin"].value)["server"] == "https://192.168.0.10:6443"


def test_kubeconfig_is_a_secret_pointed_at_the_vip(homelab: Simulation) -> None:
    kubeconfig = homelab.outputs["ainurKubeconfig"]
    assert isinstance(kubeconfig, SecretValue)
    assert yaml.safe_load(kubeconfig.value)["clusters"][0]["cluster"]["server"] == "https://192.168.0.10:6443"


def test_the_netboot_clearance_runs_on_whichever_valar_holds_the_api_vip(homelab: Simulation) -> None:
    """Issue 57 (6): the clearance runs before every roll of the netboot pods (a Talos upgrade is one) and dialled the
    first valar alone, so with it down each such `up` stopped before Arda's roll. It dials the Ainur's API VIP, which
    kube-vip holds on a live valar (a k3s server, whose admin kubectl the step uses), with the first valar's user, key and
    dial bound; the steps that run once at bring-up (credentials, the CA hash) stay on the first valar."""
    regs = homelab.named()
    clearance = regs["netboot-clearance"].inputs["connection"]
    first = regs["ainur-credentials"].inputs["connection"]
    assert isinstance(clearance, SecretValue) and isinstance(first, SecretValue)  # the SSH key in it
    assert clearance.value == {**first.value, "host": "192.168.0.10"}
    assert first.value["host"] == "192.168.0.11"


def test_kube_vip_services_is_rolled_by_its_step_after_each_change_of_its_template(homelab: Simulation) -> None:
    """The DaemonSet is OnDelete and not awaited by Pulumi; the step that replaces its pods, the Pi holding the service
    address last (plans.netboot.vip_roll), runs on the valar holding the API VIP after the DaemonSet's update, again
    whenever its template changes (its trigger), bounded by each Pi's wait."""
    regs = homelab.named()
    daemonset, step = regs["netboot-daemonset-kube-vip-services"], regs["netboot-kube-vip-roll"]
    assert daemonset.inputs["spec"]["updateStrategy"] == {"type": "OnDelete"}
    assert daemonset.inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    digest = hashlib.sha256(json.dumps(daemonset.inputs["spec"]["template"], sort_keys=True).encode()).hexdigest()[:16]
    assert step.inputs["triggers"] == [digest]
    assert step.inputs["create"] == vip_roll.roll_script(str(netboot_plan.service_ip(load_stack_file(HOMELAB))), total_seconds=720)
    # After netboot-cache too, which pulls kube-vip's image on every Pi: the holder's new kube-vip starts with no pull.
    # And after every Pi's k3s step and netboot-ready gate and the netboot pod's replacement: no API or kubelet restart,
    # nor a move of the netboot pod, inside the holder's gap. Directly: the engine's closure of each is not needed.
    names = {r.urn: n for n, r in regs.items()}
    pis = [f"ainur-{pi}-{step}" for pi in ("eonwe", "ilmare", "manwe") for step in ("k3s", "netboot-ready")]
    assert sorted(names[u] for u in step.dependencies) == sorted(
        [*pis, "netboot-daemonset-kube-vip-services", "netboot-daemonset-netboot-cache", "netboot-deployment-netboot"]
    )
    assert isinstance(step.inputs["connection"], SecretValue) and step.inputs["connection"].value["host"] == "192.168.0.10"
    # 120 s (the controller, the holder's Lease and DNS) and 200 s (a start and a 20 s steady window) for each of the
    # three Pis: 12 min, and the engine's margin.
    assert step.custom_timeouts == {"create": "17m"}


def test_the_roll_steps_own_record_is_what_the_next_day2_plan_compares(homelab: Simulation) -> None:
    """The output `kubeVipRolled` is the template's digest once the step has finished with it, or "" when the step
    failed (its id's future raising is caught, so the program's other outputs are still written): the next preview
    then names the roll again (stacks.pulumi_source.recorded_ainur)."""
    digest = homelab.named()["netboot-kube-vip-roll"].inputs["triggers"][0]
    assert homelab.outputs["kubeVipRolled"] == digest == vip_roll.template_digest(load_stack_file(HOMELAB))

    async def value(future: asyncio.Future[str]) -> str | None:
        known: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        secret: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        known.set_result(True)
        secret.set_result(False)
        return await netboot_component._settled(pulumi.Output(set(), future, known, secret)).future()

    async def failed() -> str | None:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        future.set_exception(RuntimeError("netboot-kube-vip-roll: Process exited with status 1"))
        return await value(future)

    async def finished() -> str | None:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        future.set_result(digest)
        return await value(future)

    # On a loop of its own: asyncio.run would leave the thread without the loop the other simulations run on.
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(failed()) == ""
        assert loop.run_until_complete(finished()) == digest
    finally:
        loop.close()


def test_cloud_init_files_are_exported_in_clear_per_pi(homelab: Simulation) -> None:
    stack = load_stack_file(HOMELAB)
    for output, render in (("ainurUserData", cloudinit.user_data), ("ainurNetworkConfig", cloudinit.network_config)):
        exported = homelab.outputs[output]
        assert not isinstance(exported, SecretValue)
        assert exported == {node.name: render(stack, node) for node in stack.ainur_nodes}


def test_netboot_objects_and_the_served_configs(homelab: Simulation) -> None:
    regs = homelab.named()
    netboot = regs["netboot"]
    assert netboot.type == "iluvatar:ainur:Netboot"
    assert sorted(r.name for r in homelab.children(netboot)) == [
        "netboot-clearance", "netboot-clusterrole-iluvatar-kube-vip",
        "netboot-clusterrolebinding-iluvatar-kube-vip", "netboot-configmap-ipxe",
        "netboot-configmap-netboot", f"netboot-configmap-{CONF}", "netboot-daemonset-kube-vip-services",
        "netboot-daemonset-netboot-cache", "netboot-deployment-netboot", "netboot-dhcp-probe",
        # kube-vip-services' roll, the Pi holding the service address last (plans.netboot.vip_roll).
        "netboot-kube-vip-roll", "netboot-namespace-argocd",
        "netboot-namespace-netboot",
        "netboot-networkpolicy-default-deny-ingress", "netboot-role-netboot-leases", "netboot-rolebinding-netboot-leases",
        # In dhcp mode, the step before the pod that has the router's DHCP turned off on a move, read from what runs.
        "netboot-router-off",
        "netboot-secret-talos-configs", "netboot-service-netboot", "netboot-serviceaccount-kube-vip",
        "netboot-serviceaccount-netboot",
    ]  # fmt: skip
    assert sorted(r.name for r in homelab.children(regs["git-mirror"])) == [
        "git-mirror-deployment-git-mirror", "git-mirror-gate-storage", "git-mirror-networkpolicy-git-mirror",
        "git-mirror-persistentvolumeclaim-git-mirror-longhorn-encrypted", "git-mirror-service-git-mirror",
    ]  # fmt: skip
    # dnsmasq.conf's ConfigMap, named by its content: another conf is another resource, which the engine creates before
    # the Deployment naming it changes (the Deployment depends on it) and deletes, once no longer in the program, at the
    # end of a successful `up`, after the Deployment moved (no delete-before-replace, no retain: the engine's default).
    conf = regs[f"netboot-configmap-{CONF}"]
    assert conf.inputs["immutable"] is True and conf.inputs["metadata"]["name"] == CONF
    assert (conf.delete_before_replace, conf.retain_on_delete, conf.protect) == (None, False, False)
    assert conf.urn in regs["netboot-deployment-netboot"].dependencies
    assert regs["netboot-dhcp-probe"].urn in conf.dependencies
    string_data = regs["netboot-secret-talos-configs"].inputs["stringData"]
    assert isinstance(string_data, SecretValue)
    served = string_data.value
    # Workers only (gandalf, saruman): the valinor's configs carry the CA keys and never leave Pulumi.
    assert sorted(served) == ["28-d2-44-30-00-01.yaml", "28-d2-44-30-00-02.yaml"]
    assert "hostname: gandalf" in str(served["28-d2-44-30-00-01.yaml"])
    fetch = regs["netboot-configmap-netboot"].inputs["data"]["fetch-assets.sh"]
    assert "https://factory.talos.dev/image/" in fetch and f"/{releases.TALOS}/kernel-amd64" in fetch  # the shipped stack's Talos
    service = regs["git-mirror-service-git-mirror"].inputs
    assert service["metadata"]["annotations"] == {"kube-vip.io/loadbalancerIPs": "192.168.0.15"}


def test_netboot_waits_for_its_namespace_and_configs(homelab: Simulation) -> None:
    regs = homelab.named()
    deployment = regs["netboot-deployment-netboot"]
    assert regs["netboot-namespace-netboot"].urn in deployment.dependencies
    assert regs["netboot-secret-talos-configs"].urn in deployment.dependencies


def test_no_ainur_means_no_bootstrap_cluster_and_no_netboot() -> None:
    sim = simulated(RK1)
    assert not [r for r in sim.registrations if r.type.startswith("iluvatar:ainur:") or r.type == "command:remote:Command"]
    # Arda's own random values: its Argo CD's, its monitoring's, and the key to its log store's admin endpoints.
    assert not [r for r in sim.registrations if r.type.startswith("random:") and not r.name.startswith(("gitops-arda", "monitoring-", "logs-store"))]
    # Arda's gates (the monitoring and log layers' before their CiliumNetworkPolicies among them) run on Arda.
    assert not [
        r
        for r in sim.registrations
        if r.type == "command:local:Command" and not r.name.startswith(("arda-", "edge-", "logs-gate-", "monitoring-gate-"))
    ]
    assert not [r for r in sim.registrations if r.name.startswith("gitops-ainur")]
    assert "ainurKubeconfig" not in sim.outputs


def test_generic_worker_mode_serves_a_worker_config_for_unknown_machines(tmp_path: Path) -> None:
    doc = edit(
        homelab_doc(),
        {"iluvatar:ainur.netboot": {"unknownMacs": "generic-worker", "genericWorker": {"board": "generic-arm64", "installDisk": "/dev/sda"}}},
    )
    sim = simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")))
    regs = sim.named()
    assert "arda-config-schematic-generic-arm64" in regs, "the generic worker's board needs its own image"
    served = regs["netboot-secret-talos-configs"].inputs["stringData"]
    assert isinstance(served, SecretValue)
    assert "generic-worker.yaml" in served.value
    generic = [
        args
        for token, args in sim.invocations
        if token == "talos:machine/getConfiguration:getConfiguration" and "auto: stable" in "".join(args["configPatches"])
    ]
    assert len(generic) == 1
    assert generic[0]["machineType"] == "worker"
    assert "generic-worker.ipxe" in regs["netboot-configmap-ipxe"].inputs["data"]


def test_control_planes_configs_are_not_served(homelab: Simulation) -> None:
    regs = homelab.named()
    served = regs["netboot-secret-talos-configs"].inputs["stringData"].value
    for mac in ("a8-b8-e0-20-00-01", "a8-b8-e0-20-00-02", "a8-b8-e0-20-00-03"):
        assert f"{mac}.yaml" not in served
        script = regs["netboot-configmap-ipxe"].inputs["data"][f"{mac}.ipxe"]
        assert "talos.config" not in script
    items = regs["netboot-deployment-netboot"].inputs["spec"]["template"]["spec"]["volumes"][3]["secret"]["items"]
    assert items == [{"key": f"{m}.yaml", "path": f"{m}.yaml"} for m in ("28-d2-44-30-00-01", "28-d2-44-30-00-02")]


def test_the_cache_refills_when_boot_assets_change(homelab: Simulation) -> None:
    regs = homelab.named()
    template = regs["netboot-daemonset-netboot-cache"].inputs["spec"]["template"]
    data = regs["netboot-configmap-netboot"].inputs["data"]
    ipxe = hashlib.sha256(f"{data['fetch-ipxe.sh']}\n{data['ipxe-debs.sh']}".encode()).hexdigest()[:16]
    # And iPXE's: a bump of its pin or its scripts runs every Pi's `ipxe` step again (review 41-7).
    assert template["metadata"]["annotations"] == {
        "iluvatar/ipxe-digest": ipxe,
        "iluvatar/assets-digest": hashlib.sha256(data["fetch-assets.sh"].encode()).hexdigest()[:16],
    }


def test_netboot_service_address_is_held_by_kube_vip(homelab: Simulation) -> None:
    regs = homelab.named()
    service = regs["netboot-service-netboot"].inputs
    assert service["metadata"]["annotations"] == {"kube-vip.io/loadbalancerIPs": "192.168.0.14"}
    assert service["spec"]["externalTrafficPolicy"] == "Local"


def test_no_netboot_worker_serves_no_config(tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"iluvatar:nodes[6].boot": "disk", "iluvatar:nodes[7].boot": "disk"})
    sim = simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")))
    regs = sim.named()
    served = regs["netboot-secret-talos-configs"].inputs["stringData"]
    assert isinstance(served, SecretValue) and served.value == {}
    # No configs volume nor mount: nginx serves no config (a secret volume without items would serve every key).
    pod = regs["netboot-deployment-netboot"].inputs["spec"]["template"]["spec"]
    assert [v for v in pod["volumes"] if "secret" in v] == []
    assert [m["name"] for c in pod["containers"] for m in c.get("volumeMounts", []) if m["name"] == "configs"] == []
    assert "talos.config" not in "".join(regs["netboot-configmap-ipxe"].inputs["data"].values())


# --- A dead Pi's recovery, as docs/day2.md's runbooks say, through the engine's rules (iluvatar.graph) ---

DAY2 = "docs/day2.md"
REBUILT, REMOVED = "### A dead Pi rebuilt", "### A dead Pi removed for good"


def three_valar_doc() -> dict[str, Any]:
    """The homelab with three valar and a maiar (varda), as tests/netns/test_k3s_steps.py runs it."""
    doc = homelab_doc()
    nodes = doc["config"]["iluvatar:nodes"]
    nodes[1]["role"] = nodes[2]["role"] = "valar"
    nodes.insert(3, {**nodes[2], "name": "varda", "role": "maiar", "mac": "d8:3a:dd:10:00:04", "ip": "192.168.0.17"})
    # k3s's secrets encryption is refused on several valar (stacks.rules._counts): its HA procedure is not built.
    doc["config"]["iluvatar:ainur"]["secretsEncryption"] = False
    return doc


@pytest.fixture(scope="module")
def recovery_stacks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, Any], Simulation]]:
    """The shipped homelab (one valar, two maiar) and the same with three valar and a maiar, simulated. The homelab's is
    the process's shared run of homelab_doc() (tests.sims), which registers what a run of the same document written
    here does (the dependencies' order aside, which is the run's own)."""
    doc = three_valar_doc()
    return {
        "homelab": (homelab_doc(), simulated(HOMELAB)),
        "three-valar": (doc, simulate(read_stack_file(write_stack(tmp_path_factory.mktemp("three-valar"), doc, stack="homelab")))),
    }


@pytest.fixture(scope="module")
def removed(
    recovery_stacks: dict[str, tuple[dict[str, Any], Simulation]], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str, str], Simulation]:
    """The run of a recovery stack (`which`) without the Pi `pi` in its inventory, made once for the module: the
    removed-for-good and the removed-maia tests both read the homelab's without eonwë. Read only."""
    made: dict[tuple[str, str], Simulation] = {}

    def run(which: str, pi: str) -> Simulation:
        if (which, pi) not in made:
            doc = recovery_stacks[which][0]
            without = edit(doc, {"iluvatar:nodes": [n for n in doc["config"]["iluvatar:nodes"] if n["name"] != pi]})
            made[which, pi] = simulate(read_stack_file(write_stack(tmp_path_factory.mktemp(f"{which}-{pi}"), without, stack="homelab")))
        return made[which, pi]

    return run


def own(entry: StateEntry, pi: str) -> bool:
    """A resource of this Pi's: its component and what it holds, the storage layer's patch of its Node, and the logs
    layer's step that points its journal at the store (replaced delete-first: its delete undoes it)."""
    return entry.name in (f"ainur-{pi}", f"storage-ainur-node-{pi}", f"logs-ainur-{pi}-journal-upload") or entry.name.startswith(f"ainur-{pi}-")


def arda(entry: StateEntry) -> bool:
    return entry.name.startswith("arda-") or entry.name == "arda" or ":talos:" in f":{entry.urn.split('::')[2]}"


def pis_of(doc: dict[str, Any]) -> list[str]:
    return [n["name"] for n in doc["config"]["iluvatar:nodes"] if n["role"] in ("valar", "maiar")]


@pytest.mark.parametrize("which", ["homelab", "three-valar"])
def test_a_dead_pi_rebuilt_as_the_runbook_says_keeps_every_other_resource(
    recovery_stacks: dict[str, tuple[dict[str, Any], Simulation]], which: str
) -> None:
    """docs/day2.md's commands, for each Pi (the first valar too): nothing leaves the state, only the Pi's own join
    (and a valar's oidc step) is replaced, and no delete runs (an uninstall there would undo the new join)."""
    doc, sim = recovery_stacks[which]
    state = state_of(sim)
    for pi in pis_of(doc):
        done = runbook.run(runbook.commands(DAY2, REBUILT, pi=pi), state)
        assert done.removed == [] and done.state == state, pi
        replaced = sorted(e.name for e in done.replaced)
        # The homelab signs in with Dex: each valar has an oidc step, which the new card needs before k3s starts.
        valar = next(n for n in doc["config"]["iluvatar:nodes"] if n["name"] == pi)["role"] == "valar"
        journal = f"logs-ainur-{pi}-journal-upload"
        # Its k3s step too: on the new card it writes the metric file and records the certificates' ends (its inputs did
        # not change, so a plain `up` would not run it, and AinurCertificateUnknown would fire for months).
        assert replaced == sorted([f"ainur-{pi}-join", f"ainur-{pi}-k3s", journal, *([f"ainur-{pi}-oidc"] if valar else [])]), pi
        assert all(own(e, pi) and not arda(e) for e in done.replaced)
        assert done.deletes == [], [e.name for e in done.deletes]
        # The journal step's delete runs on the new card before its create, never after it (it would undo it).
        assert [e.name for e in done.deletes_first] == [journal], pi


@pytest.mark.parametrize("which", ["homelab", "three-valar"])
def test_a_dead_pi_removed_for_good_as_the_runbook_says_takes_only_its_own_resources(
    recovery_stacks: dict[str, tuple[dict[str, Any], Simulation]], which: str, removed: Callable[[str, str], Simulation]
) -> None:
    """The `state delete` of its uninstall and its journal step (nothing depends on them), then the `up` without the
    Pi in the inventory:
    what leaves the state is the Pi's own, and no delete that would reach for the dead Pi runs."""
    doc, sim = recovery_stacks[which]
    state = state_of(sim)
    roles = {n["name"]: n["role"] for n in doc["config"]["iluvatar:nodes"]}
    for pi in pis_of(doc):
        done = runbook.run(runbook.commands(DAY2, REMOVED, pi=pi), state)
        assert [e.name for e in done.removed] == [f"ainur-{pi}-uninstall", f"logs-ainur-{pi}-journal-upload"], pi
        if roles[pi] == "valar":
            continue  # the inventory refuses an even number of valar (etcd's quorum): a valar leaves with another change
        after = removed(which, pi)
        registered = {r.urn for r in after.registrations}
        deleted = [e for e in done.state if e.urn not in registered]
        assert deleted and all(own(e, pi) for e in deleted), [e.name for e in deleted if not own(e, pi)]
        assert [e.name for e in deleted if e.delete_command] == []
        kept = {e.urn for e in state if not own(e, pi)}
        assert kept <= registered


def test_the_state_delete_the_runbook_used_to_run_takes_the_stack_with_it(recovery_stacks: dict[str, tuple[dict[str, Any], Simulation]]) -> None:
    """Why the runbook no longer runs `pulumi state delete --target-dependents` on a join: through the chain of joins
    (one Pi's restart at a time) it takes every later Pi's steps, and from the first valar's most of the stack."""
    _, sim = recovery_stacks["homelab"]
    state = state_of(sim)
    join = next(e for e in state if e.name == "ainur-manwe-join")
    with pytest.raises(EngineRefusedError, match="can't be safely deleted because the following resources depend on it"):
        state_delete(state, [join.urn])
    _, removed = state_delete(state, [join.urn], target_dependents=True)
    # (With logs and the restore drill: 29 more of each, everything of both depending on the Ainur or Arda: the
    # pipeline's monitors and vmalert's Service (4), the drill's tools claim and its storage gate.)
    # (The Ainur's ca-hash step and each maia's agent-token Secret, plans.agent_token: 3 more, of 7 more.)
    # (The DHCP probe before dnsmasq serves, plans.netboot.dhcp_probe: one more in the state, and in what goes, as it waits
    # for the netboot namespace, so for the Ainur's API. #54: the log store's and vmalert's policies on Arda, the Ainur's
    # Node registration policy and its binding, the gate before the CiliumNetworkPolicy: 6.) (#55: the KMS's 8 objects on
    # the Ainur go with it; its protected key and certificate do not.) (#56: the raw-port apps' Ports component, its
    # Cilium gate, minecraft's and mosquitto's Service and policy: 6 in the state, 5 of them taken with the join.)
    # (#54: each listener's NetworkPolicy: 7 more in the state, every one depending on a cluster.)
    # (#57: each Pi's netboot gate after its k3s step, 3, in the chain after the join.)
    # (#55: the KMS's list of admitted machines on the Ainur, Arda's policy keeping pods from the KMS: 2 more,
    # both going with it.) (#53: dnsmasq.conf's ConfigMap named by its content, and in dhcp mode netboot-router-off, the
    # step before the netboot pod: 2 more, both going with it.) (#54: Longhorn's 7 NetworkPolicies on the Ainur, all
    # going with it.) (#54: the metrics API adapter's CiliumNetworkPolicy and the gate before it, both going with it.)
    # (#54: Argo CD's NetworkPolicies, 5 on each cluster, all 10 going with it.)
    # (#55: the rewrite of the Ainur's Secrets after the valar's joins, and Longhorn's encrypted class and its Secret, all
    # three going with it; the passphrase and its random provider stay: 5 more in the state.) (Then 7 more in the state,
    # 5 of them going with it: the log store's admin key's Secret and Longhorn's support-bundle policy, the KMS key's
    # backup and its drill, Headscale's restore drill; the random values behind them stay.) (#54: VolSync's policy on
    # Arda, going with it.) (#53: kube-vip-services' roll step, going with it.) (#58: ainur-secrets-on, kept while the flag
    # is on, going with it.) (#58: ainur-secrets-epoch, whatever the flag: 1 more in the state, staying.) (The step releasing
    # the gateways' NodePorts, after Arda's gateways: going with it.)
    assert (len(removed), len(state)) == (301, 395)
    assert {e.name for e in removed} >= {
        "ainur-eonwe-join",
        "ainur-credentials",
        "ainur-kubernetes",
        "arda-taniquetil-apply",
        "netboot-deployment-netboot",
    }


def test_what_netboot_serves_waits_for_each_schematic_to_be_sent(homelab: Simulation) -> None:
    # The served configs and asset URLs name the computed schematic ID, which carries no dependency on the Schematic that
    # sends it to Image Factory (review of #38): each served object waits for every board's Schematic explicitly.
    regs = homelab.named()
    schematics = {r.urn for r in homelab.registrations if r.type == "talos:imageFactory/schematic:Schematic"}
    assert {urn.rsplit("::", 1)[1] for urn in schematics} == {"arda-config-schematic-generic-x86"}  # the homelab's one board
    for name in ("netboot-secret-talos-configs", "netboot-configmap-netboot", "netboot-daemonset-netboot-cache", "netboot-deployment-netboot"):
        assert schematics <= set(regs[name].dependencies), name
    assert not schematics & set(regs["netboot-namespace-netboot"].dependencies)


# Ilmarë, a maia, netbooting: the homelab three tests below read the same run of.
NETBOOTING = {"iluvatar:nodes[2].boot": "netboot", "iluvatar:nodes[2].serial": "1a2b3c4d"}


@pytest.fixture(scope="module")
def netbooting(tmp_path_factory: pytest.TempPathFactory) -> Simulation:
    """The homelab with ilmarë netbooting, simulated once for the file (each test only reads it; 1.2 s of CPU a run)."""
    return simulate(read_stack_file(write_stack(tmp_path_factory.mktemp("netbooting"), edit(homelab_doc(), NETBOOTING), stack="homelab")))


@pytest.fixture(scope="module")
def upgraded(netbooting: Simulation, tmp_path_factory: pytest.TempPathFactory) -> Simulation:
    """The same homelab's next run where the last deployment had the first version's `pi-roots` claim (review 41-6 H1)."""
    previous = {"ainur": {**netbooting.outputs["ainur"], "legacyRoots": True}}
    stack_file = read_stack_file(write_stack(tmp_path_factory.mktemp("upgraded"), edit(homelab_doc(), NETBOOTING), stack="homelab"))
    return simulate(stack_file, previous=previous)


def test_the_nfs_server_of_the_netbooted_roots_waits_for_the_image_built_on_every_card_pi(tmp_path: Path, netbooting: Simulation) -> None:
    """Review 41-1 H2: pi-nfs is replaced (a new image) only once netboot-cache, whose init steps build the image, is
    ready on every Pi that boots from its card; and a Pi's seed (a k3s upgrade changes its user-data) restarts neither."""
    regs = netbooting.named()
    assert regs["netboot-daemonset-netboot-cache"].urn in regs["netboot-deployment-pi-nfs"].dependencies
    assert regs["netboot-configmap-pi-netboot"].urn in regs["netboot-deployment-pi-nfs"].dependencies
    upgraded = edit(homelab_doc(), {**NETBOOTING, "iluvatar:ainur.k3sVersion": "v1.33.7+k3s1"})
    again = simulate(read_stack_file(write_stack(tmp_path, upgraded, stack="homelab"))).named()

    def digests(r: dict[str, Any]) -> tuple[Any, Any]:
        nfs = r["netboot-deployment-pi-nfs"].inputs["spec"]["template"]["metadata"]["annotations"]
        return nfs, r["netboot-daemonset-netboot-cache"].inputs["spec"]["template"]["metadata"]["annotations"]["iluvatar/pi-digest"]

    assert regs["netboot-configmap-pi-netboot"].inputs["data"] != again["netboot-configmap-pi-netboot"].inputs["data"]
    assert digests(regs) == digests(again)
    # Review 41-1 H5's rest: nothing of pi-nfs changes, its pod spec included (the seed reaches the root through the
    # projected ConfigMap, which the kubelet updates in place), so the NFS server of every root is not restarted.
    assert regs["netboot-deployment-pi-nfs"].inputs == again["netboot-deployment-pi-nfs"].inputs
    assert regs["netboot-daemonset-netboot-cache"].inputs == again["netboot-daemonset-netboot-cache"].inputs


def test_the_netbooted_roots_wait_for_longhorn_and_the_maiar_for_them(netbooting: Simulation) -> None:
    """Review 41-1 H7: pi-roots is a Longhorn volume, and Longhorn is an Argo CD Application of the storage layer, long
    after the Ainur: the volume, its server and the netbooting maia's steps wait for it (the first version's PVC stayed
    Pending and its 10-minute wait failed a fresh install). The netbooted maia gets no Longhorn label: its disk is no
    Longhorn disk (docs/security.md)."""
    regs = netbooting.named()
    # The Argo CD Application that installs Longhorn (the PlatformApplication's resource).
    longhorn = regs["storage-ainur-longhorn-application-longhorn"].urn
    for name in ("netboot-persistentvolumeclaim-pi-root-ilmare", "netboot-deployment-pi-nfs"):
        assert longhorn in regs[name].dependencies, name
    assert regs["netboot-persistentvolumeclaim-pi-root-ilmare"].urn in regs["netboot-deployment-pi-nfs"].dependencies
    join = regs["ainur-ilmare-join"]
    assert regs["netboot-deployment-pi-nfs"].urn in join.dependencies
    assert "storage-ainur-node-ilmare" not in regs
    assert regs["ainur-eonwe-join"].urn in regs["storage-ainur-node-eonwe"].dependencies


def test_each_netbooted_root_has_its_own_protected_volume_whose_replicas_only_card_pis_hold(netbooting: Simulation) -> None:
    """Review 41-1 M1/M2: a volume per netbooting Pi, protected (a Pi's removal stops at it), on the pi-roots class whose
    Longhorn replicas go only to Pis tagged pi-root, which the program tags: the Pis that boot from their cards and have
    a data disk (manwe and eonwe here), never ilmare. The first version's single volume stays in the program, never
    resized nor deleted (its roots are served where they are)."""
    regs = netbooting.named()
    claim = regs["netboot-persistentvolumeclaim-pi-root-ilmare"]
    # Review 41-6 M2: `pulumi state unprotect` then `up` forgets the claim and leaves it, and its volume, in the cluster.
    assert claim.protect and claim.retain_on_delete
    assert claim.inputs["spec"] == {"accessModes": ["ReadWriteOnce"], "storageClassName": "pi-roots", "resources": {"requests": {"storage": "20Gi"}}}
    assert claim.inputs["metadata"]["labels"]["iluvatar/pi"] == "ilmare"
    # Review 41-6 H1: a new homelab has no first version's volume, and pi-nfs mounts none; its state says so.
    assert "netboot-persistentvolumeclaim-pi-roots" not in regs and netbooting.outputs["ainur"]["legacyRoots"] is False
    assert "legacy-roots" not in {v["name"] for v in regs["netboot-deployment-pi-nfs"].inputs["spec"]["template"]["spec"]["volumes"]}
    sc = regs["netboot-storageclass-pi-roots"]
    assert sc.inputs["parameters"] == {"numberOfReplicas": "2", "staleReplicaTimeout": "30", "nodeSelector": "pi-root", "fsType": "ext4"}
    assert (sc.inputs["reclaimPolicy"], sc.inputs["provisioner"]) == ("Retain", "driver.longhorn.io")
    assert sc.urn in claim.dependencies and regs["storage-ainur-longhorn-application-longhorn"].urn in claim.dependencies
    assert claim.urn in regs["netboot-deployment-pi-nfs"].dependencies
    # Longhorn's default node tags on the card Pis' Nodes, in the NodePatch that labels them after their join.
    tags = {name: r.inputs["metadata"].get("annotations") for name, r in regs.items() if name.startswith("storage-ainur-node-")}
    assert tags == {
        "storage-ainur-node-manwe": {"node.longhorn.io/default-node-tags": '["pi-root"]'},
        "storage-ainur-node-eonwe": {"node.longhorn.io/default-node-tags": '["pi-root"]'},
    }


def test_the_first_versions_volume_stays_only_where_the_last_deployment_had_it(upgraded: Simulation) -> None:
    """Review 41-6 H1: where the last deployment had the first version's `pi-roots` claim, it stays (never resized,
    replaced nor deleted: its roots are served where they are), pi-nfs mounts it after it, and the state says so again."""
    regs = upgraded.named()
    legacy = regs["netboot-persistentvolumeclaim-pi-roots"]
    assert (legacy.protect, legacy.retain_on_delete, tuple(legacy.ignore_changes)) == (False, True, ("spec",))
    assert legacy.urn in regs["netboot-deployment-pi-nfs"].dependencies and upgraded.outputs["ainur"]["legacyRoots"] is True
    spec = regs["netboot-deployment-pi-nfs"].inputs["spec"]["template"]["spec"]
    assert {"name": "legacy-roots", "persistentVolumeClaim": {"claimName": "pi-roots"}} in spec["volumes"]
    assert {"name": "LEGACY", "value": "/legacy-roots"} in spec["containers"][0]["env"]


FIRST_NETBOOT = Path(__file__).parents[1] / "fixtures" / "outputs-66ca479"


def test_a_homelab_last_deployed_by_the_first_netboot_version_keeps_its_roots_volume(tmp_path: Path) -> None:
    """Review 41-10 M1: the first netboot version (66ca479) exported `ainur` with nodes {mac, ip, role, config}, no
    `image` and no `legacyRoots`, while its single `pi-roots` claim held every maia's root. The fixture is what 66ca479's
    own ainur_state and dnsmasq_conf wrote for this homelab with ilmarë netbooting. The next `up` keeps that claim, pi-nfs
    mounts it, and the state says so; from the same version's outputs for the homelab without a netbooting Pi, none."""
    ainur = json.loads((FIRST_NETBOOT / "netbooting-ainur.json").read_text())
    assert set(ainur) == {"k3sVersion", "order", "nodes", "commands"}
    assert all(set(n) == {"mac", "ip", "role", "config"} for n in ainur["nodes"].values())
    conf = (FIRST_NETBOOT / "netbooting-dnsmasq.conf").read_text()
    doc = edit(homelab_doc(), NETBOOTING)
    (tmp_path / "kept").mkdir()
    # The k3s it ran as this stack's (the homelab's pin moved on since 66ca479; the k3s rule is another test's).
    k3s_now = doc["config"]["iluvatar:ainur"]["k3sVersion"]
    ainur["k3sVersion"] = k3s_now
    (tmp_path / "card").mkdir()
    kept = simulate(read_stack_file(write_stack(tmp_path / "kept", doc, stack="homelab")), previous={"ainur": ainur, "dnsmasqConf": conf})
    regs = kept.named()
    legacy = regs["netboot-persistentvolumeclaim-pi-roots"]
    assert (legacy.retain_on_delete, tuple(legacy.ignore_changes)) == (True, ("spec",)) and kept.outputs["ainur"]["legacyRoots"] is True
    assert legacy.urn in regs["netboot-deployment-pi-nfs"].dependencies
    spec = regs["netboot-deployment-pi-nfs"].inputs["spec"]["template"]["spec"]
    assert {"name": "legacy-roots", "persistentVolumeClaim": {"claimName": "pi-roots"}} in spec["volumes"]
    card = {
        "ainur": {**json.loads((FIRST_NETBOOT / "card-ainur.json").read_text()), "k3sVersion": k3s_now},
        "dnsmasqConf": (FIRST_NETBOOT / "card-dnsmasq.conf").read_text(),
    }
    fresh = simulate(read_stack_file(write_stack(tmp_path / "card", doc, stack="homelab")), previous=card)
    assert "netboot-persistentvolumeclaim-pi-roots" not in fresh.named() and fresh.outputs["ainur"]["legacyRoots"] is False


def test_each_roots_longhorn_volume_is_patched_to_the_programs_copies_before_the_server_moves(netbooting: Simulation, upgraded: Simulation) -> None:
    """Review 41-6 H1, H2: Longhorn reads its class's count and selector only when it makes a volume, so each claim's
    Volume (named after the claim's bound PV) is patched, at every `up`, to one copy per tagged card Pi and the pi-root
    selector: the first version's `pi-roots` volume too. Forced over longhorn-manager's fields, after its claim, before
    pi-nfs is replaced, and never reverted on delete."""
    assert "netboot-volume-pi-roots" not in netbooting.named()
    for claim, regs in (("pi-root-ilmare", netbooting.named()), ("pi-roots", upgraded.named())):
        nfs = regs["netboot-deployment-pi-nfs"]
        patch = regs[f"netboot-volume-{claim}"]
        bound = regs[f"netboot-persistentvolumeclaim-{claim}"]
        assert patch.type == "kubernetes:longhorn.io/v1beta2:VolumePatch", patch.type
        assert patch.inputs["metadata"] == {
            "name": "pvc-" + simulate_uuid("claim", "netboot", claim),
            "namespace": "longhorn-system",
            "annotations": {"pulumi.com/patchForce": "true"},
        }
        # Review 41-10 H1: no wait on the placement (a lowered count never reports Scheduled), and the first version's
        # volume gets the selector alone (its count, made for every Longhorn Pi, is never lowered).
        assert not patch.custom_timeouts, patch.custom_timeouts
        want = {"nodeSelector": ["pi-root"]} if claim == "pi-roots" else {"numberOfReplicas": 2, "nodeSelector": ["pi-root"]}
        assert patch.inputs["spec"] == want
        assert patch.retain_on_delete and bound.urn in patch.dependencies and patch.urn in nfs.dependencies


def test_pi_nfs_moves_onto_a_new_root_volume_only_after_a_one_time_wait_for_its_placement(netbooting: Simulation, upgraded: Simulation) -> None:
    """Review 41-6 M4: per Pi's root volume on Longhorn, a wait on the first valar (pi_pods.placed_wait_script) after
    its Volume's patch and before pi-nfs, bounded (the engine's a little over the script's), run once: its script is
    ignored afterwards, so no later `up` runs it again. Never one for the first version's volume (review 41-10 H1)."""

    for regs in (netbooting.named(), upgraded.named()):
        wait = regs["netboot-placed-pi-root-ilmare"]
        assert wait.type == "command:remote:Command"
        assert wait.inputs["connection"].value["host"] == "192.168.0.11"  # manwe, the first valar (its SSH key: secret)
        assert "Longhorn to place the copies of pi-root-ilmare's volume" in wait.inputs["create"]
        assert "update" not in wait.inputs and "delete" not in wait.inputs
        assert tuple(wait.ignore_changes) == ("create",) and wait.custom_timeouts["create"] == "15m"
        assert regs["netboot-volume-pi-root-ilmare"].urn in wait.dependencies
        assert wait.urn in regs["netboot-deployment-pi-nfs"].dependencies
        assert not any(name.startswith("netboot-placed-") and name != "netboot-placed-pi-root-ilmare" for name in regs)


def test_a_netbooting_maias_gates_and_uncordon_follow_every_run_of_its_drain_pointer_and_reboot(netbooting: Simulation) -> None:
    """Review 41-2 H1: Pulumi keeps a failed step's old inputs, so a roll that failed at a join and is set back finds the
    join, k3s step and uncordon unchanged. The reboot step carries the drain's run mark and the pointer's resourceVersion,
    and the join, k3s step and uncordon carry the reboot step's run mark: a run of the one runs the others (their
    `triggers`, which pulumi-command 1.2.1 replaces on: provider/pkg/provider/common/inputs.go:10). A card Pi's steps
    carry none."""
    from plans.netboot import roll

    regs = netbooting.named()
    drain, pointer, reboot = regs["ainur-ilmare-drain"], regs["ainur-ilmare-boot"], regs["ainur-ilmare-reboot"]
    assert sorted(reboot.property_dependencies["triggers"]) == sorted([drain.urn, pointer.urn])
    for step in ("join", "k3s", "uncordon"):
        assert regs[f"ainur-ilmare-{step}"].property_dependencies["triggers"] == (reboot.urn,), step
        assert "triggers" not in regs[f"ainur-eonwe-{step.replace('uncordon', 'k3s')}"].inputs
    # The mark is printed first, on stdout, so any run that succeeds stores a new one.
    for script in (drain.inputs["create"], reboot.inputs["create"]):
        assert script.splitlines()[1:3].count(roll.RUN_MARK) == 1
    assert roll.RUN_MARK == 'echo "iluvatar: run $(cat /proc/sys/kernel/random/uuid)"'


def test_a_netbooting_maias_steps_on_the_pi_accept_only_its_pinned_host_key(netbooting: Simulation) -> None:
    """Review 41-2 M4: the roll takes the Pi off its address for minutes while its join redials it, then sends the k3s
    token: whoever takes the address meanwhile is refused. Its ed25519 host key, read once by its host-key step (before
    its drain), is the `hostKey` of the reboot step's, the join's and the k3s step's connections (pulumi-command 1.2.1
    then accepts that key alone: provider/pkg/provider/remote/connection.go:87-94). A card Pi's steps pin nothing."""
    from iluvatar.simulate import SecretValue
    from plans.netboot import roll

    def secret(value: Any) -> Any:
        return value.value if isinstance(value, SecretValue) else value

    regs = netbooting.named()
    key = regs["ainur-ilmare-host-key"]
    assert key.inputs["create"] == roll.HOST_KEY_SCRIPT and "triggers" not in key.inputs
    # Review 41-3 L3: read once; a change of the unpinned connection (a rotated operator key) does not read it again.
    assert key.ignore_changes == ("connection",)
    assert key.urn in regs["ainur-ilmare-reboot"].dependencies
    for step in ("reboot", "join", "k3s"):
        reg = regs[f"ainur-ilmare-{step}"]
        assert key.urn in reg.property_dependencies["connection"], step
        conn = secret(reg.inputs["connection"])
        # The same connection as the unpinned one the key was read over, and its host key.
        assert "hostKey" in conn and {k: v for k, v in conn.items() if k != "hostKey"} == secret(key.inputs["connection"]), step
    for step in ("join", "k3s"):
        assert "hostKey" not in secret(regs[f"ainur-eonwe-{step}"].inputs["connection"]), step


def test_no_step_dials_a_netbooting_maia_before_its_boot_pointer_exists(netbooting: Simulation) -> None:
    """Review 41-3 C1: a card-less Pi boots only once pi-tftp serves the folder its boot pointer names (without the
    ConfigMap it skips the Pi: plans.netboot.pis), and the pointer is made in one place, the Pi's component. So on a new
    maia's first `up`, every step that dials the Pi at create (its host-key step first) must come after the pointer in
    the graph, or it dials a Pi that cannot boot until after that step, and no later step ever runs. The engine runs a
    step only after everything it depends on, transitively: the pointer must be among those of each such step."""
    regs = netbooting.named()
    by_urn = {r.urn: r for r in netbooting.registrations}
    pointer = regs["ainur-ilmare-boot"].urn
    ilmare = next(n for n in load_stack_file(HOMELAB).nodes if n.name == "ilmare")

    def before(urn: str) -> set[str]:
        seen: set[str] = set()
        todo = list(by_urn[urn].dependencies)
        while todo:
            dep = todo.pop()
            if dep not in seen:
                seen.add(dep)
                todo.extend(by_urn[dep].dependencies)
        return seen

    def host(reg: Any) -> Any:
        conn = reg.inputs.get("connection")
        conn = conn.value if isinstance(conn, SecretValue) else conn
        return conn.get("host") if isinstance(conn, dict) else None

    dialing = [r.name for r in netbooting.by_type("command:remote:Command") if host(r) == str(ilmare.ip) and "create" in r.inputs]
    # The roll's steps on the Pi, and a later layer's (the journal's forwarder, components.logs).
    assert sorted(dialing) == [
        "ainur-ilmare-host-key",
        "ainur-ilmare-join",
        "ainur-ilmare-k3s",
        "ainur-ilmare-reboot",
        "logs-ainur-ilmare-journal-upload",
    ]
    for name in dialing:
        assert pointer in before(regs[name].urn), name
    # And the key is read before the first step that sends the Pi a secret (the join's config carries the token).
    assert regs["ainur-ilmare-host-key"].urn in before(regs["ainur-ilmare-join"].urn)


def test_the_wait_on_netboot_cache_fits_an_image_build_on_each_card_pi(netbooting: Simulation) -> None:
    """Review 41-1 M3: netboot-cache's pod is ready on a Pi only past the image builder, and pulumi-kubernetes' 10-minute
    default cannot hold a new image's build (~1.2 GB down, ~7 GB written to an SD card) on each card Pi in turn."""
    from plans.netboot import pi_pods
    from tests.plans.test_netboot_pis import netbooting as two_netbooting

    regs = netbooting.named()
    # ilmare netboots: manwe and eonwe boot from their cards and build, 30 minutes each, after the default 10.
    assert regs["netboot-daemonset-netboot-cache"].custom_timeouts == {"create": "70m", "update": "70m"}
    # The other objects keep pulumi-kubernetes' default: only the cache waits on a build.
    assert regs["netboot-deployment-netboot"].custom_timeouts == {}
    stack = two_netbooting()
    assert [n.name for n in pi_pods.card_pis(stack)] == ["manwe"]
    assert pi_pods.cache_wait_minutes(stack) == 40
    assert pi_pods.cache_wait_message(stack) == (
        "netboot-cache is ready on a Pi only once the Pi image ubuntu-24.04.3-9bb1799cee89 is built there: a new image is "
        "downloaded (~1.2 GB) and unpacked (~7 GB written to the SD card) on each Pi that boots from its card (manwe), one "
        "Pi at a time, up to 30 minutes each; pulumi up waits up to 40 minutes, and so do Arda's netbooting machines, which "
        "wait for netboot-cache. A built image takes seconds (nothing is downloaded)."
    )


def test_without_a_netbooting_maia_netboot_cache_waits_the_default() -> None:
    from plans.netboot import pi_pods

    regs = simulated(HOMELAB).named()
    # pulumi-kubernetes' own default (10 minutes), as before maiar netbooted.
    assert regs["netboot-daemonset-netboot-cache"].custom_timeouts == {}
    assert pi_pods.cache_wait_minutes(load_stack_file(HOMELAB)) == pi_pods.AWAIT_MINUTES == 10


# --- Each maia's own join token (plans.agent_token): never the server token on a maia's root -------------------------

FULL_TOKEN = re.compile(r"^K10[0-9a-f]{64}::[a-z0-9]{6}\.[a-z0-9]{16}$")


def test_each_maia_joins_with_its_own_agent_token_pinned_to_the_ca(homelab: Simulation) -> None:
    """A maia's config carries `K10<CA hash>::<id>.<secret>`: the hash the ca-hash step printed, its own id and secret;
    never the server token, which the valar's config still carries."""
    regs = homelab.named()
    server = yaml.safe_load(regs["ainur-manwe-join"].inputs["stdin"].value)["token"]
    assert server == PLACEHOLDER  # the server token: the valar's, unchanged
    seen = set()
    for pi in ("eonwe", "ilmare"):
        token = yaml.safe_load(regs[f"ainur-{pi}-join"].inputs["stdin"].value)["token"]
        assert FULL_TOKEN.match(token), token
        token_id = regs[f"ainur-{pi}-token-id"]
        secret = regs[f"ainur-{pi}-token-secret"]
        assert token_id.type == "random:index/randomString:RandomString"
        assert secret.type == "random:index/randomPassword:RandomPassword"
        for reg, length in ((token_id, 6), (secret, 16)):
            assert {k: reg.inputs[k] for k in ("length", "lower", "numeric", "special", "upper")} == {
                "length": length, "lower": True, "numeric": True, "special": False, "upper": False,
            }  # fmt: skip
        ident, value = (
            hashlib.sha256(f"mock ainur-{pi}-token-id".encode()).hexdigest()[:6],
            hashlib.sha256(f"mock ainur-{pi}-token-secret".encode()).hexdigest()[:16],
        )
        assert token == f"K10{MOCK_CA_HASH}::{ident}.{value}"
        assert server not in token
        seen.add(token)
        # Sent only once its Secret exists, and only after the previous Pi in the chain is back.
        assert regs[f"ainur-{pi}-agent-token"].urn in regs[f"ainur-{pi}-join"].dependencies
        assert regs["ainur-ca-hash"].urn in regs[f"ainur-{pi}-join"].property_dependencies["stdin"]
    assert len(seen) == 2
    assert regs["ainur-eonwe-k3s"].urn in regs["ainur-ilmare-join"].dependencies  # one Pi at a time, as before
    # The hash is read on the first valar once it joined, and prints nothing secret (it is not kept secret).
    ca_hash = regs["ainur-ca-hash"]
    assert ca_hash.dependencies == (regs["ainur-manwe-join"].urn,)
    assert ca_hash.inputs["create"] == agent_token.ca_hash_script()
    assert "stdout" not in ca_hash.additional_secret_outputs


def test_each_maias_bootstrap_token_secret_is_exactly_kubernetes_and_made_on_the_ainur(homelab: Simulation) -> None:
    regs = homelab.named()
    for pi in ("eonwe", "ilmare"):
        secret = regs[f"ainur-{pi}-agent-token"]
        ident = hashlib.sha256(f"mock ainur-{pi}-token-id".encode()).hexdigest()[:6]
        value = hashlib.sha256(f"mock ainur-{pi}-token-secret".encode()).hexdigest()[:16]
        assert secret.type == "kubernetes:core/v1:Secret"
        assert secret.inputs["type"] == "bootstrap.kubernetes.io/token"
        metadata = secret.inputs["metadata"]
        metadata = metadata.value if isinstance(metadata, SecretValue) else metadata
        assert metadata == {
            "name": f"bootstrap-token-{ident}", "namespace": "kube-system", "labels": {"app.kubernetes.io/part-of": "iluvatar", "iluvatar/pi": pi},
        }  # fmt: skip
        data = secret.inputs["stringData"]
        assert isinstance(data, SecretValue)
        assert data.value == {
            "token-id": ident,
            "token-secret": value,
            "usage-bootstrap-authentication": "true",
            "description": f"k3s agent join token of the Ainur maia {pi} (Iluvatar; revoked when the Pi leaves the inventory)",
        }  # no expiration, no extra group: the supervisor's agent routes take system:bootstrappers (router.go:36)
        assert secret.provider.startswith(regs["ainur-kubernetes"].urn)
        assert secret.parent == regs[f"ainur-{pi}"].urn


def test_a_maia_removed_takes_its_token_and_leaves_the_others_untouched(
    recovery_stacks: dict[str, tuple[dict[str, Any], Simulation]], removed: Callable[[str, str], Simulation]
) -> None:
    """Removing a maia deletes its bootstrap-token Secret (its token revoked); the other maia's token, Secret and config
    are the same as before (adding a Pi likewise changes only its own)."""
    _, sim = recovery_stacks["homelab"]
    after = removed("homelab", "eonwe")
    before, now = sim.named(), after.named()
    gone = sorted(set(before) - set(now))
    assert {"ainur-eonwe-agent-token", "ainur-eonwe-token-id", "ainur-eonwe-token-secret"} <= set(gone)
    assert all(name.startswith("ainur-eonwe") or "eonwe" in name for name in gone), gone
    for name in ("ainur-ilmare-agent-token", "ainur-ilmare-token-id", "ainur-ilmare-token-secret"):
        assert now[name].inputs == before[name].inputs, name
    assert (
        yaml.safe_load(now["ainur-ilmare-join"].inputs["stdin"].value)["token"]
        == yaml.safe_load(before["ainur-ilmare-join"].inputs["stdin"].value)["token"]
    )


# --- A netbooted maia rebuilt with a new SSH host key (docs/layers/ainur.md), through the engine's rules ---

OLD_HOST_KEY_RUNBOOK = """# Ainur

### A Pi rebuilt with a new host key

Run `pulumi state delete '<urn of ainur-<pi>-host-key>'` (`pulumi stack --show-urns` lists it), then `pulumi up`.
"""


def test_an_inline_runbook_command_is_run_against_the_engine_and_the_old_host_key_one_is_refused(netbooting: Simulation, tmp_path: Path) -> None:
    """Issue 57 (7): the host-key runbook's command was inline, and tests/runbook.py read only ```sh blocks. Read now,
    the engine's model refuses it as pulumi v3.259.0 does (pkg/resource/edit/operations.go:83-86, the message of
    pkg/cmd/pulumi/state/state_delete.go:120-128): the Pi's steps pinned to the key depend on it; its hint,
    --target-dependents, drops them from the state, and the next `up` would run them all again."""
    page = tmp_path / "ainur.md"
    page.write_text(OLD_HOST_KEY_RUNBOOK)
    said = runbook.commands(str(page), "### A Pi rebuilt with a new host key", pi="ilmare")
    assert said == ["pulumi state delete '<urn of ainur-ilmare-host-key>'"]
    state = state_of(netbooting)
    with pytest.raises(EngineRefusedError) as refused:
        runbook.run(said, state)
    key = next(e for e in state if e.name == "ainur-ilmare-host-key")
    assert str(refused.value).startswith(f"{key.urn} can't be safely deleted because the following resources depend on it:\n")
    assert str(refused.value).endswith("\nDelete those resources first or pass --target-dependents.")
    dependents = re.findall(r'^ \* "([^"]+)"', str(refused.value), re.MULTILINE)
    assert {"ainur-ilmare-reboot", "ainur-ilmare-join", "ainur-ilmare-k3s"} <= set(dependents)
    dropped = runbook.run([said[0].replace("delete", "delete --target-dependents")], state).removed
    assert {"ainur-ilmare-host-key", "ainur-ilmare-reboot", "ainur-ilmare-join", "ainur-ilmare-k3s"} <= {e.name for e in dropped}


def test_a_pi_rebuilt_with_a_new_host_key_has_it_read_again_as_the_runbook_says(netbooting: Simulation, tmp_path: Path) -> None:
    """Issue 57 (7): `hostKeyRead` up by one gives the host-key step a new name, so the engine creates it with the
    program's connection (no old inputs to fill the ignored `connection` from), the steps pinned to the key follow the
    new one, and the old step leaves the state running nothing; nothing else leaves it."""
    state = state_of(netbooting)
    again = simulate(read_stack_file(write_stack(tmp_path, edit(homelab_doc(), {**NETBOOTING, "iluvatar:nodes[2].hostKeyRead": 1}), stack="homelab")))
    regs = again.named()
    registered = {r.urn for r in again.registrations}
    gone = [e for e in state if e.urn not in registered]
    assert [e.name for e in gone] == ["ainur-ilmare-host-key"]
    assert gone[0].delete_command is None
    new = regs["ainur-ilmare-host-key-1"]
    assert new.urn not in {e.urn for e in state}  # created, not replaced: its connection is the program's
    assert new.ignore_changes == ("connection",)  # read once again: its own connection's later changes read nothing
    for step in ("reboot", "join", "k3s"):
        reg = regs[f"ainur-ilmare-{step}"]
        assert new.urn in reg.property_dependencies["connection"], step
        assert "ainur-ilmare-host-key" not in [dep.rsplit("::", 1)[-1] for dep in reg.dependencies], step
        # Pinned to the new read, over the connection the program has now.
        conn = reg.inputs["connection"].value
        assert "hostKey" in conn and {k: v for k, v in conn.items() if k != "hostKey"} == new.inputs["connection"].value, step


def test_every_inline_pulumi_command_the_docs_give_runs_past_the_engine(netbooting: Simulation, tmp_path: Path) -> None:
    """Issue 57 (7): each `pulumi` command written inline in docs/ that names what it acts on (`state delete`,
    `state unprotect`, `up --replace`), with `<pi>` a netbooting maia, is worked out by the engine's model
    (tests/runbook.py) on the netbooting homelab's state, or a Headscale stack's for what only it has: none is refused
    (on today's main the host-key runbook's `state delete` is)."""
    headscale = simulate(read_stack_file(write_stack(tmp_path, remote_doc(HEADSCALE))))
    states = [state_of(netbooting), state_of(headscale)]

    def state_for(line: str) -> tuple[StateEntry, ...]:
        names = {m.group(1) or m.group(2) for m in runbook.URN_OF.finditer(line)}
        return next(s for s in states if names <= {e.name for e in s})

    checked: set[str] = set()
    for page in sorted((runbook.ROOT / "docs").rglob("*.md")):
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)  # a `# comment` in a block is no heading
        for heading in re.findall(r"^#{1,6} .*$", text, re.MULTILINE):
            try:
                said = runbook.commands(str(page), heading, blocks=False, pi="ilmare")
            except LookupError:
                continue
            for line in said:
                if line.split()[1] in ("state", "up") and line not in checked:
                    runbook.run([line], state_for(line))
                    checked.add(line)
    assert sorted(checked) == [
        "pulumi state delete '<urn of ainur-ilmare-uninstall>'",
        "pulumi state unprotect '<urn of netboot-persistentvolumeclaim-pi-root-ilmare>'",
        "pulumi state unprotect <urn of remote-access-ainur-persistentvolumeclaim-headscale-state>",
        "pulumi up --replace '**::arda-power-<name>'",
        "pulumi up --replace <the ainur-credentials URN>",
    ]


def test_a_netbooted_maia_s_k3s_certificates_are_recorded_and_renewed_like_any_pi_s(
    tmp_path: Path, netbooting: Simulation, caplog: pytest.LogCaptureFixture
) -> None:
    """Ilmarë, netbooting, has its steps made after the netboot service: its k3s certificates' end is recorded all the
    same, and a run within 119 days of it runs its k3s step, as the preview's day-2 plan says (logged before ilmarë's
    steps are made)."""
    previous = outputs_of(netbooting)
    end = simulate_module.MOCK_K3S_CERTIFICATES_END
    assert previous["ainur"]["certificates"]["ilmare"] == {"end": end, "trigger": None, "clock": None}
    stack_file = read_stack_file(write_stack(tmp_path, edit(homelab_doc(), NETBOOTING), stack="homelab"))
    caplog.set_level(logging.INFO)
    due = simulate(stack_file, previous=previous, preview=True, now=datetime.datetime(2027, 7, 30, 12, 0, tzinfo=datetime.UTC))
    # After its reboot step's run mark (plans.netboot.roll), as every step of a netbooted maia.
    assert due.named()["ainur-ilmare-k3s"].inputs["triggers"][-1] == f"renew the k3s certificates ending {end}"
    [plan] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Ainur:")]
    assert [line.split(":")[0] for line in plan.splitlines()] == ["Ainur", "  1. manwe", "  2. eonwe", "  3. ilmare"]
    assert plan.splitlines()[3].startswith(f"  3. ilmare: its k3s certificates end at {end}, within 119 days: its k3s step runs and restarts k3s")


def test_turning_secrets_encryption_off_asks_the_valar_before_any_roll(homelab: Simulation, tmp_path: Path) -> None:
    """Over an Ainur whose output says it ran k3s's secrets encryption, or does not say (outputs from before the key was
    recorded, when main turned it on by default), the `up` that turns it off runs k3s's disable on the first valar, and
    every Pi's roll waits on it (the first valar's join and k3s steps directly, the rest through the chain). The preview
    says it will. An output that ran without it gets no such step."""
    ran = outputs_of(homelab)["ainur"]
    assert ran["secretsEncryption"] is True
    older = {k: v for k, v in ran.items() if k != "secretsEncryption"}
    older["commands"] = {k: v for k, v in older["commands"].items() if k != "secrets-rewrite"}
    (tmp_path / "never").mkdir()
    for sub, previous in (("recorded", ran), ("older", older)):
        # The run over `ran` is the one the back-on test makes of the same stack (tests.sims.logged_run: once a process).
        off, logged = logged_run(edit(homelab_doc(), {"iluvatar:ainur.secretsEncryption": False}), "homelab", {"ainur": previous}, preview=True)
        regs = off.named()
        step = regs["ainur-secrets-off"]
        assert step.inputs["create"] == k3s.secrets_off_script()
        assert step.urn in regs["ainur-manwe-join"].dependencies
        assert step.urn in regs["ainur-manwe-k3s"].dependencies
        assert "ainur-secrets-rewrite" not in regs
        said = [m for m in logged if "ainur-secrets-off runs k3s's disable on manwe" in m]
        assert len(said) == 1, sub
    stack_file = read_stack_file(write_stack(tmp_path / "never", edit(homelab_doc(), {"iluvatar:ainur.secretsEncryption": False}), stack="homelab"))
    never = simulate(stack_file, previous={"ainur": {**ran, "secretsEncryption": False}}, preview=True)
    assert "ainur-secrets-off" not in never.named()
    assert "ainur-secrets-off" not in homelab.named()


def test_turning_secrets_encryption_back_on_asks_the_valar_before_the_rewrite(
    homelab: Simulation, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Over an Ainur that ran without it, the valar rolled with the flag may still read a config k3s kept from a
    disable: ainur-secrets-on runs after the last valar's steps and the rewrite waits on it, and the preview says so.
    Over an output that ran with it, the same step with the same command (the engine leaves it be), said nothing of.
    While the flag is off it is not in the program."""
    ran = outputs_of(homelab)["ainur"]
    stack_file = read_stack_file(write_stack(tmp_path, homelab_doc(), stack="homelab"))
    caplog.set_level(logging.INFO)
    back = simulate(stack_file, previous={"ainur": {**ran, "secretsEncryption": False}}, preview=True).named()
    step = back["ainur-secrets-on"]
    assert step.inputs["create"] == k3s.secrets_on_script()
    assert back["ainur-manwe-k3s"].urn in step.dependencies
    assert back["ainur-secrets-rewrite"].dependencies == (step.urn,)
    assert len([r for r in caplog.records if "ainur-secrets-on reads k3s's status on manwe" in r.getMessage()]) == 1
    # The next two runs are made once a process (tests.sims.logged_run): three tests of this file preview the homelab over
    # its own outputs, two the homelab with the flag off over them.
    kept_run, logged = logged_run(homelab_doc(), "homelab", {"ainur": ran}, preview=True)
    kept = kept_run.named()
    assert "ainur-secrets-off" not in kept
    assert kept["ainur-secrets-on"].inputs == homelab.named()["ainur-secrets-on"].inputs
    assert not [m for m in logged if "ainur-secrets-on" in m]
    off, _ = logged_run(edit(homelab_doc(), {"iluvatar:ainur.secretsEncryption": False}), "homelab", {"ainur": ran}, preview=True)
    assert "ainur-secrets-on" not in off.named()


def test_the_up_that_turns_secrets_encryption_on_fails_after_the_join_and_the_next_up_still_runs_the_on_step(
    homelab: Simulation, tmp_path: Path
) -> None:
    """The `up` that gives the flag back fails at or before ainur-secrets-on (a timeout, a Pi away): the engine writes
    its outputs all the same (plans.rollout), so the `ainur` output says on, while the state has no ainur-secrets-on
    (a create that failed, or never started, is not kept) and k3s still runs the identity-first config the disable
    left. The next `up` plans the step again from the stack, so the engine creates it: it runs."""
    stack_file = read_stack_file(write_stack(tmp_path, homelab_doc(), stack="homelab"))
    ran_off = {**outputs_of(homelab)["ainur"], "secretsEncryption": False}
    failed = simulate(stack_file, previous={"ainur": ran_off})
    assert outputs_of(failed)["ainur"]["secretsEncryption"] is True
    left = {e.urn for e in state_of(failed) if e.name not in ("ainur-secrets-on", "ainur-secrets-rewrite")}
    retry = logged_run(homelab_doc(), "homelab", {"ainur": outputs_of(failed)["ainur"]}, preview=True)[0].named()
    step = retry["ainur-secrets-on"]
    assert step.urn not in left
    assert step.inputs["create"] == k3s.secrets_on_script()
    assert retry["ainur-manwe-k3s"].urn in step.dependencies
    assert retry["ainur-secrets-rewrite"].dependencies == (step.urn,)


def test_the_flag_given_back_after_an_off_up_that_wrote_no_outputs_runs_the_on_step_the_state_kept(homelab: Simulation, tmp_path: Path) -> None:
    """An off-`up` that failed or was killed at or after its off step writes no outputs (the SDK registers them only once
    every exported value resolves, sdk/python/lib/pulumi/runtime/stack.py:336-344): the next `up` reads the homelab's,
    which say sealed. The off step waits on ainur-secrets-epoch, whose keepers the flag changed, so the engine replaced
    it and kept its new id in the state before the off step ran; the `up` that gives the flag back replaces it again, and
    ainur-secrets-on, which the state kept with the homelab's inputs, gets a trigger other than the state's, so the engine
    runs it. The `up` after that, with the same flag, changes nothing of either."""
    ran = homelab.named()
    kept, epoch = ran["ainur-secrets-on"], ran["ainur-secrets-epoch"]
    assert epoch.type == "random:index/randomId:RandomId"
    assert (epoch.inputs["keepers"], epoch.inputs["byteLength"]) == ({"secretsEncryption": "on"}, 4)
    assert kept.inputs["triggers"] == [kept.inputs["triggers"][0]] and len(kept.inputs["triggers"][0]) == 8
    assert day2.SECRETS_OFFS not in outputs_of(homelab)["ainur"]
    in_state = {"ainur-secrets-epoch": {"keepers": epoch.inputs["keepers"], "hex": kept.inputs["triggers"][0]}}
    on_file = read_stack_file(write_stack(tmp_path, homelab_doc(), stack="homelab"))
    # The off run is the one the flag-taken-away test makes (tests.sims.logged_run: once a process).
    off = logged_run(edit(homelab_doc(), {"iluvatar:ainur.secretsEncryption": False}), "homelab", {"ainur": outputs_of(homelab)["ainur"]}, in_state)[
        0
    ].named()
    assert off["ainur-secrets-epoch"].inputs["keepers"] == {"secretsEncryption": "off"}
    assert off["ainur-secrets-off"].dependencies == (off["ainur-secrets-epoch"].urn,)
    # The off step failed: the state holds the epoch replaced (keepers off, a new id), the outputs are the homelab's.
    replaced = {"ainur-secrets-epoch": {"keepers": {"secretsEncryption": "off"}, "hex": "0badcafe"}}
    back = simulate(on_file, previous={"ainur": outputs_of(homelab)["ainur"]}, prior=replaced).named()["ainur-secrets-on"]
    assert back.inputs["create"] == kept.inputs["create"]
    assert back.inputs["triggers"] != kept.inputs["triggers"]
    since = {"ainur-secrets-epoch": {"keepers": {"secretsEncryption": "on"}, "hex": back.inputs["triggers"][0]}}
    again = simulate(on_file, previous={"ainur": outputs_of(homelab)["ainur"]}, prior=since, preview=True).named()["ainur-secrets-on"]
    assert again.inputs == back.inputs


def test_the_flag_taken_away_after_an_on_up_that_failed_runs_the_off_step_the_state_kept(homelab: Simulation, tmp_path: Path) -> None:
    """An `up` that gives the flag back and fails after the on step leaves ainur-secrets-off in the state with the inputs
    of the last off period (the engine deletes what left the program only after a whole update succeeded), while k3s seals
    again. The off step's trigger is ainur-secrets-epoch's id, which the flag's return replaced: the next off period's
    first `up` finds the step's trigger other than the state's, so the engine runs it again."""
    ran = homelab.named()
    in_state = {
        "ainur-secrets-epoch": {"keepers": ran["ainur-secrets-epoch"].inputs["keepers"], "hex": ran["ainur-secrets-on"].inputs["triggers"][0]}
    }
    off_file = read_stack_file(write_stack(tmp_path, edit(homelab_doc(), {"iluvatar:ainur.secretsEncryption": False}), stack="homelab"))
    first = logged_run(
        edit(homelab_doc(), {"iluvatar:ainur.secretsEncryption": False}), "homelab", {"ainur": outputs_of(homelab)["ainur"]}, in_state
    )[0].named()
    kept = first["ainur-secrets-off"]
    assert len(kept.inputs["triggers"]) == 1 and len(kept.inputs["triggers"][0]) == 8
    assert kept.property_dependencies["triggers"] == (first["ainur-secrets-epoch"].urn,)
    # The flag given back in an `up` that failed after its on step: the epoch replaced (keepers on, a new id).
    back = {"ainur-secrets-epoch": {"keepers": {"secretsEncryption": "on"}, "hex": "0badcafe"}}
    again = simulate(off_file, previous={"ainur": outputs_of(homelab)["ainur"]}, prior=back).named()["ainur-secrets-off"]
    assert again.inputs["create"] == kept.inputs["create"]
    assert again.inputs["triggers"] != kept.inputs["triggers"]
    # A retry in the same off period keeps the epoch, and the step is unchanged.
    same = {"ainur-secrets-epoch": {"keepers": {"secretsEncryption": "off"}, "hex": again.inputs["triggers"][0]}}
    retry = simulate(off_file, previous={"ainur": outputs_of(homelab)["ainur"]}, prior=same, preview=True).named()["ainur-secrets-off"]
    assert retry.inputs == again.inputs


def test_an_ainur_whose_rewrite_step_recorded_nothing_is_told_of_the_on_step_s_one_restart(
    homelab: Simulation, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An Ainur deployed with the on step by an Iluvatar whose rewrite step left no record (its output has no
    secretsEpoch): the on step's record names the config before the rewrite's rotation, so the step's next run restarts
    k3s once, and the preview says so; an output with the count is not told."""
    ran = outputs_of(homelab)["ainur"]
    older = {k: v for k, v in ran.items() if k != "secretsEpoch"}
    stack_file = read_stack_file(write_stack(tmp_path, homelab_doc(), stack="homelab"))
    caplog.set_level(logging.INFO)
    simulate(stack_file, previous={"ainur": older}, preview=True)
    said = [r.getMessage() for r in caplog.records if "ainur-secrets-on" in r.getMessage()]
    assert said == [
        "the last deployment's Ainur ran ainur-secrets-on from an Iluvatar whose rewrite step recorded nothing of the key it "
        "rotated to: this up runs the step again (its command changed), and it restarts k3s on manwe once (the API away as "
        "in a roll) and rewrites every Secret under k3s's key, since the step's record names the config before that "
        "rotation; from then on the rewrite step records the config it leaves"
    ]
    # The preview over the homelab's own outputs: the back-on test's (tests.sims.logged_run: once a process).
    _, logged = logged_run(homelab_doc(), "homelab", {"ainur": ran}, preview=True)
    assert not [m for m in logged if "ainur-secrets-on" in m]


def test_an_ainur_deployed_with_the_flag_before_the_on_step_is_told_of_its_one_restart(
    homelab: Simulation, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An Ainur an older Iluvatar deployed with the flag has no ainur-secrets-on, and nothing on its valar says the
    config k3s runs was loaded and every Secret sealed under it: the step's first run restarts k3s there once, and
    the preview says so (its output's `commands` list the rewrite step and not the on step)."""
    ran = outputs_of(homelab)["ainur"]
    older = {**ran, "commands": {k: v for k, v in ran["commands"].items() if k != k3s.SECRETS_ON_STEP}}
    stack_file = read_stack_file(write_stack(tmp_path, homelab_doc(), stack="homelab"))
    caplog.set_level(logging.INFO)
    assert "ainur-secrets-on" in simulate(stack_file, previous={"ainur": older}, preview=True).named()
    said = [r.getMessage() for r in caplog.records if "ainur-secrets-on" in r.getMessage()]
    assert said == [
        "the last deployment's Ainur ran k3s's secrets encryption with no ainur-secrets-on step (an older Iluvatar): this up "
        "creates it, and it restarts k3s on manwe once (the API away as in a roll) and rewrites every Secret under k3s's key, "
        "since nothing there says the config k3s runs was loaded and every Secret sealed under it "
        "(docs/day2.md#the-ainurs-secrets-sealed-by-k3s)"
    ]
