"""Loading the stack from Pulumi config, injected with set_all_config under the iluvatar: prefix."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pulumi
import pytest

from plans.netboot import dnsmasq_conf
from stacks import load_stack_file
from stacks import outputs as exports
from stacks.day2 import DeployedArda, machines_of, may_be_a_stopped_first_up, missing
from stacks.load import ORDER
from stacks.pulumi_source import PLAIN, READ_STACK_OUTPUTS, UNDECRYPTED, _decode, last_outputs, load, recorded_ainur
from stacks.secrets import Secure
from stacks.storage import Deployed
from tests.edit import HOMELAB, homelab_stack_file
from tests.sims import whole
from tests.stacks.test_day2 import HEADSCALE_ACCESS


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, []


def _config(**extra: str) -> dict[str, str]:
    """The homelab's config as the engine hands it over; its encrypted token arrives decrypted."""
    sf = homelab_stack_file()
    cfg = {k: "homelab-token" if k in sf.secret_keys else json.dumps(v) for k, v in sf.config.items() if k.startswith("iluvatar:")}
    # A value set with `config set --secret --path` arrives as its object, each value decrypted.
    cfg["iluvatar:appSecrets"] = json.dumps({"home-assistant": {"WEATHER_API_KEY": "homelab-token"}})
    cfg.update(extra)
    return cfg


SECRET_KEYS = sorted(homelab_stack_file().secret_keys)


@pytest.fixture(autouse=True)
def mocks() -> None:
    pulumi.runtime.set_mocks(Mocks(), project="iluvatar", stack="test", preview=False)


def test_load_reads_structured_config() -> None:
    pulumi.runtime.set_all_config(_config(), SECRET_KEYS)
    loaded = load()
    assert len(loaded.config.nodes) == 8
    assert loaded.config.arda.cluster_name == "arda"
    assert [a.name for a in loaded.config.apps] == ["home-assistant", "jellyfin", "blog", "grafana", "headlamp", "minecraft", "mosquitto"]
    assert loaded.secrets.cloudflare_api_token is not None
    assert (loaded.secrets.alert_receiver_secret, loaded.secrets.identity_connector_secret) != (None, None)


def test_preview_logs_each_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    # What `iluvatar validate` prints as a warning (stacks.warn), the preview logs as one; the stack loads.
    logged: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: logged.append(message))
    apps = json.loads(_config()["iluvatar:apps"])
    apps[0]["backup"]["schedule"] = "0 2 1-7 * 6"
    pulumi.runtime.set_all_config(_config(**{"iluvatar:apps": json.dumps(apps)}), SECRET_KEYS)
    assert load().config.apps[0].backup is not None
    assert logged == [
        "iluvatar:apps[0].backup.schedule: 0 2 1-7 * 6 runs on days 1-7 of the month and on every Saturday, not only where they "
        "meet: cron runs it on a day either field matches (248 days in 2026 and 2027); for one of them, write * in the other field"
    ]


def test_without_cloudflare_there_is_no_token() -> None:
    cfg = {k: v for k, v in _config(**{"iluvatar:edge": json.dumps({"publicIngress": "none", "publicDns": "none"})}).items() if k not in SECRET_KEYS}
    apps = json.loads(cfg["iluvatar:apps"])
    # Without the data-safety keys' secrets too: no app secret set by hand, no backup target.
    cfg["iluvatar:apps"] = json.dumps(
        [{k: v for k, v in a.items() if k not in ("secrets", "backup")} for a in apps if a.get("audience") != "external"]
    )
    del cfg["iluvatar:backup"]
    # And without sign-in, whose GitHub connector needs its secret.
    del cfg["iluvatar:identity"]
    pulumi.runtime.set_all_config(cfg, [])
    secrets = load().secrets
    assert (secrets.cloudflare_api_token, secrets.identity_connector_secret, secrets.alert_receiver_secret) == (None, None, None)


def test_unknown_key_in_the_namespace_is_reported() -> None:
    pulumi.runtime.set_all_config(_config(**{"iluvatar:nodez": "[]"}), SECRET_KEYS)
    with pytest.raises(pulumi.RunError) as err:
        load()
    assert str(err.value).splitlines()[:2] == [
        "stack test: 1 problem:",
        "  iluvatar:nodez: is not a known key; did you mean nodes? (known: " + ", ".join(ORDER) + ")",
    ]


