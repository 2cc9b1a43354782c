"""Every resource input and invoke argument the program sends has the keys its provider's SDK declares (tools.provider_inputs).

The stacks' runs (both shipped stacks and random ones) are checked whole; each rule of the check is shown to fail
on a fixture that breaks it, and the check is shown to catch the program as it was (the Talos provider's output
objects handed back to it, issue #38).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi_kubernetes as k8s
import pytest
from hypothesis import HealthCheck, given, settings

from iluvatar.simulate import SecretValue, simulate
from stacks import read_stack_file
from tests.bringup import edited
from tests.edit import HOMELAB, RK1
from tests.sims import homelab_again, simulated
from tests.strategies import raw_stacks
from tools import provider_inputs
from tools.provider_inputs import FREE, Keys, ListOf, MapOf, Obj, invoke_keys, invoke_problems, registration_problems, resource_keys

MACHINE_CONFIG = "talos:machine/getConfiguration:getConfiguration"
CLIENT_CONFIG = "talos:client/getConfiguration:getConfiguration"
SECRET = "kubernetes:core/v1:Secret"


def _shown(problems: list[provider_inputs.Problem]) -> list[str]:
    return [str(p) for p in problems]


@pytest.mark.parametrize("path", [HOMELAB, RK1], ids=["homelab", "rk1"])
def test_every_key_the_program_sends_is_one_its_provider_reads(path: Path) -> None:
    sim = simulated(path)
    assert _shown(provider_inputs.problems(sim)) == []
    # What was checked: every provider's resources and invokes (the homelab has them all, Cloudflare's too).
    checked = {r.type.split(":")[0] for r in sim.registrations if r.custom} | {t.split(":")[0] for t, _ in sim.invocations}
    assert checked >= ({"kubernetes", "command", "talos", "random", "tls", "pulumi"} | ({"cloudflare"} if path == HOMELAB else set()))


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(raw=raw_stacks(identity=True))
def test_random_stacks_send_their_providers_only_keys_they_read(raw: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> None:
    # JSON (valid YAML) quotes every string, so an all-digit MAC spelling stays a string.
    path = tmp_path_factory.mktemp("random") / "Pulumi.random.yaml"
    path.write_text(json.dumps({"config": {"pulumi:disable-default-providers": ["*"], **raw}}))
    assert _shown(provider_inputs.problems(simulate(read_stack_file(path)))) == []


def test_the_talos_outputs_handed_back_as_they_were_fail_the_check() -> None:
    """The program as it was (issue #38): the Secrets' output objects passed where the SDK declares its input types."""
    with edited(
        "components.arda",
        ("machine_secrets=pulumi.Output.secret(secrets.machine_secrets.apply(machine_secrets_args)),", "machine_secrets=secrets.machine_secrets,"),
        ("self.secrets.client_configuration.apply(client_args)", "self.secrets.client_configuration"),
    ):
        found = _shown(provider_inputs.problems(simulate(read_stack_file(RK1))))
    names = "(the provider's name for the Python name"
    # Sorted: invokes resolve in no fixed order.
    assert found == [
        f"{CLIENT_CONFIG} clientConfiguration.caCertificate: missing: GetConfigurationClientConfigurationArgs requires it",
        f"{CLIENT_CONFIG} clientConfiguration.ca_certificate: not a key of GetConfigurationClientConfigurationArgs; did you mean caCertificate {names} ca_certificate)",
        f"{CLIENT_CONFIG} clientConfiguration.clientCertificate: missing: GetConfigurationClientConfigurationArgs requires it",
        f"{CLIENT_CONFIG} clientConfiguration.clientKey: missing: GetConfigurationClientConfigurationArgs requires it",
        f"{CLIENT_CONFIG} clientConfiguration.client_certificate: not a key of GetConfigurationClientConfigurationArgs; did you mean clientCertificate {names} client_certificate)",
        f"{CLIENT_CONFIG} clientConfiguration.client_key: not a key of GetConfigurationClientConfigurationArgs; did you mean clientKey {names} client_key)",
        f"{MACHINE_CONFIG} machineSecrets.certs.k8sAggregator: missing: CertificatesArgs requires it",
        f"{MACHINE_CONFIG} machineSecrets.certs.k8sServiceaccount: missing: CertificatesArgs requires it",
        f"{MACHINE_CONFIG} machineSecrets.certs.k8s_aggregator: not a key of CertificatesArgs; did you mean k8sAggregator {names} k8s_aggregator)",
        f"{MACHINE_CONFIG} machineSecrets.certs.k8s_serviceaccount: not a key of CertificatesArgs; did you mean k8sServiceaccount {names} k8s_serviceaccount)",
        f"{MACHINE_CONFIG} machineSecrets.secrets.bootstrapToken: missing: KubernetesSecretsArgs requires it",
        f"{MACHINE_CONFIG} machineSecrets.secrets.bootstrap_token: not a key of KubernetesSecretsArgs; did you mean bootstrapToken {names} bootstrap_token)",
        f"{MACHINE_CONFIG} machineSecrets.secrets.secretboxEncryptionSecret: missing: KubernetesSecretsArgs requires it",
        f"{MACHINE_CONFIG} machineSecrets.secrets.secretbox_encryption_secret: not a key of KubernetesSecretsArgs; did you mean secretboxEncryptionSecret {names} secretbox_encryption_secret)",
    ]


# --- Each rule, on a fixture that breaks it -------------------------------------------------------------------------

CLIENT = {"caCertificate": "ca", "clientCertificate": "cert", "clientKey": "key"}


def test_a_python_name_is_refused_with_the_providers_name() -> None:
    args = {"clusterName": "arda", "clientConfiguration": {"caCertificate": "ca", "clientCertificate": "cert", "client_key": "key"}}
    assert _shown(invoke_problems(CLIENT_CONFIG, args)) == [
        f"{CLIENT_CONFIG} clientConfiguration.client_key: not a key of GetConfigurationClientConfigurationArgs;"
        " did you mean clientKey (the provider's name for the Python name client_key)",
        f"{CLIENT_CONFIG} clientConfiguration.clientKey: missing: GetConfigurationClientConfigurationArgs requires it",
    ]
    assert invoke_problems(CLIENT_CONFIG, {"clusterName": "arda", "clientConfiguration": CLIENT}) == []


def test_an_unknown_key_is_refused_with_the_closest_known_one() -> None:
    assert _shown(registration_problems(SECRET, "s", {"metadata": {"name": "s", "lables": {"a": "b"}}, "stringData": {"k": "v"}})) == [
        f"{SECRET} s metadata.lables: not a key of ObjectMetaArgs; did you mean labels"
    ]
    assert _shown(registration_problems(SECRET, "s", {"qqq": 1})) == [
        f"{SECRET} s qqq: not a key of SecretInitArgs; its keys: apiVersion, data, immutable, kind, metadata, stringData, type"
    ]


def test_a_missing_required_key_is_named_at_its_path() -> None:
    kubeconfig = "talos:cluster/kubeconfig:Kubeconfig"
    assert _shown(registration_problems(kubeconfig, "k", {"node": "10.0.0.1"})) == [
        f"{kubeconfig} k clientConfiguration: missing: KubeconfigArgs requires it"
    ]
    assert _shown(registration_problems(kubeconfig, "k", {"node": "10.0.0.1", "clientConfiguration": {"caCertificate": "c", "clientKey": "k"}})) == [
        f"{kubeconfig} k clientConfiguration.clientCertificate: missing: KubeconfigClientConfigurationArgs requires it"
    ]
    # An invoke's required arguments: those its generated `_output` function wraps in one Optional, not two.
    assert _shown(invoke_problems(MACHINE_CONFIG, {"clusterName": "arda", "docs": False})) == [
        f"{MACHINE_CONFIG} clusterEndpoint: missing: pulumiverse_talos.machine.get_configuration.get_configuration_output requires it",
        f"{MACHINE_CONFIG} machineSecrets: missing: pulumiverse_talos.machine.get_configuration.get_configuration_output requires it",
        f"{MACHINE_CONFIG} machineType: missing: pulumiverse_talos.machine.get_configuration.get_configuration_output requires it",
    ]


def test_a_nested_path_runs_through_lists_and_maps() -> None:
    deployment = "kubernetes:apps/v1:Deployment"
    inputs = {
        "metadata": {"name": "d", "labels": {"app.kubernetes.io/name": "d"}},
        "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {"spec": {"containers": [{"name": "d", "image": "i"}, {"name": "e", "image": "i", "image_pull_policy": "Always"}]}},
        },
    }
    assert _shown(registration_problems(deployment, "d", inputs)) == [
        f"{deployment} d spec.template.spec.containers[1].image_pull_policy: not a key of ContainerArgs;"
        " did you mean imagePullPolicy (the provider's name for the Python name image_pull_policy)"
    ]
    # A map's values are checked (a CRD schema's properties), its keys are the program's own.
    crd = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"
    schema = {"type": "object", "properties": {"any_name": {"type": "string", "maxLenght": 3}}}
    spec = {
        "group": "g.io",
        "names": {"kind": "K", "plural": "ks"},
        "scope": "Namespaced",
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}],
    }
    assert _shown(registration_problems(crd, "c", {"spec": spec})) == [
        f"{crd} c spec.versions[0].schema.openAPIV3Schema.properties.any_name.maxLenght: not a key of JSONSchemaPropsArgs; did you mean maxLength"
    ]
    # A key with dots (an annotation, a label) is shown quoted.
    assert provider_inputs._join("metadata.labels", "app.kubernetes.io/name") == "metadata.labels['app.kubernetes.io/name']"


