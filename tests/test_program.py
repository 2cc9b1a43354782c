"""The real __main__.py composition, run for each stack file under the Pulumi mock runtime."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest

from iluvatar.simulate import SecretValue, Simulation, simulate
from stacks import read_stack_file
from tests.edit import HOMELAB, RK1, ROOT, edit, homelab_doc, write_stack
from tests.sims import simulated


def test_homelab_registers_ea_with_all_eight_reservations() -> None:
    sim = simulated(HOMELAB)
    ea = sim.one("iluvatar:network:Ea", "ea")
    assert ea.parent == "urn:pulumi:homelab::iluvatar::pulumi:pulumi:Stack::iluvatar-homelab"
    assert not ea.custom
    assert [(r["name"], r["ip"], r["hostname"]) for r in sim.outputs["reservations"]] == [
        ("manwe", "192.168.0.11", "manwe.iluvatar.home.arpa"),
        ("eonwe", "192.168.0.12", "eonwe.iluvatar.home.arpa"),
        ("ilmare", "192.168.0.13", "ilmare.iluvatar.home.arpa"),
        ("taniquetil", "192.168.0.21", "taniquetil.iluvatar.home.arpa"),
        ("tirion", "192.168.0.22", "tirion.iluvatar.home.arpa"),
        ("alqualonde", "192.168.0.23", "alqualonde.iluvatar.home.arpa"),
        ("gandalf", "192.168.0.31", "gandalf.iluvatar.home.arpa"),
        ("saruman", "192.168.0.32", "saruman.iluvatar.home.arpa"),
    ]
    assert sim.outputs["vips"] == {"ainur": "192.168.0.10", "arda": "192.168.0.20"}
    assert sim.outputs["loadBalancerPool"] == {"start": "192.168.0.220", "end": "192.168.0.239"}
    assert sim.outputs["lan"] == "192.168.0.0/24"


def test_rk1_registers_ea_with_four_arda_reservations() -> None:
    sim = simulated(RK1)
    root = "urn:pulumi:rk1::iluvatar::pulumi:pulumi:Stack::iluvatar-rk1"
    assert sorted((r.type, r.name) for r in sim.registrations if r.parent == root) == [
        ("iluvatar:arda:TalosCluster", "arda"),
        ("iluvatar:arda:TalosConfig", "arda-config"),
        ("iluvatar:data:DataSafety", "data"),
        ("iluvatar:edge:Edge", "edge"),
        ("iluvatar:edge:LocalCa", "local-ca"),
        ("iluvatar:gitops:GitOps", "gitops"),
        ("iluvatar:logs:Logs", "logs"),
        ("iluvatar:monitoring:Monitoring", "monitoring"),
        ("iluvatar:network:Ea", "ea"),
        ("iluvatar:storage:Storage", "storage"),
    ]
    assert {r["cluster"] for r in sim.outputs["reservations"]} == {"arda"}
    assert len(sim.outputs["reservations"]) == 4
    assert sim.outputs["vips"] == {"turing": "10.10.0.10"}


def test_invalid_config_stops_the_program_before_any_resource(tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"iluvatar:nodes[3].ip": "192.168.1.5", "iluvatar:arda.vip": "192.168.0.150"})
    sf = read_stack_file(write_stack(tmp_path, doc, stack="broken"))
    sim = Simulation(stack="broken")
    with pytest.raises(pulumi.RunError) as err:
        simulate(sf, record=sim)
    assert sim.registrations == []
    assert str(err.value).splitlines() == [
        "stack broken: 2 problems:",
        "  iluvatar:arda.vip: 192.168.0.150 is inside network.dhcpRange 192.168.0.100-192.168.0.199, so DHCP could hand it to another "
        "machine; write an address inside network.lan 192.168.0.0/24, outside network.dhcpRange and network.loadBalancerPool, e.g. 192.168.0.2",
        "  iluvatar:nodes[3].ip: 192.168.1.5 is outside network.lan 192.168.0.0/24; write an address inside network.lan 192.168.0.0/24, "
        "outside network.dhcpRange and network.loadBalancerPool, e.g. 192.168.0.2",
    ]


def test_every_resource_has_a_name_of_its_own() -> None:
    """Names are unique in the program (the tests and the render look resources up by name)."""
    for path in (HOMELAB, RK1):
        names = [r.name for r in simulated(path).registrations]
        assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)


def test_recorder_sees_registrations_of_a_valid_run() -> None:
    """Guards the test above: an empty record must mean nothing was registered, not a blind recorder."""
    sim = Simulation(stack="homelab")
    simulate(read_stack_file(HOMELAB), record=sim)
    # #44 added six: the log pipeline's PodMonitor, ScrapeConfig, vmalert Service and ServiceMonitor; the drill's tools claim
    # and its storage gate.
    # plans.agent_token added seven: the Ainur's ca-hash step, and each of the two maiar's token id, secret and Secret;
    # the netboot clearance step one more (through the Ainur's command provider), and the DHCP probe before dnsmasq serves
    # one more (plans.netboot.dhcp_probe).
    # #54 added three: who may reach the log store (its readers' NetworkPolicy, its writers' CiliumNetworkPolicy) and vmalert;
    # and two: the Ainur's policy of who may register a Node, and its binding; and the gate before the CiliumNetworkPolicy.
    # #55 added fourteen: the KMS (plans.kms), its component, random provider and protected key, its certificate's key,
    # request and certificate, its Namespace, two Secrets, ServiceAccount, ConfigMap, DaemonSet, Service and NetworkPolicy.
    # #56 added six: the raw-port apps' component (Ports), its gate before the CiliumNetworkPolicies, and minecraft's and
    # mosquitto's LoadBalancer Service and CiliumNetworkPolicy each.
    # #54 then seven more: each listener's NetworkPolicy on the Ainur (the identity namespace's default deny, Dex's, the
    # front door's; netboot's default deny, the Git mirror's) and on Arda (CoreDNS's, cloudflared's).
    # #56's fixes then eight: a pool of its own for each raw-port app's address (minecraft's, mosquitto's), and the
    # broker's claim and the Minecraft world's archives backed up (each its restic Secret, its password, its drill).
    # #57 added three: each Pi's netboot gate after its k3s step (the household's DHCP and DNS back before the next Pi).
    # #55 then two: the KMS's own list of the machines it answers (a ConfigMap), and on Arda the clusterwide
    # Cilium policy that keeps every pod from the KMS (pods masquerade as their machine's address).
    # #53 then two: dnsmasq.conf in a ConfigMap of its own named by its content, which only the netboot pod's template
    # names (the kubelet updates the netboot ConfigMap's volume in the running pod: a restart read the next mode's conf);
    # and in dhcp mode netboot-router-off on every stack, which reads from the running Deployment whether the `up` moves
    # the LAN from the router's lending (the outputs of a failed `up` would hide it; a first bring-up is such a move).
    # #54 then seven: Longhorn's NetworkPolicies on the Ainur (its managers' API, admission webhook, recovery backend,
    # instance managers, both backing-image managers, its UI), created before its chart runs a pod. Then two: the metrics
    # API adapter's CiliumNetworkPolicy admitting the API server, and the gate before it. Then ten: Argo CD's
    # NetworkPolicies on each cluster (a default deny, the server's, Redis', the repo server's, the controller's), the
    # program's in place of its chart's, whose metrics admitted every pod.
    # #56 then fifteen: the homelab's remote access (Headscale on the Ainur: the component, its namespace, ConfigMap,
    # Deployment, Service, protected state claim and the gate before it on Longhorn, default deny and NetworkPolicy; the
    # subnet router's Deployment, ServiceAccount, Role and RoleBinding; the steps that make the users and enrol the router).
    # #57 then seven: Headscale's state backed up (its restic Secret, the random provider and protected password, the
    # CronJob that restarts Headscale for its backup, its ServiceAccount, Role and RoleBinding). Then two: the
    # ValidatingAdmissionPolicy and binding that let that account change only its stamp of Headscale's pod template.
    # Then two: Headscale's state restore drill on Arda (its CronJob, its copy of the state repository's Secret).
    # #54 then four: the log store's admin key (the random provider, the password, its Secret), and the NetworkPolicy
    # of Longhorn's support-bundle manager.
    # #55 then three: the KMS key's age file on Arda (a ConfigMap), the CronJob that uploads it to the backup target,
    # and its restore drill's CronJob.
    # #55 then one: the step that rewrites the Ainur's Secrets under k3s's key once every valar runs with it. Then four:
    # Longhorn's encrypted class, its Secret, and the random provider and protected passphrase behind it.
    # #54 then one: VolSync's NetworkPolicy, admitting Prometheus alone to its metrics, which ask no token.
    # #53 then one: the step that rolls kube-vip-services, the Pi holding the service address last.
    # #57 then one: the blackbox Probe of Headscale's certificate.
    # #58 then one: ainur-secrets-on, kept in the program while the flag is on. Then one: the step that takes back a
    # NodePort a gateway's proxy Service still holds (plans.gateways.node_port_release).
    assert len(sim.registrations) == 422


# --- Resource options, as the engine receives them ---------------------------------------------


def _bare(tmp_path: Path, body: str) -> Simulation:
    """Register resources with no options from the program, to see what their SDK classes add by themselves."""
    program = tmp_path / "bare.py"
    program.write_text("import pulumi\nimport pulumi_command as command\nimport pulumiverse_talos as talos\n" + body)
    return simulate(read_stack_file(HOMELAB), program=program)


@pytest.fixture(scope="module")
def homelab() -> Simulation:
    return simulated(HOMELAB)


def test_machine_secrets_are_protected_secret_and_upgrade_proof(homelab: Simulation) -> None:
    secrets = homelab.one("talos:machine/secrets:Secrets", "arda-config-secrets")
    assert secrets.options() == {
        "protect": True,
        "additionalSecretOutputs": ["clientConfiguration", "machineSecrets"],
        "ignoreChanges": ["talosVersion"],
    }
    assert secrets.provider.startswith(homelab.one("pulumi:providers:talos", "arda-config-talos").urn + "::")
    # The other irreplaceable state is the edge's local root CA (tests/components/test_edge.py).
    # Irreplaceable: the machine secrets, the local CA, and what the data layer generates (app secrets, each volume's
    # restic password, the age identity that opens Arda's etcd snapshots), and the KMS's key, without which no Arda
    # volume it sealed unlocks (plans.kms). Sorted: the SDK registers them as their inputs resolve, in no fixed order.
    assert sorted(r.name for r in homelab.registrations if r.protect) == [
        "arda-config-secrets",
        "data-backup-age-identity",
        "data-backup-home-assistant-home-assistant-config-restic-password",
        "data-backup-jellyfin-jellyfin-config-restic-password",
        "data-backup-minecraft-backups-minecraft-0-restic-password",
        "data-backup-mosquitto-mosquitto-data-restic-password",
        "data-secrets-blog-database_password",
        "data-secrets-jellyfin-api_key",
        "edge-certificates-ca-cert",
        "edge-certificates-ca-key",
        "kms-key",
        # The passphrase of every encrypted Longhorn volume on the Ainur (plans.storage.crypto_secret).
        "storage-ainur-longhorn-crypto",
    ]


def test_the_secret_outputs_of_the_machine_secrets_are_the_programs_own(tmp_path: Path) -> None:
    """The Talos SDK marks none of Secrets' outputs secret itself: without the program's option they would be plain in state."""
    bare = _bare(tmp_path, 'p = talos.Provider("p")\ntalos.machine.Secrets("bare", opts=pulumi.ResourceOptions(provider=p))\n')
    assert bare.one("talos:machine/secrets:Secrets", "bare").options() == {}


def test_k3s_join_marks_its_output_and_its_config_secret_itself(tmp_path: Path, homelab: Simulation) -> None:
    bare = _bare(
        tmp_path,
        'p = command.Provider("p")\ncommand.remote.Command("bare", connection={"host": "h"}, create="c", stdin="s", opts=pulumi.ResourceOptions(provider=p))\n',
    )
    sdk = bare.one("command:remote:Command", "bare")
    assert (sdk.additional_secret_outputs, sdk.secret_inputs) == (("connection",), ("connection",))
    for pi in ("manwe", "eonwe", "ilmare"):
        join = homelab.one("command:remote:Command", f"ainur-{pi}-join")
        # The program's own on top of the SDK's: what the Pi prints back, and the config carrying the token.
        assert sorted(join.additional_secret_outputs) == ["connection", "stderr", "stdout"]
        assert join.secret_inputs == ("connection", "stdin")
    credentials = homelab.one("command:remote:Command", "ainur-credentials")
    assert sorted(credentials.additional_secret_outputs) == ["connection", "stdout"]


def test_the_sdk_marks_the_applied_machine_config_secret_by_itself(tmp_path: Path) -> None:
    """Why a secret `machineConfigurationInput` proves nothing about the program: the SDK wraps it whatever it is given."""
    bare = _bare(
        tmp_path,
        'p = talos.Provider("p")\n'
        'talos.machine.ConfigurationApply("bare", client_configuration={"ca_certificate": "c", "client_certificate": "c", "client_key": "k"},'
        ' machine_configuration_input="plain", node="n", opts=pulumi.ResourceOptions(provider=p))\n',
    )
    assert bare.one("talos:machine/configurationApply:ConfigurationApply", "bare").secret_inputs == ("machineConfigurationInput",)


def test_components_register_their_credentials_as_secrets(homelab: Simulation) -> None:
    """Component outputs go into the state as registered: only the program's own marking keeps them secret."""
    outputs = {urn.rsplit("::", 1)[-1]: values for urn, values in homelab.component_outputs.items()}
    for node in ("taniquetil", "tirion", "alqualonde", "gandalf", "saruman"):
        assert outputs[f"arda-{node}"] == {}, node  # its config travels on its step's stdin, a secret input
    assert isinstance(outputs["arda"]["kubeconfig"], SecretValue)
    assert isinstance(outputs["arda-config"]["talosconfig"], SecretValue)
    assert isinstance(outputs["ainur"]["kubeconfig"], SecretValue)
    assert not isinstance(outputs["ainur"]["userData"], SecretValue)  # flashed by hand; it holds no secret


