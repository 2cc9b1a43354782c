"""The Talos acceptance check (tools/talos_check.py, tools/talos-check): Talos's own code says yes or no.

Every machine the program asks the provider for (its getConfiguration invocations under the mock
runtime) is generated with machinery v1.13.0 as the provider does, then validated there and, for a
Talos 1.14 stack, by machinery v1.14.1 as the node receives it, strict: a warning fails like an error. The broken
cases show each way Talos refuses a config, with Talos's own words.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from plans import backup as backup_plan
from plans import coredns
from plans import talos as talos_plan
from stacks import StackConfigError, load_stack_file, parse_stack, read_stack_file
from stacks.rules import TALOS_KINDS, TALOS_KINDS_SINCE_1_13, V1ALPHA1_CONFLICTS
from tests.edit import HOMELAB, RK1, edit, homelab_doc, write_stack
from tests.sims import simulated
from tests.strategies import raw_stacks
from tools import gotools
from tools.talos_check import ACCEPTED_ON_NODE, NODE_VERSION, PROVIDER_VERSION, Machine, Verdict, _problems, check, generated_by_newest, machines

HOMELAB_NODES = ["alqualonde", "gandalf", "saruman", "taniquetil", "tirion"]
BACKUP_ACCESS = {"kubernetesTalosAPIAccess": {"enabled": True, "allowedRoles": ["os:etcd:backup"], "allowedKubernetesNamespaces": ["etcd-backup"]}}
UNATTENDED = "apiVersion: v1alpha1\nkind: UnattendedInstallConfig\ninstaller:\n  image: factory.talos.dev/metal-installer/x:v1.14.1\n"
CEPH = {"apiVersion": "v1alpha1", "kind": "RawVolumeConfig", "name": "ceph", "provisioning": {"diskSelector": {"match": "disk.size > 10u"}}}


def _machines(path: Path, prefix: str) -> list[Machine]:
    return machines(simulated(path).invocations, prefix=f"{prefix}/")


def _variant(tmp: Path, name: str, set_: dict[str, Any]) -> Path:
    folder = tmp / name
    folder.mkdir()
    return write_stack(folder, edit(homelab_doc(), set_), stack="homelab")


def _docs(config: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(config) if d]


@pytest.fixture(scope="module")
def accepted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Verdict]:
    """One batch: both stacks, homelab with a generic worker, and homelab with valid user patches,
    a disk selector and a machine on a routed VLAN."""
    tmp = tmp_path_factory.mktemp("stacks")
    generic = _variant(
        tmp,
        "generic",
        {
            "iluvatar:ainur.netboot": {
                "mode": "dhcp",
                # As the homelab says: no lease of the router's is held (stacks.netboot_mode asks it of a first dhcp up).
                "routerPool": "none",
                "unknownMacs": "generic-worker",
                "genericWorker": {"board": "generic-x86", "installDisk": "/dev/sda"},
            }
        },
    )
    patched = _variant(
        tmp,
        "patched",
        {
            "iluvatar:arda.patches": [
                {"machine": {"sysctls": {"vm.nr_hugepages": "1024"}, "kubelet": {"extraArgs": {"max-pods": "150"}}}},
                {"apiVersion": "v1alpha1", "kind": "TimeSyncConfig", "ntp": {"servers": ["time.cloudflare.com"]}},
            ],
            "iluvatar:nodes[3].talosPatches": [
                {**CEPH, "provisioning": {"diskSelector": {"match": 'disk.dev_path == "/dev/sda"'}, "maxSize": "400GiB"}}
            ],
            "iluvatar:nodes[6].installDisk": {"model": "Samsung SSD 870*", "size": ">= 100GB", "type": "ssd"},
            "iluvatar:nodes[7].vlan": "iot",
            "iluvatar:nodes[7].ip": "192.168.20.32",
        },
    )
    batch = _machines(HOMELAB, "homelab") + _machines(RK1, "rk1") + _machines(generic, "generic") + _machines(patched, "patched")
    return {v.name: v for v in check(batch)}


def test_every_machine_of_both_stacks_is_accepted_by_both_talos_versions(accepted: dict[str, Verdict]) -> None:
    assert sorted(accepted) == sorted(
        [f"homelab/{n}" for n in HOMELAB_NODES]
        + [f"rk1/talos-{i}" for i in range(1, 5)]
        + [f"generic/{n}" for n in [*HOMELAB_NODES, "generic-worker"]]
        + [f"patched/{n}" for n in HOMELAB_NODES]
    )
    assert [p for v in accepted.values() for p in v.problems()] == []


def test_the_check_ran_on_the_config_the_provider_would_generate(accepted: dict[str, Verdict]) -> None:
    """The config the check validated carries our inputs: type, endpoint, hostname, link, VIP."""
    docs = _docs(accepted["homelab/tirion"].config)
    config = docs[0]
    assert config["machine"]["type"] == "controlplane"
    assert config["cluster"]["controlPlane"]["endpoint"] == "https://192.168.0.20:6443"
    assert config["cluster"]["clusterName"] == "arda"
    assert config["machine"]["kubelet"]["image"] == "ghcr.io/siderolabs/kubelet:v1.35.1"
    assert config["machine"]["install"]["disk"] == "/dev/sda"
    assert config["machine"]["install"]["image"].startswith("factory.talos.dev/metal-installer/")
    kinds = {d["kind"]: d for d in docs[1:]}
    assert sorted(kinds) == [
        "HostnameConfig",
        "KmsgLogConfig",
        "Layer2VIPConfig",
        "LinkAliasConfig",
        "LinkConfig",
        "ResolverConfig",
        "StaticHostConfig",
        "TrustedRootsConfig",  # the KMS's CA (plans.volume_encryption): the homelab encrypts its volumes
        "UserVolumeConfig",
        "VolumeConfig",
    ]
    # Sign-in (plans.identity): the API server reaches Dex by its name at the Ainur's front door, and reads the
    # authentication config Talos writes, with the control planes' metrics open to Prometheus.
    assert kinds["StaticHostConfig"] == {
        "apiVersion": "v1alpha1",
        "kind": "StaticHostConfig",
        "name": "192.168.0.16",
        "hostnames": ["dex.iluvatar.home.arpa"],
    }
    assert config["cluster"]["apiServer"]["extraArgs"]["authentication-config"] == "/etc/iluvatar/authentication-config.yaml"
    assert [f["path"] for f in config["machine"]["files"]] == ["/var/etc/iluvatar/authentication-config.yaml"]
    assert config["cluster"]["etcd"]["extraArgs"]["listen-metrics-urls"] == "http://0.0.0.0:2381"
    # Local volumes (plans.local_volumes), as both Talos versions accepted them: on the system disk only.
    assert kinds["UserVolumeConfig"]["provisioning"] == {"diskSelector": {"match": "system_disk"}, "minSize": "1GiB", "maxSize": "25%", "grow": False}
    assert kinds["VolumeConfig"] == {
        "apiVersion": "v1alpha1",
        "kind": "VolumeConfig",
        "name": "EPHEMERAL",
        "provisioning": {"maxSize": "75%"},
        "encryption": KMS_KEY,
    }
    assert config["machine"]["kubelet"]["extraMounts"] == [
        {"destination": "/var/mnt", "type": "bind", "source": "/var/mnt", "options": ["bind", "rshared", "rw"]}
    ]
    assert kinds["HostnameConfig"] == {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "off", "hostname": "tirion"}
    assert _docs(accepted["homelab/gandalf"].config)[0]["machine"]["type"] == "worker"
    assert _docs(accepted["rk1/talos-4"].config)[0]["machine"]["install"]["disk"] == "/dev/mmcblk0"


def test_talos_leaves_coredns_to_iluvatar_at_the_address_it_gives_the_kubelets(accepted: dict[str, Verdict]) -> None:
    """In the configs Talos generated: its CoreDNS off on every control plane (the only machines that render
    bootstrap manifests), and Iluvatar's Service at the tenth address of the service network Talos wrote, for its domain."""
    for path, prefix in ((HOMELAB, "homelab"), (RK1, "rk1")):
        stack = load_stack_file(path)
        service = next(m for m in coredns.manifests(stack) if m["kind"] == "Service")
        corefile = next(m for m in coredns.manifests(stack) if m["kind"] == "ConfigMap")["data"]["Corefile"]
        for node in stack.arda_nodes:
            cluster = _docs(accepted[f"{prefix}/{node.name}"].config)[0]["cluster"]
            if node.role == "valinor":
                assert cluster["coreDNS"] == {"disabled": True}, node.name
            else:
                assert "coreDNS" not in cluster, node.name
            network = cluster["network"]
            assert service["spec"]["clusterIP"] == str(ipaddress.ip_network(network["serviceSubnets"][0]).network_address + 10), node.name
            assert f"    kubernetes {network['dnsDomain']} in-addr.arpa ip6.arpa {{" in corefile