def test_free_form_values_stop_the_descent() -> None:
    release = "kubernetes:helm.sh/v3:Release"
    assert registration_problems(release, "r", {"chart": "c", "values": {"any": {"thing": [{"at": "all"}]}}}) == []
    assert resource_keys(release).fields["values"] == MapOf(FREE)
    # A custom resource's spec is the CRD's business; its metadata is still an ObjectMeta.
    app = "kubernetes:argoproj.io/v1alpha1:Application"
    cr = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "spec": {"whatever": {"nested": 1}}, "data": {"x": 1}}
    assert registration_problems(app, "a", cr) == []
    assert _shown(registration_problems(app, "a", {**cr, "metadata": {"nmae": "a"}})) == [
        f"{app} a metadata.nmae: not a key of ObjectMetaArgs; did you mean name"
    ]
    assert _shown(registration_problems(app, "a", {**cr, "kind": "AppProject"})) == [
        f"{app} a: registered as a custom resource, but its apiVersion/kind say kubernetes:argoproj.io/v1alpha1:AppProject"
    ]
    # A JSON schema's `default` and `items` as a list are any JSON; `items` as an object is a schema again.
    crd = resource_keys("kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition")
    assert crd.fields["spec"] == Obj(k8s.apiextensions.v1.CustomResourceDefinitionSpecArgs)
    props = provider_inputs.keys_of(k8s.apiextensions.v1.JSONSchemaPropsArgs)
    free = {"default": {"a_b": 1}, "items": [{"x_y": 1}], "x-kubernetes-preserve-unknown-fields": True}
    assert provider_inputs.check_value(free, props, "s") == []
    assert _shown(provider_inputs.check_value({"items": {"typo": "string"}}, props, "s")) == [
        "s items.typo: not a key of JSONSchemaPropsArgs; did you mean type"
    ]
    assert _shown(provider_inputs.check_value({"x-kubernetes-bogus": True}, props, "s"))[0].startswith("s x-kubernetes-bogus: not a key of")