def test_a_section_left_blank_is_refused_at_preview_as_by_validate() -> None:
    # The engine hands a section written with nothing after its colon to the program as JSON null.
    pulumi.runtime.set_all_config(_config(**{"iluvatar:nodes": "null"}), SECRET_KEYS)
    with pytest.raises(pulumi.RunError) as err:
        load()
    assert str(err.value).splitlines()[:2] == [
        "stack test: 1 problem:",
        "  iluvatar:nodes: null (the section left blank, or written null) is empty, and the section is required; write the machines "
        "indented under it, one `- name: ...` item each with name, role, arch, board, mac, ip, installDisk",
    ]


def test_plain_token_is_rejected_and_not_echoed() -> None:
    cfg = _config(**{"iluvatar:cloudflare": json.dumps({"accountId": "0" * 32}), "iluvatar:cloudflareApiToken": "hunter2-token"})
    pulumi.runtime.set_all_config(cfg, [])
    with pytest.raises(pulumi.RunError) as err:
        load()
    assert "iluvatar:cloudflareApiToken: is in plain text" in str(err.value)
    assert "hunter2-token" not in str(err.value)


def test_secret_token_becomes_a_secret_output() -> None:
    cfg = _config(**{"iluvatar:cloudflare": json.dumps({"accountId": "0" * 32}), "iluvatar:cloudflareApiToken": "hunter2-token"})
    pulumi.runtime.set_all_config(cfg, sorted(SECRET_KEYS))
    ran: list[bool] = []

    @pulumi.runtime.test
    def check() -> pulumi.Output[Any]:
        token = load().secrets.cloudflare_api_token
        assert token is not None

        def inspect(args: list[Any]) -> None:
            value, secret = args
            assert value == "hunter2-token" and secret
            ran.append(True)

        secret: pulumi.Output[bool] = pulumi.Output.from_input(token.is_secret())
        return pulumi.Output.all(token, secret).apply(inspect)

    check()
    assert ran == [True]


def test_secret_keys_are_never_decoded_into_plain_values() -> None:
    assert isinstance(_decode("iluvatar:ainurSshPrivateKey", '{"key": "-----BEGIN OPENSSH PRIVATE KEY-----"}'), Secure)
    assert isinstance(_decode("iluvatar:cloudflareApiToken", "tok"), Secure)
    assert _decode("iluvatar:arda", '{"clusterName": "arda"}') == {"clusterName": "arda"}


def test_ssh_private_key_becomes_a_secret_output() -> None:
    pulumi.runtime.set_all_config(_config(**{"iluvatar:ainurSshPrivateKey": "PRIVATE-KEY-CANARY"}), ["iluvatar:ainurSshPrivateKey", *SECRET_KEYS])
    ran: list[bool] = []

    @pulumi.runtime.test
    def check() -> pulumi.Output[Any]:
        key = load().secrets.ainur_ssh_private_key
        assert key is not None

        def inspect(args: list[Any]) -> None:
            assert args == ["PRIVATE-KEY-CANARY", True]
            ran.append(True)

        secret: pulumi.Output[bool] = pulumi.Output.from_input(key.is_secret())
        return pulumi.Output.all(key, secret).apply(inspect)

    check()
    assert ran == [True]


# --- Each branch of _decode, exactly ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "secret", "expected"),
    [
        # A secret key: present, and never its value; set without --secret it reads as PLAIN, which parse_stack refuses.
        ("iluvatar:cloudflareApiToken", "tok", False, PLAIN),
        ("iluvatar:gitopsToken", '{"a": 1}', False, PLAIN),
        # The apps' secrets: their shape kept (which app, which name), each value replaced.
        ("iluvatar:appSecrets", '{"blog": {"KEY": "v", "OTHER": "w"}}', False, {"blog": {"KEY": PLAIN, "OTHER": PLAIN}}),
        ("iluvatar:appSecrets", {"blog": {"KEY": "v"}}, False, {"blog": {"KEY": PLAIN}}),
        ("iluvatar:appSecrets", '{"blog": ["KEY"]}', False, {"blog": ["KEY"]}),  # not a mapping of names: left for parse_stack
        ("iluvatar:appSecrets", "not json", False, PLAIN),
        ("iluvatar:appSecrets", "[1, 2]", False, PLAIN),
        # Plain config: JSON as the engine hands it over, or the text itself.
        ("iluvatar:arda", '{"clusterName": "arda"}', False, {"clusterName": "arda"}),
        ("iluvatar:arda", "arda", False, "arda"),
        ("iluvatar:arda", 5, False, 5),
    ],
)
def test_decode_reads_each_kind_of_key_as_parse_stack_needs_it(key: str, value: Any, secret: bool, expected: Any) -> None:
    assert _decode(key, value, secret) == expected