def test_bring_up_order_is_stated_with_depends_on(homelab: Simulation) -> None:
    regs = homelab.named()
    assert regs["arda-taniquetil-apply"].urn in regs["arda-bootstrap"].dependencies
    assert regs["arda-bootstrap"].urn in regs["arda-gate-api"].dependencies
    assert regs["arda-gate-api"].urn in regs["arda-kubeconfig"].dependencies
    # depends_on, not an input: neither resource reads the other's outputs.
    assert not any(regs["arda-taniquetil-apply"].urn in urns for urns in regs["arda-bootstrap"].property_dependencies.values())
    assert regs["netboot"].providers == {"kubernetes": regs["ainur-kubernetes"].urn + "::ainur-kubernetes-id"}
    assert regs["arda-cilium"].providers == {"kubernetes": regs["arda-kubernetes"].urn + "::arda-kubernetes-id"}
    # Only the Pis' journal steps ask the engine to delete first: a rebuilt Pi's new step must start the forwarder after
    # the old one's delete stopped it, not before (components/logs.py); nothing depends on them, so the engine has no
    # dependents to replace with them (iluvatar/graph.py up_replace). Nothing is retained; only objects in a cluster go
    # with it (tests/components/test_day2.py).
    assert sorted(r.name for r in homelab.registrations if r.delete_before_replace) == [
        f"logs-ainur-{pi}-journal-upload" for pi in ("eonwe", "ilmare", "manwe")
    ]
    assert [r.name for r in homelab.registrations if r.retain_on_delete] == []
    assert all(r.type.startswith("kubernetes:") for r in homelab.registrations if r.deleted_with)