def test_a_secret_is_checked_inside() -> None:
    args = {"clusterName": "arda", "clientConfiguration": SecretValue({**CLIENT, "ca_certificate": "ca"})}
    assert [p.path for p in invoke_problems(CLIENT_CONFIG, args)] == ["clientConfiguration.ca_certificate"]


def test_what_no_sdk_declares_is_a_problem_and_the_engines_builtins_are_not() -> None:
    assert _shown(registration_problems("talos:machine/nothing:Nothing", "n", {})) == [
        "talos:machine/nothing:Nothing n: no class of the installed pulumiverse_talos registers type talos:machine/nothing:Nothing"
    ]
    assert _shown(invoke_problems("talos:machine/getNothing:getNothing", {})) == [
        "talos:machine/getNothing:getNothing: no function of the installed pulumiverse_talos invokes talos:machine/getNothing:getNothing"
        " (looked for get_nothing.py under pulumiverse_talos/)"
    ]
    assert invoke_problems("pulumi:pulumi:readStackOutputs", {"name": "x"}) == []


# --- What the check reads from the SDKs -----------------------------------------------------------------------------


def test_types_map_to_the_classes_the_sdks_register() -> None:
    assert provider_inputs.resource_class("kubernetes:apps/v1:Deployment") is k8s.apps.v1.Deployment
    assert provider_inputs.resource_class("pulumi:providers:kubernetes") is k8s.Provider
    assert provider_inputs.resource_class("kubernetes:argoproj.io/v1alpha1:Application") is None
    # The class a resource fills, not the input type of the same name: a CRD's arguments are its InitArgs.
    assert resource_keys("kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition").name == "CustomResourceDefinitionInitArgs"
    assert resource_keys("pulumi:providers:random") == Keys("ProviderArgs", {}, {}, frozenset())