def test_decode_makes_each_secret_value_a_secure_placeholder() -> None:
    assert isinstance(_decode("iluvatar:appSecrets", "not json", True), Secure)
    assert isinstance(_decode("iluvatar:appSecrets", "[1]", True), Secure)
    decoded = _decode("iluvatar:appSecrets", '{"blog": {"KEY": "v"}}', True)
    assert list(decoded) == ["blog"] and list(decoded["blog"]) == ["KEY"] and isinstance(decoded["blog"]["KEY"], Secure)
    assert _decode("iluvatar:bmcPasswords", '{"192.168.0.9": "pw"}', False) == {"192.168.0.9": PLAIN}


# --- The last deployment's outputs, as the engine's builtin provider answers -----------------------------------


class OutputsMocks(Mocks):
    """The engine answering `pulumi:pulumi:readStackOutputs` with the given outputs (or failing), each call recorded."""

    def __init__(self, outputs: dict[str, Any] | None, fail: bool = False) -> None:
        self.outputs, self.fail = outputs, fail
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        self.calls.append((args.token, dict(args.args)))
        if self.fail:
            raise RuntimeError("the backend is unreachable")
        return ({} if self.outputs is None else {"outputs": self.outputs}), []


def _answering(outputs: dict[str, Any] | None, fail: bool = False, made_whole: bool = True) -> OutputsMocks:
    mocks = OutputsMocks(whole(outputs) if made_whole and outputs is not None else outputs, fail)
    pulumi.runtime.set_mocks(mocks, project="iluvatar", stack="test", preview=False)
    return mocks


# taniquetil installed with its volumes sealed by the KMS, as the homelab (iluvatar:arda.encryption) installs it.
TANIQUETIL = {
    "role": "valinor",
    "mac": "a8:b8:e0:20:00:01",
    "installer": "factory.talos.dev/metal-installer/376567988ad3:v1.13.0",
    "encryption": "kms",
}
RUNNING = {"talosVersion": "v1.13.0", "kubernetesVersion": "v1.35.1", "nodes": {"taniquetil": TANIQUETIL}}
AINUR_RAN = {"k3sVersion": "v1.35.6+k3s1", "nodes": {"manwe": {"role": "valar"}}}


def test_last_outputs_asks_the_engine_for_this_stack_by_its_full_name() -> None:
    mocks = _answering({"arda": RUNNING}, made_whole=False)
    assert last_outputs() == {"arda": RUNNING}
    assert mocks.calls == [(READ_STACK_OUTPUTS, {"name": "organization/iluvatar/test"})]
    assert READ_STACK_OUTPUTS == "pulumi:pulumi:readStackOutputs"


def test_a_new_stack_has_no_outputs() -> None:
    _answering(None)
    assert last_outputs() == {}


def test_outputs_that_cannot_be_read_stop_the_program_saying_why() -> None:
    _answering(None, fail=True)
    with pytest.raises(pulumi.RunError) as err:
        last_outputs()
    assert str(err.value) == (
        "cannot read the last deployment's outputs of stack organization/iluvatar/test (the backend is unreachable); they are how a "
        "disk or a machine that ran Ceph OSDs is kept from leaving the inventory unretired and a version change is checked against "
        "what runs, so nothing is deployed without them"
    )


def test_load_reads_back_what_the_last_deployment_ran() -> None:
    storage_output: dict[str, Any] = {"cephOsds": {"taniquetil": ["/dev/nvme0n1"]}, "cephRetiring": {}}
    _answering({"storage": storage_output, "arda": RUNNING, "ainur": AINUR_RAN, "dnsmasqConf": "dhcp-host=d8:3a:dd:10:00:03,set:rpiboot\n"})
    pulumi.runtime.set_all_config(_config(), SECRET_KEYS)
    loaded = load()
    # Review 41-10 M1: which Pis the first netboot version netbooted is read from its dnsmasq config.
    assert loaded.dnsmasq_output == "dhcp-host=d8:3a:dd:10:00:03,set:rpiboot\n"
    assert loaded.deployed == Deployed.from_output(storage_output) and loaded.deployed.osds == {"taniquetil": ("/dev/nvme0n1",)}
    # No gitopsRepoUrls: the last deployment ran no GitOps, so an Argo CD chart `charts` lacks is none installed.
    assert loaded.arda == replace(DeployedArda.from_output(RUNNING), gitops=False) and loaded.arda.talos_version == "v1.13.0"
    assert loaded.ainur == machines_of(AINUR_RAN) == {"manwe": {"role": "valar"}}
    assert loaded.ainur_output == AINUR_RAN


