"""Data safety, checked by the real programs: Helm renders ESO and VolSync from their modules, the objects we
write pass their CRDs' schemas, a real age implementation opens what is encrypted to our recipient with the
stack's key, and no planted secret value leaks into the render, the scaffold, a ConfigMap or an Application."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyrage
import pytest

from iluvatar import render as render_mod
from iluvatar import scaffold
from iluvatar import simulate as sim_module
from iluvatar.simulate import SecretValue, Simulation, simulate
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
        kube_version="v1.35.1",
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
        kube_version="v1.35.1",
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


def _random_password(inputs: dict[str, Any]) -> dict[str, str]:
    """As the random provider makes one: `length` characters, letters and digits when `special` is off."""
    alphabet = string.ascii_letters + string.digits + ("" if inputs.get("special") is False else "!@#$%&*()-_=+[]{}<>:?")
    return {"result": "".join(secrets.choice(alphabet) for _ in range(int(inputs.get("length") or 16))), "bcryptHash": "x"}


@pytest.fixture(scope="module")
def homelab() -> Iterator[Simulation]:
    """The homelab stack's `pulumi up` (one per module), each generated password a real random one, as the provider's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sim_module.RESOURCE_STATE, "random:index/randomPassword:RandomPassword", _random_password)
        yield simulate(read_stack_file(HOMELAB))


