"""Monitoring's and sign-in's secrets, under the program's mocks: the alert receiver's token, the
connector's secret, the client secrets and Grafana's password Pulumi generates, and Dex's key reach the
Secrets that need them, and never a render or a plain output."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import yaml

from iluvatar import simulate as sim_module
from iluvatar.render import render_files
from iluvatar.simulate import SecretValue, Simulation, simulate
from stacks import read_stack_file
from stacks.identity import SECRET as CONNECTOR_SECRET
from stacks.monitoring import SECRET as RECEIVER_SECRET
from tests.edit import homelab_doc, write_stack
from tests.iluvatar.test_doctor import Issuer

CANARIES = {
    RECEIVER_SECRET: "CANARY-NTFY-TOKEN-4d1f",
    CONNECTOR_SECRET: "CANARY-GITHUB-CLIENT-SECRET-a9c3",
}
GENERATED = "CANARY-GENERATED-PASSWORD-77e0"
DEX_KEY = "CANARY-DEX-KEY-1b6e"


@pytest.fixture(scope="module")
def canaried(tmp_path_factory: pytest.TempPathFactory) -> Simulation:
    """The homelab with a known value for each secret: config secrets as the engine hands them decrypted,
    every generated password, every private key."""
    with pytest.MonkeyPatch.context() as mp:
        config_of = sim_module.pulumi_config

        def decrypted(sf: Any) -> tuple[dict[str, str], list[str]]:
            config, secret_keys = config_of(sf)
            return {**config, **{f"iluvatar:{k}": v for k, v in CANARIES.items()}}, secret_keys

        mp.setattr(sim_module, "pulumi_config", decrypted)
        mp.setitem(sim_module.RESOURCE_STATE, "random:index/randomPassword:RandomPassword", lambda a: {"result": GENERATED, "bcryptHash": GENERATED})
        mp.setitem(sim_module.RESOURCE_STATE, "tls:index/privateKey:PrivateKey", lambda a: {"privateKeyPem": DEX_KEY})
        return simulate(read_stack_file(write_stack(tmp_path_factory.mktemp("stack"), homelab_doc(), stack="homelab")))


def _string_data(sim: Simulation, name: str) -> dict[str, str]:
    value = sim.named()[name].inputs["stringData"]
    assert isinstance(value, SecretValue), f"{name}'s stringData is not a secret"
    data: dict[str, str] = value.value
    return data


def test_each_secret_reaches_the_secret_that_needs_it(canaried: Simulation) -> None:
    alertmanager = yaml.safe_load(_string_data(canaried, "monitoring-arda-secret-alertmanager-iluvatar")["alertmanager.yaml"])
    ntfy = next(r for r in alertmanager["receivers"] if r["name"] == "ntfy")["webhook_configs"][0]
    assert ntfy["http_config"]["authorization"] == {"type": "Bearer", "credentials": CANARIES[RECEIVER_SECRET]}
    dex = yaml.safe_load(_string_data(canaried, "identity-ainur-secret-dex-config")["config.yaml"])
    assert dex["connectors"][0]["config"]["clientSecret"] == CANARIES[CONNECTOR_SECRET]
    assert {c["id"]: c.get("secret") for c in dex["staticClients"]} == {
        "argocd-arda": GENERATED,
        "argocd-ainur": GENERATED,
        "headlamp": GENERATED,
        "kubernetes": None,
    }
    assert _string_data(canaried, "identity-arda-secret-argocd-oidc") == {"clientSecret": GENERATED}
    assert _string_data(canaried, "identity-ainur-secret-dex-tls")["tls.key"] == DEX_KEY
    assert GENERATED in _string_data(canaried, "monitoring-arda-secret-grafana-admin").values()
    assert isinstance(canaried.outputs["grafanaAdminPassword"], SecretValue)


def test_no_secret_appears_in_any_rendered_file_or_plain_output(canaried: Simulation) -> None:
    canaries = (*CANARIES.values(), GENERATED, DEX_KEY)
    for rel, content in render_files(canaried).items():
        for canary in canaries:
            assert canary not in content, f"{canary} in clear in {rel}"
    for key, value in canaried.outputs.items():
        if not isinstance(value, SecretValue):
            assert not any(c in repr(value) for c in canaries), key
    # The sign-in kubeconfigs are plain on purpose: they carry no secret, only the issuer and the CAs.
    assert not isinstance(canaried.outputs["signIn"], SecretValue)


def test_only_the_stacks_alerts_reach_the_receiver(homelab: Simulation) -> None:
    config = yaml.safe_load(_string_data(homelab, "monitoring-arda-secret-alertmanager-iluvatar")["alertmanager.yaml"])
    assert config["route"]["receiver"] == "none"
    (route,) = config["route"]["routes"]
    # Sorted: the k3s certificates' two alerts (issue 57) first.
    assert route["receiver"] == "ntfy" and route["matchers"][0].startswith(
        'alertname=~"AinurCACertificateExpiring|AinurCertificateExpiring|AinurCertificateUnknown|AinurNodeDown|AinurSnapshotsStale|ArdaMachineNotRestarted|ArdaNodeDown|'
    )
    assert {r["name"] for r in config["receivers"]} == {"none", "ntfy"}


def test_each_recorded_end_is_a_rule_written_at_each_up(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The stack's PrometheusRule carries one rule per end the deployment records, with the end the certificate really
    has (here every certificate the local CA issues ends on 2027-11-25T12:00:00Z): CredentialExpiring 28 days before it;
    an end the run cannot read (the mocks' placeholders for the CA and the Talos provider's) gives CredentialEndUnknown.
    The ends are no secret: the rule is not one."""
    work = tmp_path_factory.mktemp("issuer")
    leaf = Issuer(work / "ca").leaf("2027-11-25T12:00:00Z")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sim_module.RESOURCE_STATE, "tls:index/locallySignedCert:LocallySignedCert", lambda a: {"certPem": leaf, "readyForRenewal": False})
        sim = simulate(read_stack_file(write_stack(tmp_path_factory.mktemp("stack"), homelab_doc(), stack="homelab")))
    (rule,) = [r for r in sim.registrations if r.inputs.get("kind") == "PrometheusRule" and r.inputs["metadata"]["name"] == "iluvatar-alerts"]
    assert "spec" not in rule.secret_inputs
    groups = {g["name"]: g["rules"] for g in rule.inputs["spec"]["groups"]}
    ends = {r["labels"]["credential"]: (r["alert"], r["expr"]) for r in groups["iluvatar-ends"]}
    warn = int(datetime.datetime(2027, 11, 25, 12, tzinfo=datetime.UTC).timestamp()) - 28 * 86400
    issued = {f"the local CA's certificate {name}" for name in ("identity-dex", "identity-argocd-ainur", "kms-tls")}
    assert {what: ends[what] for what in issued} == dict.fromkeys(issued, ("CredentialExpiring", f"vector(time()) > {warn}"))
    assert {what: alert for what, (alert, _) in ends.items() if what not in issued} == {
        "Arda's Kubernetes CA": "CredentialEndUnknown",
        "Arda's admin kubeconfig": "CredentialEndUnknown",
        "Talos's CA": "CredentialEndUnknown",
        "the local CA": "CredentialEndUnknown",
        "the talosconfig's client certificate": "CredentialExpiring",  # the mocks' Talos provider records an end
    }