def test_the_control_planes_allow_talos_backup_its_role_and_workers_do_not(accepted: dict[str, Verdict]) -> None:
    """Arda's etcd backups (plans.backup) on the homelab: the features both Talos versions accepted above."""
    stack = load_stack_file(HOMELAB)
    assert backup_plan.talos_features(stack, True) == BACKUP_ACCESS
    for name in HOMELAB_NODES:
        config = _docs(accepted[f"homelab/{name}"].config)[0]
        features = config["machine"].get("features", {})
        if config["machine"]["type"] == "controlplane":
            assert features["kubernetesTalosAPIAccess"] == BACKUP_ACCESS["kubernetesTalosAPIAccess"], name
        else:
            assert "kubernetesTalosAPIAccess" not in features, name


def test_every_machine_sends_its_services_and_kernel_off_the_machine_named(accepted: dict[str, Verdict]) -> None:
    """The log delivery (plans.logs) in the configs both Talos versions accepted above: the services' logs as JSON lines
    with the machine's name in `extraTags`, and the kernel's messages, each over TCP to the Ainur's service address
    (the Pis' collectors, off the machine and off Arda); the generic worker's likewise, without a name to tag."""
    for name in [*(f"homelab/{n}" for n in HOMELAB_NODES), "generic/generic-worker"]:
        docs = _docs(accepted[name].config)
        destination: dict[str, Any] = {"endpoint": "tcp://192.168.0.14:6050/", "format": "json_lines"}
        if name.startswith("homelab/"):
            destination["extraTags"] = {"machine": name.removeprefix("homelab/")}
        assert docs[0]["machine"]["logging"] == {"destinations": [destination]}, name
        kmsg = [d for d in docs if d.get("kind") == "KmsgLogConfig"]
        assert kmsg == [{"apiVersion": "v1alpha1", "kind": "KmsgLogConfig", "name": "iluvatar-logs", "url": "tcp://192.168.0.14:6051/"}], name