def test_outputs_before_arda_recorded_its_name_say_it_by_the_vips_key() -> None:
    """Arda's VIP is keyed by the cluster's name in the `vips` output (plans.network.vip_names): a deployment before the
    `arda` output recorded `clusterName` still tells the day-2 plan the name Arda was made with, and a rename is refused."""
    _answering({"arda": RUNNING, "vips": {"ainur": "192.168.0.10", "arda": "192.168.0.20"}})
    pulumi.runtime.set_all_config(_config(), SECRET_KEYS)
    assert load().arda.output["clusterName"] == "arda"
    _answering({"arda": RUNNING, "vips": {"ainur": "192.168.0.10", "middle": "192.168.0.20"}})
    pulumi.runtime.set_all_config(_config(), SECRET_KEYS)
    with pytest.raises(pulumi.RunError) as err:
        load()
    assert "iluvatar:arda.clusterName: arda, but Arda runs as middle, a name fixed when the cluster is made" in str(err.value)
    assert str(err.value).splitlines()[-1].endswith("leaves the etcd backups under etcd/middle; write back middle")


def test_arda_vip_is_read_back_from_the_vips_output_by_the_cluster_name() -> None:
    """The `arda` output does not record Arda's VIP; the `vips` output keys it by the cluster's name, so a move of the
    VIP on a running Arda is refused."""
    _answering({"arda": RUNNING, "vips": {"ainur": "192.168.0.10", "arda": "192.168.0.20"}})
    pulumi.runtime.set_all_config(_config(), SECRET_KEYS)
    assert load().arda.output["vip"] == "192.168.0.20"
    _answering({"arda": RUNNING, "vips": {"ainur": "192.168.0.10", "arda": "192.168.0.9"}})
    pulumi.runtime.set_all_config(_config(), SECRET_KEYS)
    with pytest.raises(pulumi.RunError) as err:
        load()
    assert str(err.value).splitlines()[-1] == (
        "  iluvatar:arda.vip: 192.168.0.20, but Arda runs behind 192.168.0.9, an address fixed when the cluster is made: it is the "
        "cluster endpoint (https://192.168.0.9:6443) in every machine config, kubeconfig and talosconfig, and the API server's "
        "certificate names it, so a move cuts every machine and client off the running control plane; write back 192.168.0.9"
    )


def test_the_day2_plan_reads_kube_vips_template_from_its_roll_steps_record() -> None:
    """A roll that failed records "" (the step's output caught, stacks.pulumi_source.KUBE_VIP_OUTPUT): the plan reads
    no template then, whatever the program's `kubeVip` said, so the next preview still names the roll; a deployment
    of an older Iluvatar has no record and keeps the program's."""
    ainur = {**AINUR_RAN, "kubeVip": "c8c90d36ab5b8c70"}
    assert recorded_ainur({"ainur": ainur, "kubeVipRolled": ""}) == {**AINUR_RAN, "kubeVip": None}
    assert recorded_ainur({"ainur": ainur, "kubeVipRolled": "0123456789abcdef"}) == {**AINUR_RAN, "kubeVip": "0123456789abcdef"}
    assert recorded_ainur({"ainur": ainur}) == ainur
    assert recorded_ainur({"kubeVipRolled": ""}) is None
    _answering({"arda": RUNNING, "ainur": ainur, "kubeVipRolled": ""})
    pulumi.runtime.set_all_config(_config(), SECRET_KEYS)
    assert load().ainur_output == {**AINUR_RAN, "kubeVip": None}


def test_load_refuses_a_change_against_what_runs() -> None:
    # The Ainur ran a newer k3s than the stack says: day2 refuses it from the output `ainur`, before anything is registered.
    _answering({"ainur": {**AINUR_RAN, "k3sVersion": "v1.35.9+k3s1"}})
    pulumi.runtime.set_all_config(_config(), SECRET_KEYS)
    with pytest.raises(pulumi.RunError) as err:
        load()
    assert str(err.value).splitlines() == [
        "stack test: 1 problem:",
        "  iluvatar:ainur.k3sVersion: v1.35.8+k3s1 is older than v1.35.9+k3s1, which the Ainur run; k3s cannot be downgraded "
        "(docs/day2.md#upgrading-k3s-on-the-ainur)",
    ]