# --- Live bugs: a stack without a control plane, and a two-member k3s etcd ---------------------


def test_arda_without_a_control_plane_is_a_clear_error_even_past_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The etcd-quorum rule refuses it; with the rule gone, TalosCluster must still not die with an IndexError."""
    import stacks.rules

    doc = edit(homelab_doc(), {f"iluvatar:nodes[{i}].role": "istari" for i in (3, 4, 5)})
    sf = read_stack_file(write_stack(tmp_path, doc, stack="headless"))
    with pytest.raises(pulumi.RunError) as refused:
        simulate(sf)
    assert "iluvatar:nodes: Arda has 0 valinor (control planes)" in str(refused.value)
    monkeypatch.setattr(stacks.rules, "_counts", lambda p: [])
    sim = Simulation(stack="headless")
    with pytest.raises(pulumi.RunError) as err:
        simulate(sf, record=sim)
    assert str(err.value) == "iluvatar:nodes: Arda has 0 valinor (control planes); Talos needs one to bootstrap etcd (add a node with role: valinor)"
    assert not [r for r in sim.registrations if r.type.startswith(("iluvatar:arda:", "talos:"))]


def test_ainur_without_a_valar_is_a_clear_error_even_past_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The k3s-quorum rule refuses it; with the rule gone, BootstrapCluster must still not die with an IndexError."""
    import stacks.rules

    doc = edit(homelab_doc(), {"iluvatar:nodes[0].role": "maiar"})
    sf = read_stack_file(write_stack(tmp_path, doc, stack="leaderless"))
    monkeypatch.setattr(stacks.rules, "_counts", lambda p: [])
    sim = Simulation(stack="leaderless")
    with pytest.raises(pulumi.RunError) as err:
        simulate(sf, record=sim)
    assert str(err.value) == "iluvatar:nodes: the Ainur have 0 valar (k3s servers); k3s needs one to start its cluster (add a Pi with role: valar)"
    assert not [r for r in sim.registrations if r.type.startswith(("iluvatar:ainur:", "command:"))]