def test_a_snapshot_encrypted_to_the_rendered_recipient_opens_with_the_stacks_key(homelab: Simulation) -> None:
    # talos-backup's CronJob (the restore drills are CronJobs too: tests/test_drill.py).
    [cronjob] = [r for r in homelab.registrations if r.type == "kubernetes:batch/v1:CronJob" and r.inputs["metadata"]["name"] == "talos-backup"]
    env = {e["name"]: e.get("value") for e in cronjob.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    identity = homelab.outputs["backupAgeKey"]
    assert isinstance(identity, SecretValue)
    snapshot = b"etcd snapshot bytes " * 1000
    sealed = pyrage.encrypt(snapshot, [pyrage.x25519.Recipient.from_str(env["AGE_X25519_PUBLIC_KEY"])])
    assert pyrage.decrypt(sealed, [pyrage.x25519.Identity.from_str(identity.value)]) == snapshot


def _restic_secrets(sim: Simulation) -> dict[str, dict[str, str]]:
    """Each rendered restic Secret's data (namespace/name -> stringData), as the program registers it."""
    found: dict[str, dict[str, str]] = {}
    for reg in sim.registrations:
        if reg.type == "kubernetes:core/v1:Secret" and reg.inputs["metadata"]["name"].endswith("-restic"):
            data = reg.inputs["stringData"]
            assert isinstance(data, SecretValue), f"{reg.name}: its data is a Pulumi secret as a whole"
            found[f"{reg.inputs['metadata']['namespace']}/{reg.inputs['metadata']['name']}"] = dict(data.value)
    return found


def _restic(repo: Path, password: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(repo.parent), "RESTIC_PASSWORD": password, "RESTIC_CACHE_DIR": str(repo.parent / "cache")}
    return subprocess.run(["restic", "-r", str(repo), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(shutil.which("restic") is None, reason="restic is a Debian package (scripts/prerequisites.sh installs it)")
def test_restic_backs_up_and_restores_with_the_rendered_password_and_refuses_another(homelab: Simulation, tmp_path: Path) -> None:
    stack = load_stack_file(HOMELAB)
    rendered = _restic_secrets(homelab)
    # Headscale's state has a repository of its own (plans.remote_access.state_repository; its backup and restore are
    # run in tests/plans/test_remote_access_backup.py): its password is its own too.
    headscale = rendered.pop("remote-access/headscale-restic")
    # Its drill on Arda (plans.drill.headscale_secret) opens the same repository with the same password and keys.
    assert rendered.pop("backup-drill/drill-headscale-restic") == headscale
    assert headscale["RESTIC_REPOSITORY"] not in {d["RESTIC_REPOSITORY"] for d in rendered.values()}
    assert headscale["RESTIC_PASSWORD"] not in {d["RESTIC_PASSWORD"] for d in rendered.values()}
    expected = {
        f"{a.namespace}/{backup_plan.restic_secret_name(v.claim)}": (a, v.claim)
        for a in backup_plan.apps(stack)
        for v in (a.backup.volumes if a.backup else ())
    }
    assert set(rendered) == set(expected), "one restic Secret per backed-up volume"
    for key, (app, claim) in expected.items():
        assert rendered[key]["RESTIC_REPOSITORY"] == backup_plan.repository(stack, app, claim)
        assert set(rendered[key]) == {"RESTIC_REPOSITORY", "RESTIC_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
    passwords = [d["RESTIC_PASSWORD"] for d in rendered.values()]
    assert len(set(passwords)) == len(passwords) >= 2, "each volume has a password of its own"
    assert all(len(p) == 32 for p in passwords)
    (first, mine), (_, other) = sorted(rendered.items())[:2]
    # The repository as restic spells it (s3:<endpoint>/<bucket>/<folder>); there is no S3 service here, so
    # the same bucket and folder on a local disk: the repository format and its key are the same.
    url = mine["RESTIC_REPOSITORY"]
    assert url.startswith("s3:http://192.168.0.40:9000/homelab/volsync/"), url
    repo = tmp_path / "bucket" / url.removeprefix("s3:http://192.168.0.40:9000/")
    volume = tmp_path / "volume"
    (volume / "db").mkdir(parents=True)
    (volume / "db" / "home-assistant_v2.db").write_bytes(os.urandom(4096))
    (volume / "configuration.yaml").write_text("homeassistant:\n  name: Home\n")
    password = mine["RESTIC_PASSWORD"]
    for step in (("init",), ("backup", "--host", "volsync", "."), ("check",)):
        done = _restic(repo, password, *step, cwd=volume)
        assert done.returncode == 0, (step, done.stderr)
    restored = tmp_path / "restored"
    done = _restic(repo, password, "restore", "latest", "--target", str(restored))
    assert done.returncode == 0, done.stderr
    assert {p.relative_to(restored).as_posix(): p.read_bytes() for p in restored.rglob("*") if p.is_file()} == {
        p.relative_to(volume).as_posix(): p.read_bytes() for p in volume.rglob("*") if p.is_file()
    }, first
    # Another volume's password, or one character off, does not open it.
    for wrong in (other["RESTIC_PASSWORD"], password[:-1] + ("a" if password[-1] != "a" else "b")):
        refused = _restic(repo, wrong, "snapshots")
        assert refused.returncode != 0
        assert "wrong password" in refused.stderr, refused.stderr


CANARY = "CANARY-4f1d9e2b7c"


def test_no_secret_value_reaches_a_render_a_scaffold_a_configmap_or_an_application(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    real = sim_module.pulumi_config

    def planted(sf: Any) -> tuple[dict[str, str], list[str]]:
        config, secret_keys = real(sf)
        config["iluvatar:appSecrets"] = json.dumps({"home-assistant": {"WEATHER_API_KEY": f"{CANARY}-user"}})
        config["iluvatar:backupS3SecretAccessKey"] = f"{CANARY}-s3"
        config["iluvatar:backupS3AccessKeyId"] = f"{CANARY}-s3-id"
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
    # The age identity that opens Arda's etcd snapshots: an output, secret; never in an input or the render.
    identity = sim.outputs["backupAgeKey"]
    assert isinstance(identity, SecretValue) and identity.value.startswith("AGE-SECRET-KEY-1")
    for reg in sim.registrations:
        text = json.dumps(reg.inputs, default=lambda v: "<secret>" if isinstance(v, SecretValue) else str(v))
        assert identity.value not in text, f"{reg.name} carries the age identity"
    rendered = render_mod.render_files(sim)
    assert rendered, "the render has files"
    for name, text in rendered.items():
        assert CANARY not in text, name
        assert identity.value not in text, name
    # What the program logs (the engine's log messages, and anything printed) carries none either.
    logged = caplog.text + "".join(capsys.readouterr())
    assert CANARY not in logged and identity.value not in logged
    layout = scaffold.files(load_stack_file(HOMELAB))
    assert all(CANARY not in text for text in layout.values())


def test_the_program_imports_in_its_own_order() -> None:
    """`pulumi up` starts a fresh interpreter on __main__.py, whose first import is components.ainur: plans.talos
    reaching plans.backup at import time closed a cycle (backup -> gitops -> cilium -> talos) the tests never saw."""
    program = (Path(__file__).resolve().parent.parent / "__main__.py").read_text()
    imports = [line.split()[1] for line in program.splitlines() if line.startswith("from ") and line.split()[1] not in ("__future__",)]
    script = "import importlib\nfor name in " + repr(imports) + ":\n    importlib.import_module(name)\n"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
