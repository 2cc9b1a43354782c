"""Data safety, checked by the real programs: Helm renders ESO and VolSync from their modules, the objects we
write pass their CRDs' schemas, a real age implementation opens what is encrypted to our recipient with the
stack's key, and no planted secret value leaks into the render, the scaffold, a ConfigMap or an Application."""

from __future__ import annotations

import json
from typing import Any

import pyrage
import pytest

from iluvatar import render as render_mod
from iluvatar import scaffold
from iluvatar import simulate as sim_module
from iluvatar.simulate import SecretValue, simulate
from plans import backup as backup_plan
from plans import secrets as secrets_plan
from stacks import load_stack_file, read_stack_file
from tests.edit import HOMELAB
from tools import upstream


def test_helm_renders_eso_from_its_module_with_the_released_image_and_no_legacy_versions() -> None:
    objects = upstream.helm_template(
        upstream.chart(secrets_plan.CHART, secrets_plan.VERSION),
        secrets_plan.helm_values(),
        release="external-secrets",
        namespace=secrets_plan.NAMESPACE,
        kube_version="v1.34.1",
    )
    images = {c["image"] for o in objects if o["kind"] == "Deployment" for c in o["spec"]["template"]["spec"]["containers"]}
    assert images == {f"ghcr.io/external-secrets/external-secrets:{secrets_plan.IMAGE_TAG}"}
    crds = {o["spec"]["names"]["kind"]: o for o in objects if o["kind"] == "CustomResourceDefinition"}
    assert {"SecretStore", "ExternalSecret"} <= set(crds)
    served = {v["name"] for v in crds["SecretStore"]["spec"]["versions"] if v["served"]}
    assert served == {"v1"}


def test_helm_renders_volsync_from_its_module() -> None:
    objects = upstream.helm_template(
        upstream.chart(backup_plan.CHART, backup_plan.VERSION),
        backup_plan.helm_values(),
        release="volsync",
        namespace=backup_plan.NAMESPACE,
        kube_version="v1.34.1",
    )
    kinds = {o["spec"]["names"]["kind"] for o in objects if o["kind"] == "CustomResourceDefinition"}
    assert kinds == {"ReplicationSource", "ReplicationDestination"}


def test_our_custom_resources_pass_their_crds_schemas() -> None:
    stack = load_stack_file(HOMELAB)
    checks: list[tuple[dict[str, Any], str, str]] = [
        (secrets_plan.secret_store(c), "external-secrets", "v1.3.2") for c in secrets_plan.categories(stack)
    ]
    checks += [(secrets_plan.external_secret(a), "external-secrets", "v1.3.2") for a in secrets_plan.apps_with_secrets(stack)]
    for app in backup_plan.apps(stack):
        for obj in backup_plan.app_manifests(stack, app).values():
            if obj["kind"] != "PersistentVolumeClaim":
                checks.append((obj, "volsync", "v0.16.0"))
    for obj, source, version in checks:
        validator = upstream.crd_validator(obj["apiVersion"], obj["kind"], source=source, version=version)
        errors = [e.message for e in validator.iter_errors(obj)]
        assert errors == [], (obj["kind"], errors)


def test_a_snapshot_encrypted_to_the_rendered_recipient_opens_with_the_stacks_key() -> None:
    sim = simulate(read_stack_file(HOMELAB))
    [cronjob] = [r for r in sim.registrations if r.type == "kubernetes:batch/v1:CronJob"]
    env = {e["name"]: e.get("value") for e in cronjob.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    identity = sim.outputs["backupAgeKey"]
    assert isinstance(identity, SecretValue)
    snapshot = b"etcd snapshot bytes " * 1000
    sealed = pyrage.encrypt(snapshot, [pyrage.x25519.Recipient.from_str(env["AGE_X25519_PUBLIC_KEY"])])
    assert pyrage.decrypt(sealed, [pyrage.x25519.Identity.from_str(identity.value)]) == snapshot


CANARY = "CANARY-4f1d9e2b7c"


def test_no_secret_value_reaches_a_render_a_scaffold_a_configmap_or_an_application(monkeypatch: pytest.MonkeyPatch) -> None:
    real = sim_module.pulumi_config

    def planted(sf: Any) -> tuple[dict[str, str], list[str]]:
        config, secret_keys = real(sf)
        config["iluvatar:appSecrets"] = json.dumps({"home-assistant": {"WEATHER_API_KEY": f"{CANARY}-user"}})
        config["iluvatar:backupS3SecretAccessKey"] = f"{CANARY}-s3"
        return config, secret_keys

    monkeypatch.setattr(sim_module, "pulumi_config", planted)
    monkeypatch.setitem(
        sim_module.RESOURCE_STATE, "random:index/randomPassword:RandomPassword", lambda a: {"result": f"{CANARY}-gen", "bcryptHash": "x"}
    )
    sf = read_stack_file(HOMELAB)
    sim = simulate(sf)
    seen_in_secret = False
    for reg in sim.registrations:
        text = json.dumps(reg.inputs, default=lambda v: "<secret>" if isinstance(v, SecretValue) else str(v))
        assert CANARY not in text, f"{reg.name} carries a secret value outside a secret"
        if reg.type == "kubernetes:core/v1:Secret" and CANARY in repr(json.dumps(reg.inputs, default=lambda v: v.value)):
            seen_in_secret = True
    assert seen_in_secret, "the planted values reach the store's Secrets, as secrets"
    rendered = render_mod.render_files(sim)
    assert rendered, "the render has files"
    for name, text in rendered.items():
        assert CANARY not in text, name
    layout = scaffold.files(load_stack_file(HOMELAB))
    assert all(CANARY not in text for text in layout.values())