def test_load_reads_the_ainurs_classes_from_the_storage_output() -> None:
    """An `ainur` output from before the claims' class was recorded: the `storage` output's classes (none: the last
    deployment ran without GitOps) say the claims were on local-path, so Longhorn arriving under Headscale's claim, with
    no backup to restore it from, is refused at the key that brought it."""
    cfg = _config(**{"iluvatar:remoteAccess": json.dumps(HEADSCALE_ACCESS)})
    for key in ("iluvatar:backup", "iluvatar:backupS3AccessKeyId", "iluvatar:backupS3SecretAccessKey"):
        del cfg[key]
    apps = json.loads(cfg["iluvatar:apps"])
    for app in apps:
        app.pop("backup", None)
    cfg["iluvatar:apps"] = json.dumps(apps)
    ran = {**AINUR_RAN, "k3sVersion": "v1.35.8+k3s1", "secretsEncryption": True}
    _answering({"ainur": ran, "storage": {"cephOsds": {}, "cephRetiring": {}, "classes": {}}})
    pulumi.runtime.set_all_config(cfg, SECRET_KEYS)
    with pytest.raises(pulumi.RunError) as err:
        load()
    assert (
        str(err.value)
        .splitlines()[1]
        .startswith(
            "  iluvatar:gitops: set (repoUrl https://github.com/example/homelab.git) moves the Ainur's claims from local-path to longhorn-encrypted, "
        )
    )


def test_load_reads_an_older_deployments_service_address_from_its_dnsmasq_config() -> None:
    """Review 41-4 N5: an `ainur` output from before `serviceIp` was exported, with ilmare netbooted; the service address
    moved in the same `up` as the upgrade. The program reads the old address from the `dnsmasqConf` output and refuses."""
    nodes = json.loads(_config()["iluvatar:nodes"])
    nodes[2] |= {"boot": "netboot", "serial": "1a2b3c4d"}
    ainur = json.loads(_config()["iluvatar:ainur"]) | {"serviceIp": "192.168.0.17"}
    ran = {**AINUR_RAN, "k3sVersion": "v1.35.8+k3s1", "nodes": {"manwe": {"role": "valar"}, "ilmare": {"role": "maiar", "image": "x"}}}
    _answering({"ainur": ran, "dnsmasqConf": "bind-dynamic\nlisten-address=192.168.0.14\nlisten-address=127.0.0.1\n"})
    pulumi.runtime.set_all_config(_config(**{"iluvatar:nodes": json.dumps(nodes), "iluvatar:ainur": json.dumps(ainur)}), SECRET_KEYS)
    with pytest.raises(pulumi.RunError) as err:
        load()
    assert str(err.value).splitlines()[1].startswith("  iluvatar:ainur.serviceIp: 192.168.0.17 moves the service address from 192.168.0.14, ")


def test_outputs_not_as_this_program_writes_them_stop_it() -> None:
    _answering({"arda": {"talosVersion": "v1.12.4", "nodes": ["not", "a", "mapping"]}})
    pulumi.runtime.set_all_config(_config(), SECRET_KEYS)
    with pytest.raises(pulumi.RunError) as err:
        load()
    assert str(err.value).startswith("the last deployment's outputs of stack organization/iluvatar/test are not as this program writes them: ")