@pytest.mark.parametrize(
    ("edits", "deletes", "expected"),
    [
        (
            # k3s's secrets encryption off: it is refused on several valar, a problem of its own (invalid_stacks.yaml).
            {"iluvatar:nodes[1].role": "valar", "iluvatar:ainur.secretsEncryption": False},
            [],
            [
                "  iluvatar:nodes: Ainur has 2 valar (k3s servers); embedded etcd needs an odd number (1 or 3) to keep quorum; add or remove a machine with role: valar to make it 3 or 1"
            ],
        ),
        (
            {
                "iluvatar:nodes[1].role": "valar",
                "iluvatar:nodes[2].role": "valar",
                # saruman: gandalf runs Home Assistant on its own network, which must stay on a worker.
                "iluvatar:nodes[7].role": "valar",
                "iluvatar:nodes[7].arch": "amd64",
                "iluvatar:ainur.secretsEncryption": False,
            },
            [],
            [
                "  iluvatar:nodes: Ainur has 4 valar (k3s servers); embedded etcd needs an odd number (1 or 3) to keep quorum; add or remove a machine with role: valar to make it 3"
            ],
        ),
        (
            {"iluvatar:nodes[1].role": "valar"},
            # Sign-in's Dex runs on the Ainur: it goes with them.
            ["iluvatar:ainur", "iluvatar:storage.ainur", "iluvatar:identity", "iluvatar:identityConnectorSecret", "iluvatar:arda.encryption"],
            [
                "  iluvatar:nodes[0].role: valar belongs to the Ainur, but iluvatar:ainur is not set",
                "  iluvatar:nodes[1].role: valar belongs to the Ainur, but iluvatar:ainur is not set",
                "  iluvatar:nodes[2].role: maiar belongs to the Ainur, but iluvatar:ainur is not set",
            ],
        ),
    ],
    ids=["two-valar", "four-valar", "two-valar-without-ainur"],
)
def test_an_even_k3s_etcd_is_refused_through_pulumi_config(edits: dict[str, str], deletes: list[str], expected: list[str], tmp_path: Path) -> None:
    """The path `pulumi preview` takes (stacks.pulumi_source from the engine's config), not only the stack-file reader."""
    sf = read_stack_file(write_stack(tmp_path, edit(homelab_doc(), edits, deletes), stack="even"))
    sim = Simulation(stack="even")
    with pytest.raises(pulumi.RunError) as err:
        simulate(sf, record=sim)
    assert sim.registrations == []
    assert str(err.value).splitlines()[1:] == expected