def test_talos_refuses_a_kernel_destination_with_a_path_and_a_format_it_has_not(refused: dict[str, Verdict]) -> None:
    path = refused["kmsg-with-a-path"]
    assert not path.ok and path.provider and all(p.endswith("* KmsgLogConfig/elsewhere: url path must be empty") for p in path.provider), (
        path.provider
    )
    form = refused["logging-format-unknown"]
    assert not form.ok and form.provider and all("syslog" in p for p in form.provider), form.provider


def test_talos_refuses_backup_access_on_a_worker_or_with_a_role_it_does_not_know(refused: dict[str, Verdict]) -> None:
    worker = "feature Kubernetes Talos API Access can only be enabled on control plane machines"
    role = 'invalid role "os:etcd:bakup" in allowed roles for Kubernetes Talos API Access'
    for name, words in (("backup-access-on-a-worker", worker), ("backup-access-misspelt-role", role)):
        v = refused[name]
        assert not v.ok
        assert v.provider and all(words in p for p in v.provider), (name, v.provider)


def test_the_generic_worker_keeps_talos_stable_hostname(accepted: dict[str, Verdict]) -> None:
    docs = _docs(accepted["generic/generic-worker"].config)
    assert docs[0]["machine"]["type"] == "worker"
    assert [d for d in docs if d.get("kind") == "HostnameConfig"] == [{"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "stable"}]


def test_user_patches_selector_and_vlan_machine_reach_the_config(accepted: dict[str, Verdict]) -> None:
    taniquetil = _docs(accepted["patched/taniquetil"].config)
    assert taniquetil[0]["machine"]["sysctls"] == {"vm.nr_hugepages": "1024"}
    assert [d["name"] for d in taniquetil if d.get("kind") == "RawVolumeConfig"] == ["ceph"]
    assert [d["ntp"] for d in taniquetil if d.get("kind") == "TimeSyncConfig"] == [{"servers": ["time.cloudflare.com"]}]
    # The selector is what installs (Talos's installer prefers it to the generated default disk).
    install = _docs(accepted["patched/gandalf"].config)[0]["machine"]["install"]
    assert install["diskSelector"] == {"size": ">= 100GB", "model": "Samsung SSD 870*", "type": "ssd"}
    saruman = {d.get("kind"): d for d in _docs(accepted["patched/saruman"].config)}
    assert saruman["LinkConfig"]["routes"] == [{"gateway": "192.168.20.1"}]
    assert saruman["LinkConfig"]["addresses"] == [{"address": "192.168.20.32/24"}]


def test_a_sample_of_random_stacks_is_accepted(tmp_path: Path) -> None:
    """Random stacks (VLAN workers, disk selectors, generic workers included), checked in one batch."""
    raws: list[dict[str, Any]] = []

    @settings(max_examples=6, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(raw_stacks(vlans=True, selectors=True))
    def collect(raw: dict[str, Any]) -> None:
        raws.append(raw)

    collect()
    batch: list[Machine] = []
    for i, raw in enumerate(raws):
        folder = tmp_path / f"s{i}"
        folder.mkdir()
        # JSON (valid YAML) quotes every string, so an all-digit MAC spelling stays a string.
        path = folder / f"Pulumi.random{i}.yaml"
        path.write_text(json.dumps({"config": {"pulumi:disable-default-providers": ["*"], **raw}}))
        batch += _machines(path, f"random{i}")
    assert len(batch) >= len(raws)
    verdicts = check(batch)
    failed = {v.name: v.problems() for v in verdicts if not v.ok}
    assert failed == {}, json.dumps({"failed": failed, "stacks": raws}, default=str, indent=1)


# --- The check refuses what Talos refuses ---------------------------------------------------

# v1alpha1 settings Talos itself refuses beside the documents Iluvatar generates: a value, and
# Talos's words. Pre-flight (stacks.rules.V1ALPHA1_CONFLICTS) must refuse each one too.
TALOS_CONFLICTS: dict[tuple[str, ...], tuple[Any, str]] = {
    ("machine", "network", "hostname"): ("other", "static hostname is already set in v1alpha1 config"),
    ("machine", "features", "stableHostname"): (True, "stable hostname is already set in v1alpha1 config"),
    ("machine", "network", "nameservers"): (["1.1.1.1"], ".machine.network.nameservers is already set in v1alpha1 config"),
    ("machine", "network", "searchDomains"): (["lab.example"], ".machine.network.searchDomains is already set in v1alpha1 config"),
    ("machine", "network", "disableSearchDomain"): (True, ".machine.network.disableSearchDomain is already set in v1alpha1 config"),
}


def _nested(keys: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc: Any = value
    for key in reversed(keys):
        doc = {key: doc}
    return dict(doc)


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Verdict]:
    """Broken machines in one batch. Those the pre-flight rules cannot see go through the stack and
    the program; those the rules refuse are added to a real invocation's arguments directly."""
    tmp = tmp_path_factory.mktemp("broken")
    unknown_key = _variant(tmp, "unknown-key", {"iluvatar:nodes[6].talosPatches": [{"machine": {"kubelet": {"extraArgz": {"v": "2"}}}}]})
    homelab = {m.name: m for m in _machines(HOMELAB, "homelab")}
    worker, control_plane = homelab["homelab/gandalf"], homelab["homelab/tirion"]

    def extra(name: str, base: Machine, *patches: str) -> Machine:
        return Machine(name, {**base.arguments, "configPatches": [*base.arguments["configPatches"], *patches]})

    ceph = yaml.safe_dump(CEPH)
    own = control_plane.arguments["configPatches"][0]
    batch = [
        *[Machine("unknown-key", m.arguments) for m in _machines(unknown_key, "x") if m.name == "x/gandalf"],
        # Selectors stacks.cel refuses as Talos does, on any machine: a syntax error, and an int beside a uint unit.
        extra("bad-cel", worker, yaml.safe_dump({**CEPH, "provisioning": {"diskSelector": {"match": "disk.size >>> 10"}}})),
        extra("int-beside-uint-cel", worker, yaml.safe_dump({**CEPH, "provisioning": {"diskSelector": {"match": "disk.size > 100 * GB"}}})),
        # The stack model refuses this type; Talos must too, should one get past it.
        extra("bad-selector", worker, "machine:\n  install:\n    diskSelector:\n      type: floppy\n"),
        extra("duplicate-document", worker, f"{ceph}---\n{ceph}"),
        extra("v1.14-only-kind", worker, UNATTENDED),
        extra("deprecated-field", worker, "machine:\n  install:\n    extensions:\n      - image: ghcr.io/siderolabs/iscsi-tools:v0.2.0\n"),
        # Iluvatar's patch as it was before `auto: off`: what every node refused.
        Machine("hostname-beside-auto", {**control_plane.arguments, "configPatches": [own.replace("auto: 'off'\n", "").replace("auto: off\n", "")]}),
        *(extra(f"conflict-{'.'.join(keys)}", worker, yaml.safe_dump(_nested(keys, value))) for keys, (value, _) in TALOS_CONFLICTS.items()),
        # talos-backup's API access (plans.backup): Talos allows it on control planes only, and only a role it knows.
        extra("backup-access-on-a-worker", worker, yaml.safe_dump({"machine": {"features": BACKUP_ACCESS}})),
        extra(
            "backup-access-misspelt-role",
            control_plane,
            "machine:\n  features:\n    kubernetesTalosAPIAccess:\n      allowedRoles: [os:etcd:bakup]\n",
        ),
        Machine("kubernetes-unparsable", {**worker.arguments, "kubernetesVersion": "one.thirty-five"}),
        Machine("endpoint-without-scheme", {**worker.arguments, "clusterEndpoint": "192.168.0.20"}),
        # The log delivery (plans.logs) as Talos would refuse it: a kernel destination with a path, a format it has not.
        extra("kmsg-with-a-path", worker, "apiVersion: v1alpha1\nkind: KmsgLogConfig\nname: elsewhere\nurl: tcp://127.0.0.1:6051/kernel\n"),
        extra(
            "logging-format-unknown",
            worker,
            "machine:\n  logging:\n    destinations:\n      - endpoint: udp://127.0.0.1:6050/\n        format: syslog\n",
        ),
    ]
    assert len(batch) == 14 + len(TALOS_CONFLICTS)
    return {v.name: v for v in check(batch)}


def test_an_unknown_key_is_refused(refused: dict[str, Verdict]) -> None:
    v = refused["unknown-key"]
    assert v.node == ()  # never generated, so never sent
    assert len(v.provider) == 1
    assert v.provider[0].startswith(
        "plan: config_patches are invalid: error decoding document /v1alpha1/ (line 1): unknown keys found during decoding:"
    )
    assert "extraArgz" in v.provider[0]


def test_an_invalid_cel_selector_is_refused_by_both_versions(refused: dict[str, Verdict]) -> None:
    v = refused["bad-cel"]
    for problems in (v.provider, v.node):
        assert len(problems) == 2  # as the node applies it, and as talosctl validate --strict
        for p in problems:
            assert "RawVolumeConfig/ceph: disk selector is invalid: ERROR: <input>:1:12: Syntax error: mismatched input '>'" in p


def test_an_int_beside_a_uint_unit_is_refused_by_both_versions_as_stacks_cel_says(refused: dict[str, Verdict]) -> None:
    """stacks.cel's refusal quotes cel-go's words; Talos's checker says them of the same selector."""
    from stacks import cel

    with pytest.raises(cel.RefusedError) as err:
        cel.parse("disk.size > 100 * GB")
    said = str(err.value).split(": in ", 1)[0]
    assert said == "found no matching overload for '_*_' applied to '(int, uint)'"
    v = refused["int-beside-uint-cel"]
    for problems in (v.provider, v.node):
        assert len(problems) == 2
        for p in problems:
            assert f"RawVolumeConfig/ceph: disk selector is invalid: ERROR: <input>:1:17: {said}" in p


def test_an_invalid_install_disk_selector_is_refused(refused: dict[str, Verdict]) -> None:
    v = refused["bad-selector"]
    assert len(v.provider) == 2 and len(v.node) == 2
    for p in (*v.provider, *v.node):
        assert p.endswith('* v1alpha1.Config: 1 error occurred:\n\t* install disk selector is invalid: unsupported disk type "floppy"')


def test_a_duplicate_document_is_refused(refused: dict[str, Verdict]) -> None:
    assert refused["duplicate-document"].provider == (
        "plan: config_patches are invalid: duplicate document v1alpha1/RawVolumeConfig/ceph is not allowed (line 8)",
    )


def test_a_v114_only_kind_is_refused_by_the_provider(refused: dict[str, Verdict]) -> None:
    """UnattendedInstallConfig, where machinery 1.14 puts the install settings: the provider's machinery (v1.13.0)
    knows no such document, so a patch with it is refused before any config exists."""
    v = refused["v1.14-only-kind"]
    assert v.node == ()
    assert len(v.provider) == 1
    assert v.provider[0].startswith("plan: config_patches are invalid:")
    assert v.provider[0].endswith('"UnattendedInstallConfig" "v1alpha1": not registered')


@pytest.mark.parametrize("keys", list(TALOS_CONFLICTS), ids=[".".join(k) for k in TALOS_CONFLICTS])
def test_v1alpha1_settings_talos_refuses_are_refused_before_anything_exists(refused: dict[str, Verdict], keys: tuple[str, ...]) -> None:
    value, words = TALOS_CONFLICTS[keys]
    v = refused[f"conflict-{'.'.join(keys)}"]
    assert len(v.provider) == 2 and len(v.node) == 2
    for p in (*v.provider, *v.node):
        assert p.endswith(f"* {words}")
    raw = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:arda"] = {**raw["iluvatar:arda"], "patches": [_nested(keys, value)]}
    with pytest.raises(StackConfigError) as err:
        parse_stack(raw)
    assert [p.path for p in err.value.problems] == ["iluvatar:arda.patches[0]"]
    assert str(err.value.problems[0]).startswith(f"iluvatar:arda.patches[0]: sets {'.'.join(keys)}; Iluvatar sets the ")
    assert keys in V1ALPHA1_CONFLICTS


def test_a_warning_fails_like_an_error(refused: dict[str, Verdict]) -> None:
    v = refused["deprecated-field"]
    # Each machinery in its own words: v1.13.0 (the provider's, a 1.13 node's) and v1.14.1 (a 1.14 node's).
    for problems, url in (
        (v.provider, "https://docs.siderolabs.com/talos/latest/platform-specific-installations/boot-assets"),
        (v.node, "https://docs.siderolabs.com/talos/latest/platform-specific-installations/boot-assets"),
    ):
        deprecated = f".machine.install.extensions is deprecated, please see {url}"
        assert f"warning: validate (node apply, metal): {deprecated}" in problems
        assert any(p.startswith("validate (talosctl validate --mode metal --strict)") and f"warning: {deprecated}" in p for p in problems)
    assert not v.ok


def test_the_one_warning_accepted_on_a_v114_node_is_sign_ins_file_in_its_exact_words(accepted: dict[str, Verdict]) -> None:
    """machine.files (the API server's sign-in config, plans.apiserver) is deprecated on Talos 1.14 for a document the
    provider cannot generate: tools.talos_check accepts that warning on a 1.14 node alone, word for word."""
    stage = "validate (node apply, metal): "
    raw = {"errors": [], "warnings": [stage + ACCEPTED_ON_NODE[0], stage + ACCEPTED_ON_NODE[0] + " (and more)"]}
    assert _problems(raw, ACCEPTED_ON_NODE) == (f"warning: {stage}{ACCEPTED_ON_NODE[0]} (and more)",)
    assert _problems(raw) == tuple(f"warning: {w}" for w in raw["warnings"])
    control_plane = _docs(accepted["homelab/tirion"].config)[0]
    assert [f["path"] for f in control_plane["machine"]["files"]] == ["/var/etc/iluvatar/authentication-config.yaml"]


def test_the_hostname_bug_this_check_was_built_for(refused: dict[str, Verdict]) -> None:
    v = refused["hostname-beside-auto"]
    expected = "1 error occurred:\n\t* HostnameConfig: 'auto' and 'hostname' cannot be set at the same time"
    assert len(v.provider) == 2 and len(v.node) == 2
    for p in (*v.provider, *v.node):
        assert p.endswith(expected)
    assert v.problems()[0] == f"hostname-beside-auto: Talos {PROVIDER_VERSION} (provider): validate (node apply, metal): {expected}"


def test_the_providers_plan_checks_run(refused: dict[str, Verdict]) -> None:
    assert refused["kubernetes-unparsable"].provider[0].startswith("plan: kubernetes_version is invalid:")
    assert refused["endpoint-without-scheme"].provider == (
        "plan: cluster_endpoint is invalid: no scheme and port specified for the cluster endpoint URL",
    )


def test_pre_flight_knows_exactly_the_kinds_the_provider_and_a_v114_node_both_know() -> None:
    """stacks.rules.TALOS_KINDS is the kinds both machineries list (their config.schema.json)."""
    gotools.build("talos-check-node")  # fetches machinery v1.14.1 into the module cache
    gotools.build("talos-check")
    mod = gotools.cache_dir() / "go" / "mod" / "github.com" / "siderolabs" / "talos" / "pkg"

    def kinds(version: str) -> set[str]:
        schema = json.loads((mod / f"machinery@{version}" / "config" / "schemas" / "config.schema.json").read_text())
        found = set()
        for ref in schema["oneOf"]:
            kind = schema["$defs"][ref["$ref"].rsplit("/", 1)[-1]].get("properties", {}).get("kind", {})
            found.update(kind.get("enum", []))
        return found

    assert kinds(NODE_VERSION) & kinds(PROVIDER_VERSION) == TALOS_KINDS
    assert {"UnattendedInstallConfig", "KubeAPIServerConfig"} <= kinds(NODE_VERSION) - TALOS_KINDS
    # What a Talos 1.12 node lacks of them (stacks.rules refuses these on a stack on 1.12, and on a 1.12 to 1.13 move).
    from tools import upstream

    v1_12 = upstream.module_dir(upstream.TALOS_MACHINERY, "v1.12.4") / "config" / "schemas" / "config.schema.json"
    schema = json.loads(v1_12.read_text())
    old = {
        k for ref in schema["oneOf"] for k in schema["$defs"][ref["$ref"].rsplit("/", 1)[-1]].get("properties", {}).get("kind", {}).get("enum", [])
    }
    assert TALOS_KINDS - old == TALOS_KINDS_SINCE_1_13


def test_the_install_settings_go_where_each_generator_expects_them(accepted: dict[str, Verdict]) -> None:
    """Talos 1.14's own generator (machinery v1.14.1, what talosctl gen config and a provider on it run) puts the install
    settings in an UnattendedInstallConfig for a 1.14 contract, beside which Iluvatar's machine.install patch is refused
    (UnattendedInstallConfigV1Alpha1.V1Alpha1ConflictValidate): the failure kube-ovn met. The provider the program runs
    (machinery v1.13.0) generates machine.install for the same contract, which the 1.14 node accepts: so plans.talos
    keeps machine.install while PROVIDER_MACHINERY is 1.13."""
    assert talos_plan.PROVIDER_MACHINERY[:2] == (1, 13)
    ours = accepted["homelab/gandalf"]
    generated = _docs(ours.config)
    assert generated[0]["machine"]["install"]["image"].startswith("factory.talos.dev/metal-installer/")
    assert not [d for d in generated if d.get("kind") == "UnattendedInstallConfig"]
    homelab = {m.name: m for m in _machines(HOMELAB, "homelab")}
    [newest] = generated_by_newest([homelab["homelab/gandalf"]])
    assert len(newest.provider) == 2  # as the node applies it, and as talosctl validate --strict
    for problem in newest.provider:
        assert "* UnattendedInstallConfig config is incompatible with v1alpha1 config (.machine.install)" in problem
        # And every other v1alpha1 section 1.14 moved to its own document: a provider on machinery 1.14 means them all.
        assert "* kubelet config is already set in v1alpha1 config (.machine.kubelet)" in problem


KMS_KEY = {"provider": "luks2", "keys": [{"slot": 0, "kms": {"endpoint": "https://192.168.0.14:4050"}}]}


def test_every_homelab_volume_is_encrypted_by_the_ainurs_kms_in_the_config_talos_accepted(accepted: dict[str, Verdict]) -> None:
    """The shipped homelab (iluvatar:arda.encryption on, generic-x86: kms): in the config both machineries accepted
    above, EPHEMERAL and the local volume are LUKS2 sealed by the Ainur's KMS at its service address, the local CA is a
    trusted root for its certificate, and STATE has no encryption (plans.volume_encryption: unlocked before the config)."""
    for name in HOMELAB_NODES:
        docs = {(d.get("kind"), d.get("name")): d for d in _docs(accepted[f"homelab/{name}"].config)[1:]}
        assert docs[("VolumeConfig", "EPHEMERAL")] == {
            "apiVersion": "v1alpha1",
            "kind": "VolumeConfig",
            "name": "EPHEMERAL",
            "provisioning": {"maxSize": "75%"},
            "encryption": KMS_KEY,
        }, name
        assert docs[("UserVolumeConfig", "local-path-provisioner")]["encryption"] == KMS_KEY, name
        # The local CA as the simulation's pulumi-tls makes it (tests/sims), not the render's placeholder.
        assert docs[("TrustedRootsConfig", "iluvatar-kms")]["certificates"] == (
            "-----BEGIN CERTIFICATE-----\n(the root CA certificate pulumi-tls generates at pulumi up)\n-----END CERTIFICATE-----\n"
        ), name
        assert ("VolumeConfig", "STATE") not in docs, name
    # rk1 has no Ainur, so no KMS: its stack leaves encryption off (stacks.encryption refuses kms without the Ainur).
    assert not any(d.get("encryption") for d in _docs(accepted["rk1/talos-1"].config))


def test_talos_accepts_tpm_sealed_state_and_refuses_an_encryption_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A board with a TPM (none of the known ones; stacks.boards.Board.tpm set here) seals STATE, EPHEMERAL and the local
    volume to it, Secure Boot checked at enroll: both machineries accept that config. An encryption without a key is
    refused by Talos's own EncryptionSpec.Validate (block/encryption.go at v1.13.9), so the check reads the section."""
    import dataclasses

    from stacks import boards

    stack = load_stack_file(HOMELAB)
    node = next(n for n in stack.arda_nodes if n.name == "gandalf")
    monkeypatch.setitem(boards.BOARDS, "generic-x86", dataclasses.replace(boards.BOARDS["generic-x86"], tpm=True))
    tpm_docs = talos_plan.node_documents(stack, node, "factory.talos.dev/metal-installer-secureboot/x:v1.14.1")
    monkeypatch.undo()
    tpm = {"provider": "luks2", "keys": [{"slot": 0, "tpm": {"checkSecurebootStatusOnEnroll": True}}]}
    volumes = {(d["kind"], d["name"]): d["encryption"] for d in tpm_docs if "encryption" in d}
    assert volumes == {("VolumeConfig", "STATE"): tpm, ("UserVolumeConfig", "local-path-provisioner"): tpm, ("VolumeConfig", "EPHEMERAL"): tpm}
    assert not any(d.get("kind") == "TrustedRootsConfig" for d in tpm_docs)
    base = next(m for m in _machines(HOMELAB, "homelab") if m.name == "homelab/gandalf")
    keyless = [{**d, "encryption": {"provider": "luks2", "keys": []}} if d.get("name") == "EPHEMERAL" else d for d in tpm_docs]
    verdicts = {
        v.name: v
        for v in check(
            [
                Machine("tpm", {**base.arguments, "configPatches": [talos_plan.dump(tpm_docs)]}),
                Machine("keyless", {**base.arguments, "configPatches": [talos_plan.dump(keyless)]}),
            ]
        )
    }
    assert verdicts["tpm"].problems() == []
    generated = {(d.get("kind"), d.get("name")): d for d in _docs(verdicts["tpm"].config)[1:]}
    assert generated[("VolumeConfig", "STATE")]["encryption"] == tpm
    assert any("encryption keys are required" in p for p in verdicts["keyless"].provider), verdicts["keyless"].provider


# Volume selectors at each edge of CEL's types and syntax: stacks.cel refuses (RefusedError) exactly those Talos's own
# checker refuses, with machinery v1.13.0 (the provider's) and v1.14.1 (a node's); what it does not read, Talos takes.
SELECTORS = [
    "disk.size > 100 * GB",
    "disk.size > 100u * GB",
    "disk.size > 120u * GB && disk.size < 1u * TB",
    "disk.size > 100",
    "disk.size == 0",
    "disk.size > 0x10",
    "disk.size > 0x10u",
    "disk.size % 2 == 0u",
    "disk.size + 1u > 0u",
    "disk.size > 1.5",
    "disk.size in [1, 2]",
    "disk.size in [1u, 2u]",
    "disk.size > uint(size(disk.symlinks))",
    "int(disk.size) > 100",
    "disk.size",
    "disk.dev_path",
    "disk.size && true",
    "!disk.size",
    "-1u < 0u",
    "-9223372036854775808 < 0",
    "9223372036854775808 > 0",
    "5 - 9223372036854775808 < 0",
    "18446744073709551615u > 0u",
    "18446744073709551616u > 0u",
    "100. > 1.0",
    ".5 < 1.0",
    "1 * 2.0 == 2.0",
    "system_disk ? 1 : 'a'",
    "[1, 1u].exists(x, x == 1u)",
    "[1, 'a'].exists(x, x == 1)",
    "disk.symlinks == [1]",
    "disk.rotational < true",
    "disk.dev_path == 1",
    "disk.dev_path.startsWith(1)",
    "disk.foo == 'x'",
    "disk.dev_path.foo == 'x'",
    "disks.size > 1u",
    "disk.model.lowerAscii() == 'x'",
    "contains(disk.model, 'EVO')",
    "glob('/dev/sd*')",
    "glob('/dev/sd*', disk.dev_path)",
    "size(disk.size) > 0",
    "disk.transport in 'nvme'",
    "disk.size.exists(x, true)",
    "disk.symlinks.exists(l, 1)",
    "size(disk.symlinks) > 0 && disk.symlinks.exists(l, l.contains('x'))",
    "disk.dev_path == '/dev/sda' // the SATA disk\n&& !system_disk",
    "disk.dev_path.matches('^/dev/sd\\\\w$')",
    "disk.dev_path.matches(r'^/dev/sd\\w$')",
    "disk.dev_path == '/dev/sd\\q'",
    "'\\400' == 'x'",
    "'\\057' == '/' && '\\u002f' == '/' && '\\x2f' == '/'",
    "has(disk.size)",
    "string(disk.size) == '1'",
    "disk.symlinks[0] == 'x'",
    "disk.symlinks.map(l, l).size() > 0",
    "disk.size\u00a0> 10u",
    "disk.size >\v10u",
    "disk.size > 0X10u",
    "disk.dev_path == 'a\rb'",
    "disk.size > \u0661u",
    "disk.size > 0100u * GB",
    "(" * 249 + "system_disk" + ")" * 249,
    "(" * 250 + "system_disk" + ")" * 250,
    "disk.size > 100u * GB == system_disk",
    "disk.model == 'x' == true",
    "!" * 500 + "system_disk",
    "system_disk" + " == true" * 250,
    "system_disk" + " == true" * 251,
    "disk.size > 0u" + " + 1u" * 249,
    "disk.size > 0u" + " + 1u" * 250,
    " && ".join(["system_disk"] * 400),
]


@pytest.fixture(scope="module")
def selected() -> dict[str, Verdict]:
    homelab = {m.name: m for m in _machines(HOMELAB, "homelab")}
    worker = homelab["homelab/gandalf"]
    batch = []
    for k, match in enumerate(SELECTORS):
        volume = {
            "apiVersion": "v1alpha1",
            "kind": "UserVolumeConfig",
            "name": "media",
            "provisioning": {"diskSelector": {"match": match}, "minSize": "1GiB"},
        }
        patches = [*worker.arguments["configPatches"], yaml.safe_dump(volume)]
        batch.append(Machine(f"selector-{k}", {**worker.arguments, "configPatches": patches}))
    return {match: v for match, v in zip(SELECTORS, check(batch), strict=True)}


@pytest.mark.parametrize("match", SELECTORS)
def test_stacks_cel_refuses_the_selectors_talos_refuses(match: str, selected: dict[str, Verdict]) -> None:
    from stacks import cel

    v = selected[match]
    assert bool(v.provider) == bool(v.node)
    try:
        cel.parse(match)
        refuses = False
    except cel.RefusedError:
        refuses = True
    except cel.UnreadableError:
        refuses = False
    assert refuses == bool(v.node), v.node