@pytest.mark.parametrize(
    ("outputs", "why"),
    [
        (
            {"arda": {k: v for k, v in RUNNING.items() if k != "talosVersion"}},
            "arda.talosVersion is missing, but arda.nodes records 1 machine(s): the plan starts from the Talos release Arda runs; "
            "add it as `talosctl version` shows it (e.g. v1.13.9), or give the outputs of a deployment that recorded it",
        ),
        (
            {"arda": {**RUNNING, "kubernetesVersion": None}},
            "arda.kubernetesVersion is missing, but arda.nodes records 1 machine(s): the plan starts from the Kubernetes release "
            "Arda runs; add it as `kubectl version` shows it (e.g. v1.34.12), or give the outputs of a deployment that recorded it",
        ),
        (
            {"arda": {**RUNNING, "kubernetesVersion": "1.35.1"}},
            'arda.kubernetesVersion is "1.35.1", not a Kubernetes release, but arda.nodes records 1 machine(s): the plan starts from '
            "the Kubernetes release Arda runs; add it as `kubectl version` shows it (e.g. v1.34.12), or give the outputs of a "
            "deployment that recorded it",
        ),
        (
            {"arda": {**RUNNING, "nodes": {"taniquetil": {**TANIQUETIL, "installer": "factory.talos.dev/metal-installer/376567988ad3:v1.12.4"}}}},
            "arda.nodes.taniquetil.installer is factory.talos.dev/metal-installer/376567988ad3:v1.12.4, at Talos v1.12.4, but "
            "arda.talosVersion is v1.13.0: a deployment records every machine at the cluster's release, and a plan from the wrong "
            "one could cross two minors in one roll; give the outputs `pulumi stack output --json` writes",
        ),
        (
            {"ainur": {k: v for k, v in AINUR_RAN.items() if k != "k3sVersion"}},
            "ainur.k3sVersion is missing, but ainur.nodes records 1 machine(s): k3s's upgrade checks start from the release the "
            "Ainur run; add it as `k3s --version` shows it (e.g. v1.34.12+k3s1), or give the outputs of a deployment that recorded it",
        ),
    ],
    ids=["talos-missing", "kubernetes-null", "kubernetes-without-v", "installer-at-another-release", "k3s-missing"],
)
def test_preview_refuses_outputs_render_previous_refuses(outputs: dict[str, Any], why: str) -> None:
    # Read as "Arda never deployed" or planned from the stack's own releases, they would plan from nothing.
    _answering(outputs)
    pulumi.runtime.set_all_config(_config(), SECRET_KEYS)
    with pytest.raises(pulumi.RunError) as err:
        load()
    # The fix at preview: the outputs are the backend's, edited through an export and an import of the stack's state.
    assert str(err.value) == (
        f"the last deployment's outputs of stack organization/iluvatar/test are not as this program writes them: {why}. At `pulumi "
        "preview` these are the outputs in the stack's state: `pulumi stack export --file state.json`, correct them under "
        '"outputs" of the resource of type pulumi:pulumi:Stack, then `pulumi stack import --file state.json`'
    )


def test_a_section_made_secret_is_refused_as_plain_configuration() -> None:
    # `config set --secret --path iluvatar:monitoring.prometheus.size` marks the whole key secret: every layer must read it.
    pulumi.runtime.set_all_config(_config(), [*SECRET_KEYS, "iluvatar:monitoring"])
    with pytest.raises(pulumi.RunError) as err:
        load()
    assert str(err.value).splitlines()[1:] == [
        "  iluvatar:monitoring: is encrypted, but it is plain configuration that every layer must read; set it without --secret",
        # Read without it, the section is not there for the rules that follow.
        "  iluvatar:alertReceiverSecret: is set, but iluvatar:monitoring is not; set iluvatar:monitoring.receiver, or remove the secret",
    ]


SECRET_CANARIES = {
    "iluvatar:cloudflareApiToken": "cf-canary",
    "iluvatar:ainurSshPrivateKey": "ssh-canary",
    "iluvatar:gitopsToken": "git-token-canary",
    "iluvatar:alertReceiverSecret": "alert-canary",
    "iluvatar:identityConnectorSecret": "dex-canary",
    "iluvatar:backupS3AccessKeyId": "s3-id-canary",
    "iluvatar:backupS3SecretAccessKey": "s3-secret-canary",
}


def test_each_secret_is_its_own_key_s_value_and_stays_secret() -> None:
    cfg = _config(**SECRET_CANARIES, **{"iluvatar:gitops": json.dumps({**json.loads(_config()["iluvatar:gitops"]), "private": True})})
    pulumi.runtime.set_all_config(cfg, sorted({*SECRET_KEYS, *SECRET_CANARIES}))
    seen: dict[str, Any] = {}

    @pulumi.runtime.test
    def check() -> pulumi.Output[Any]:
        s = load().secrets
        fields = {
            "iluvatar:cloudflareApiToken": s.cloudflare_api_token,
            "iluvatar:ainurSshPrivateKey": s.ainur_ssh_private_key,
            "iluvatar:gitopsToken": s.gitops_token,
            "iluvatar:alertReceiverSecret": s.alert_receiver_secret,
            "iluvatar:identityConnectorSecret": s.identity_connector_secret,
            "iluvatar:backupS3AccessKeyId": s.s3_access_key_id,
            "iluvatar:backupS3SecretAccessKey": s.s3_secret_access_key,
            "iluvatar:appSecrets": s.app_secrets,
        }
        assert (s.bmc_passwords, s.gitops_ssh_private_key) == (None, None)  # no BMC in the homelab; its repository is https
        keys = list(fields)
        outputs = [o for o in fields.values() if o is not None]
        assert len(outputs) == len(keys), [k for k, o in fields.items() if o is None]
        flags: list[pulumi.Output[bool]] = [pulumi.Output.from_input(o.is_secret()) for o in outputs]

        def record(values: list[Any]) -> None:
            seen.update(zip(keys, zip(values[: len(keys)], values[len(keys) :], strict=True), strict=True))

        return pulumi.Output.all(*outputs, *flags).apply(record)

    check()
    assert seen == {
        **{k: (v, True) for k, v in SECRET_CANARIES.items()},
        "iluvatar:appSecrets": ({"home-assistant": {"WEATHER_API_KEY": "homelab-token"}}, True),
    }