# --- Determinism: the same config gives the same bytes, in any process ------------------------


def _render(project: Path, stack: str, out: Path, hash_seed: str) -> dict[str, bytes]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    command = [sys.executable, "-m", "iluvatar", "render", "--stack", stack, "--project", str(project), "--out", str(out)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


# Beyond the shipped stacks: a VLAN machine, proxy DHCP with generic workers, user patches and Cilium values,
# so every set and dict the program builds is on the path.
EVERYTHING = {
    "iluvatar:nodes[7].vlan": "iot",
    "iluvatar:nodes[7].ip": "192.168.20.32",
    "iluvatar:nodes[3].talosPatches": [{"machine": {"sysctls": {"vm.nr_hugepages": "1024"}}}],
    "iluvatar:ainur.netboot": {
        "mode": "proxy",
        "unknownMacs": "generic-worker",
        "genericWorker": {"board": "generic-arm64", "installDisk": "/dev/sda"},
    },
    "iluvatar:arda.patches": [{"cluster": {"proxy": {"disabled": True}}}, {"machine": {"time": {"servers": ["time.cloudflare.com"]}}}],
    "iluvatar:arda.cilium": {"hubble": False, "values": {"bpf": {"masquerade": True}, "ipv6": {"enabled": False}}},
}


@pytest.mark.parametrize("stack", ["homelab", "rk1", "everything"])
def test_render_is_byte_identical_across_processes_and_hash_seeds(stack: str, tmp_path: Path) -> None:
    """Two fresh interpreters with different string hashing (set and dict orders) must write the same bytes."""
    project = tmp_path / "project"
    project.mkdir()
    if stack == "everything":
        write_stack(project, edit(homelab_doc(), EVERYTHING), stack=stack)
    else:
        (project / f"Pulumi.{stack}.yaml").write_bytes((ROOT / f"Pulumi.{stack}.yaml").read_bytes())
    first = _render(project, stack, tmp_path / "seed-1", "1")
    second = _render(project, stack, tmp_path / "seed-2", "2")
    assert sorted(first) == sorted(second)
    assert [f for f in first if first[f] != second[f]] == []
    assert len(first) >= 8


def test_volsyncs_release_installs_after_the_prometheus_operators_crds(homelab: Simulation) -> None:
    """VolSync's chart renders its ServiceMonitor only when Helm sees monitoring.coreos.com/v1 (servicemonitor-volsync.yaml:1),
    and a Release is not rendered again until its values change: its Release must follow the CRDs. It does, through Arda's
    gate (which follows Cilium's release, which follows the CRDs); this holds that order."""
    regs = homelab.named()
    by_urn = {r.urn: r for r in homelab.registrations}
    seen: set[str] = set()
    todo = list(regs["data-backup-volsync"].dependencies)
    while todo:
        urn = todo.pop()
        if urn not in seen and urn in by_urn:
            seen.add(urn)
            todo += by_urn[urn].dependencies
    crds = [r.urn for r in homelab.registrations if r.name.startswith("arda-monitoring-crds-customresourcedefinition-")]
    assert len(crds) == 10 and set(crds) <= seen


def test_volsyncs_metrics_are_behind_their_policy_before_its_chart_runs_a_pod(homelab: Simulation) -> None:
    """VolSync's metrics ask no token (plans.backup.helm_values): its Release waits for the policy admitting Prometheus
    alone to them (plans.backup.network_policy), so the controller never serves them to every pod."""
    regs = homelab.named()
    policy = regs["data-backup-networkpolicy-volsync"]
    assert policy.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy"
    assert policy.inputs["metadata"] == {"name": "volsync", "namespace": "volsync-system"}
    assert policy.urn in regs["data-backup-volsync"].dependencies
    assert regs["data-backup-namespace-volsync-system"].urn in policy.dependencies