@pytest.mark.parametrize(
    ("token", "required"),
    [
        (MACHINE_CONFIG, {"clusterEndpoint", "clusterName", "machineSecrets", "machineType"}),
        (CLIENT_CONFIG, {"clientConfiguration", "clusterName"}),
        ("talos:imageFactory/getUrls:getUrls", {"schematicId", "talosVersion"}),
        ("command:local:run", {"command"}),
        ("cloudflare:index/getZone:getZone", set()),
        ("cloudflare:index/getZeroTrustTunnelCloudflaredToken:getZeroTrustTunnelCloudflaredToken", {"accountId", "tunnelId"}),
    ],
)
def test_an_invokes_required_arguments_are_its_providers(token: str, required: set[str]) -> None:
    """As each provider's schema has them (terraform-provider-talos, pulumi-command, Cloudflare's docs agree)."""
    assert invoke_keys(token).required == required


def test_nested_invoke_arguments_have_their_input_types() -> None:
    keys: dict[str, Any] = dict(invoke_keys(MACHINE_CONFIG).fields)
    assert keys["machineSecrets"] == Obj(__import__("pulumiverse_talos").machine.MachineSecretsArgs)
    assert keys["configPatches"] == ListOf(provider_inputs.SCALAR)


def test_a_day_2_run_sends_its_providers_only_keys_they_read() -> None:
    """Calls only a deployed stack makes (the probe's `command:local:run` invoke at preview, the Kubernetes upgrade's
    steps): the homelab simulated again on its own outputs, and again with Arda one Kubernetes minor behind."""
    for label, sim in (("day 2", homelab_again()), ("upgrade", homelab_again(kubernetes="v1.34.5"))):
        assert _shown(provider_inputs.problems(sim)) == [], label
        invoked = {t for t, _ in sim.invocations}
        assert "command:local:run" in invoked, label
        names = {r.name for r in sim.registrations}
        assert label != "upgrade" or any(n.endswith("kubernetes-upgrade") for n in names), sorted(names)