def test_an_ssh_repository_s_deploy_key_is_its_secret() -> None:
    gitops = {**json.loads(_config()["iluvatar:gitops"]), "repoUrl": "git@github.com:example/homelab.git", "private": True}
    cfg = _config(**{"iluvatar:gitops": json.dumps(gitops), "iluvatar:gitopsSshPrivateKey": "deploy-key-canary"})
    pulumi.runtime.set_all_config(cfg, [*SECRET_KEYS, "iluvatar:gitopsSshPrivateKey"])
    seen: list[Any] = []

    @pulumi.runtime.test
    def check() -> pulumi.Output[Any]:
        s = load().secrets
        assert s.gitops_token is None and s.gitops_ssh_private_key is not None
        secret: pulumi.Output[bool] = pulumi.Output.from_input(s.gitops_ssh_private_key.is_secret())
        return pulumi.Output.all(s.gitops_ssh_private_key, secret).apply(seen.extend)

    check()
    assert seen == ["deploy-key-canary", True]


STATIC = json.dumps(
    {
        "ip": "192.168.0.16",
        "connector": {"type": "static", "email": "admin@example.org", "groups": ["admins"]},
        "groups": [{"group": "admins", "clusterRole": "cluster-admin"}],
        "headlamp": {"app": "headlamp"},
    }
)
HASH = "$2y$10$" + "abcdefghijklmnopqrstuv" + "0123456789ABCDEFGHIJKLMNOPQRSTU"  # the form htpasswd -B writes


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (HASH, None),
        (HASH.replace("$10$", "$16$"), None),
        (UNDECRYPTED, None),  # `iluvatar render`: nobody decrypted it; `pulumi preview` checks it
        (
            HASH + "\n",
            "has a space or a newline around the hash (a line piped in whole, or echo without -n), which Dex keeps as part of it: Dex starts, and refuses every login",
        ),
        (
            " " + HASH,
            "has a space or a newline around the hash (a line piped in whole, or echo without -n), which Dex keeps as part of it: Dex starts, and refuses every login",
        ),
        (":" + HASH, "starts with the ':' htpasswd prints before the hash (an empty user name), which keeps Dex from starting"),
        ("hunter2", "is not a bcrypt hash ($2y$10$ and 53 characters): the password itself, or another hash, which keeps Dex from starting"),
        (HASH.replace("$10$", "$09$"), "is a bcrypt hash of cost 09, and Dex refuses every login with a cost outside 10 to 16 (htpasswd's -C)"),
        (HASH.replace("$10$", "$17$"), "is a bcrypt hash of cost 17, and Dex refuses every login with a cost outside 10 to 16 (htpasswd's -C)"),
    ],
)
def test_the_static_admins_hash_is_checked_as_the_engine_decrypted_it(secret: str, problem: str | None) -> None:
    pulumi.runtime.set_all_config(_config(**{"iluvatar:identity": STATIC, "iluvatar:identityConnectorSecret": secret}), SECRET_KEYS)
    if problem is None:
        assert load().config.identity is not None
        return
    with pytest.raises(pulumi.RunError) as err:
        load()
    command = "pulumi config set --secret iluvatar:identityConnectorSecret \"$(htpasswd -nbBC 10 '' '<password>' | tr -d ':\\n')\""
    assert str(err.value).splitlines() == ["stack test: 1 problem:", f"  iluvatar:identityConnectorSecret: {problem}; set it again with `{command}`"]
    assert secret not in str(err.value)  # never the value


def test_a_homelab_that_never_stated_its_dhcp_mode_keeps_its_lans_dhcp() -> None:
    """A stack written before `proxy` became the default omitted ainur.netboot.mode and ran dhcp: the Ainur were the LAN's
    DHCP server. Its last deployment's dnsmasq config (the program's own, exported as `dnsmasqConf`) says so, and the
    preview refuses, naming the key and the fix, rather than switch the household's DHCP off on the next `up`."""
    ran = dnsmasq_conf(load_stack_file(HOMELAB))  # the homelab states dhcp: the config such a stack served
    ainur = json.loads(_config()["iluvatar:ainur"])
    del ainur["netboot"]["mode"]
    _answering({"dnsmasqConf": ran})
    pulumi.runtime.set_all_config(_config(**{"iluvatar:ainur": json.dumps(ainur)}), SECRET_KEYS)
    with pytest.raises(pulumi.RunError) as err:
        load()
    assert str(err.value).splitlines() == [
        "stack test: 1 problem:",
        "  iluvatar:ainur.netboot.mode: is not set, so it is proxy (a new stack's default), and the last deployment ran the Ainur "
        "in mode dhcp: the next `up` would stop the Ainur lending the household's addresses, and with the router's DHCP off every "
        "device would lose its address when its lease runs out. State the mode: ainur.netboot.mode: dhcp keeps the LAN as it "
        "runs; proxy changes it (docs/layers/netboot.md#changing-the-dhcp-mode)",
    ]
    # Stated, either way, it goes on: dhcp keeps the LAN as it runs; proxy is the user's informed move (the plan says it),
    # with the pool the router will lend apart from the range the Ainur lent (stacks.netboot_mode).
    for netboot in ({"mode": "dhcp"}, {"mode": "proxy", "routerPool": {"start": "192.168.0.200", "end": "192.168.0.250"}}):
        _answering({"dnsmasqConf": ran})
        pulumi.runtime.set_all_config(_config(**{"iluvatar:ainur": json.dumps(ainur | {"netboot": netboot})}), SECRET_KEYS)
        assert load().config.ainur is not None


def test_preview_refuses_an_older_iluvatars_outputs_as_render_previous_does() -> None:
    """The outputs of an Iluvatar from before `arda` and `ainur` were outputs, in the engine's state as in a file: read
    as never deployed, every running machine would be planned as new; the fix names no `pulumi up` of this Iluvatar."""
    outputs = whole({"arda": RUNNING, "ainur": AINUR_RAN, "vips": {"ainur": "192.168.0.10", "arda": "192.168.0.20"}})
    older = {k: v for k, v in outputs.items() if k not in ("arda", "ainur")}
    _answering(older, made_whole=False)
    pulumi.runtime.set_all_config(_config(), SECRET_KEYS)
    with pytest.raises(pulumi.RunError) as err:
        load()
    assert str(err.value) == (
        "the last deployment's outputs of stack organization/iluvatar/test are not all there: the outputs of an Iluvatar from "
        "before arda was an output (2026-11-23 03:45 UTC): it lacks arda, which every deployment writes, and ainur, which one "
        "with the Ainur writes (its vips.ainur says it had one); planned from them, what a missing output records reads as never "
        "deployed; this Iluvatar cannot start from them, and no key says Arda and the Ainur already run (arda.subnetsRunning "
        "names only the subnets Arda runs), so do not run its `pulumi up`; first run `pulumi up` with the Iluvatar that "
        "deployed them, or the first one that writes arda (from 2026-11-23 03:45 UTC), after its `pulumi preview` plans no "
        "machine as new; then write them all with `pulumi stack output --json --show-secrets > file`"
    )


def test_preview_goes_on_from_a_first_up_stopped_at_any_export_and_says_so() -> None:
    """A first `pulumi up` whose program stopped part-way records the outputs exported before it stopped, in
    __main__.py's order: another `pulumi up` is their fix, so preview reads what they lack as never deployed, as on a
    first deployment it is, and warns; refused, no `up` could ever finish it."""
    outputs = whole({"arda": RUNNING, "ainur": AINUR_RAN, "vips": {"ainur": "192.168.0.10", "arda": "192.168.0.20"}})
    order = [k for k in exports.SINCE if k in outputs]
    cuts = [{k: outputs[k] for k in order[:i]} for i in range(1, len(order))]
    parts = [part for part in cuts if missing(part) is not None]
    assert parts and all(may_be_a_stopped_first_up(part) for part in parts)
    stopped = next(part for part in parts if "arda" not in part)
    _answering(stopped, made_whole=False)
    pulumi.runtime.set_all_config(_config(), SECRET_KEYS)
    assert load().config.arda.cluster_name == "arda"
    # An older Iluvatar's outputs (what came after a key it lacks) are no stopped first `up`'s.
    assert not may_be_a_stopped_first_up({k: v for k, v in outputs.items() if k not in ("arda", "ainur")})
