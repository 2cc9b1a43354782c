"""The KMS plan (plans.kms): Talos's endpoint, the objects on the Ainur, and the pod's build of the server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from iluvatar.golang import go_binary, go_env
from plans import kms
from stacks import load_stack_file
from stacks.model import StackConfig
from tests.edit import HOMELAB, RK1


@pytest.fixture(scope="module")
def homelab() -> StackConfig:
    return load_stack_file(HOMELAB)


def by_kind(stack: StackConfig) -> dict[str, dict[str, Any]]:
    """The objects by kind; the two ConfigMaps by name."""
    return {m["metadata"]["name"] if m["kind"] == "ConfigMap" else m["kind"]: m for m in kms.manifests(stack)}


def test_the_endpoint_is_talos_form_on_the_service_address(homelab: StackConfig) -> None:
    assert homelab.ainur is not None
    assert str(homelab.ainur.service_ip) == "192.168.0.14"
    assert kms.endpoint(homelab) == "https://192.168.0.14:4050"
    assert kms.certificate_ips(homelab) == ["192.168.0.14"]
    assert kms.certificate_names(homelab) == ["kms.iluvatar.home.arpa"]


def test_no_ainur_no_kms() -> None:
    assert kms.enabled(load_stack_file(RK1)) is False


def test_only_the_arda_machines_reach_the_port(homelab: StackConfig) -> None:
    policy = by_kind(homelab)["NetworkPolicy"]
    assert policy["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "kms", "app.kubernetes.io/part-of": "iluvatar"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [{"ipBlock": {"cidr": f"192.168.0.{host}/32"}} for host in (21, 22, 23, 31, 32)],
                "ports": [{"protocol": "TCP", "port": 4050}],
            }
        ],
    }


def test_the_server_answers_only_the_arda_machines_itself(homelab: StackConfig) -> None:
    """Host-network processes on the Pi reach the pod whatever the NetworkPolicy says: the server reads the same list
    from its ConfigMap (at every call, so a machine added rolls no pod) and refuses every other caller."""
    admitted = by_kind(homelab)["kms-admitted"]
    assert admitted["data"] == {"cidrs": "".join(f"192.168.0.{host}/32\n" for host in (21, 22, 23, 31, 32))}
    pod = by_kind(homelab)["DaemonSet"]["spec"]["template"]["spec"]
    assert "--admitted=/etc/kms/admitted/cidrs" in pod["containers"][0]["command"]
    assert {"name": "admitted", "mountPath": "/etc/kms/admitted", "readOnly": True} in pod["containers"][0]["volumeMounts"]
    assert {"name": "admitted", "configMap": {"name": "kms-admitted"}} in pod["volumes"]


def test_the_service_takes_the_service_address_without_a_second_kube_vip_election(homelab: StackConfig) -> None:
    service = by_kind(homelab)["Service"]
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": {"app.kubernetes.io/name": "kms", "app.kubernetes.io/part-of": "iluvatar"},
        "externalIPs": ["192.168.0.14"],
        "externalTrafficPolicy": "Local",
        "ports": [{"name": "kms", "port": 4050, "targetPort": "kms", "protocol": "TCP"}],
    }
    assert "annotations" not in service["metadata"]


def test_the_key_is_in_no_object_but_its_secret(homelab: StackConfig) -> None:
    """The plan's objects never carry the key: only the component's Secret does, from the Pulumi secret."""
    marker = "S0VZLUlOLUNMRUFSLTMyLWJ5dGVzLW9mLWtleQ=="
    assert marker not in json.dumps(kms.manifests(homelab))
    assert kms.key_secret(marker) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "kms-key", "namespace": "kms", "labels": {"app.kubernetes.io/name": "kms", "app.kubernetes.io/part-of": "iluvatar"}},
        "type": "Opaque",
        "stringData": {"key": marker},
    }
    pod = by_kind(homelab)["DaemonSet"]["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert server["command"] == [
        "/opt/kms/kms-server",
        "--listen=:4050",
        "--key=/etc/kms/key/key",
        "--tls-cert=/etc/kms/tls/tls.crt",
        "--tls-key=/etc/kms/tls/tls.key",
        "--admitted=/etc/kms/admitted/cidrs",
    ]
    assert "env" not in server
    assert {"name": "key", "secret": {"secretName": "kms-key", "defaultMode": 0o440}} in pod["volumes"]
    assert pod["automountServiceAccountToken"] is False
    assert server["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "runAsNonRoot": True,
    }


def test_the_configmap_carries_the_sources_the_tests_build(homelab: StackConfig) -> None:
    config_map = by_kind(homelab)["kms-server"]
    assert sorted(config_map["data"]) == ["go.mod", "go.sum", "main.go"]
    assert config_map["data"]["main.go"] == (kms.SERVER_DIR / "main.go").read_text()
    assert "github.com/siderolabs/kms-client v0.2.0" in config_map["data"]["go.mod"]


def test_a_change_of_the_sources_rolls_the_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, homelab: StackConfig) -> None:
    before = by_kind(homelab)["DaemonSet"]["spec"]["template"]["metadata"]["annotations"]["iluvatar/kms-server-digest"]
    for name in kms.SERVER_FILES:
        shutil.copy(kms.SERVER_DIR / name, tmp_path / name)
    (tmp_path / "main.go").write_text((tmp_path / "main.go").read_text() + "\n// changed\n")
    monkeypatch.setattr(kms, "SERVER_DIR", tmp_path)
    after = by_kind(homelab)["DaemonSet"]["spec"]["template"]["metadata"]["annotations"]["iluvatar/kms-server-digest"]
    assert before != after
    assert f"kms-server-{after}" in kms.build_script(after)


def test_the_pods_build_makes_the_server_once_per_digest(tmp_path: Path) -> None:
    """The init container's script, with its paths moved under tmp_path, run by sh with the pod's Go settings."""
    digest = kms.sources_digest()
    src, cache, scratch, out = (tmp_path / d for d in ("src", "cache", "scratch", "opt"))
    for folder in (src, scratch, out):
        folder.mkdir()
    for name, body in kms.server_sources().items():
        (src / name).write_text(body)
    script = (
        kms.build_script(digest)
        .replace(" /src/", f" {src}/")
        .replace(kms.HOST_CACHE, str(cache))
        .replace(kms.SCRATCH, str(scratch))
        .replace("/opt/kms", str(out))
    )
    pod = next(c for c in kms.daemon_set()["spec"]["template"]["spec"]["initContainers"] if c["name"] == "build")
    env = {e["name"]: e["value"] for e in pod["env"]}
    # The tests' module cache stands for the Pi's (the modules are the same, checked against go.sum); GOPROXY=off: nothing
    # is fetched that the cache does not hold. So the server's modules are fetched into it first, through the proxy the
    # tests use: on a machine whose cache is new, no other test need have fetched them yet.
    fetched = subprocess.run([go_binary(), "mod", "download"], cwd=src, env=go_env(), capture_output=True, text=True, timeout=600)
    assert fetched.returncode == 0, fetched.stderr
    run_env = {
        **os.environ,
        **env,
        "GOMODCACHE": go_env()["GOMODCACHE"],
        "GOCACHE": go_env()["GOCACHE"],
        "HOME": str(scratch),
        # The pod's root file system is read-only: a temporary folder it does not name is one nothing can write.
        "GOTMPDIR": env.get("GOTMPDIR", "/nonexistent").replace(kms.SCRATCH, str(scratch)),
        "TMPDIR": env.get("TMPDIR", "/nonexistent").replace(kms.SCRATCH, str(scratch)),
        "GOPROXY": "off",
        "PATH": f"{Path(go_binary()).parent}:{os.environ['PATH']}",
    }
    first = subprocess.run(["sh", "-c", script], env=run_env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    built = cache / "bin" / f"kms-server-{digest}"
    assert built.is_file()
    assert (out / "kms-server").read_bytes() == built.read_bytes()
    assert sorted(p.name for p in (cache / "bin").iterdir()) == [f"kms-server-{digest}"]
    # A restart: the binary is there, nothing is built (no Go at all on the PATH).
    (out / "kms-server").unlink()
    again = subprocess.run(["sh", "-c", script], env={**run_env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert (out / "kms-server").read_bytes() == built.read_bytes()


def test_the_key_never_goes_to_a_netbooted_maia(homelab: StackConfig) -> None:
    """A netbooted maia's kubelet identity is no secret (docs/security.md): no KMS pod, so no key Secret, is bound there."""
    pod = by_kind(homelab)["DaemonSet"]["spec"]["template"]["spec"]
    assert pod["affinity"] == {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "iluvatar/boot", "operator": "NotIn", "values": ["netboot"]}]}]
            }
        }
    }
    assert [t for t in pod["tolerations"] if t.get("key") == "iluvatar/boot" or "key" not in t] == []


def test_the_key_backup_is_uploaded_from_arda_with_talos_backups_keys_on_the_etcd_schedule(homelab: StackConfig) -> None:
    stack = homelab
    cronjob = kms.backup_cronjob(stack)
    assert (cronjob["metadata"]["namespace"], cronjob["metadata"]["name"]) == ("etcd-backup", "kms-key-backup")
    assert cronjob["spec"]["schedule"] == "0 */6 * * *"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["env"] == [
        {"name": "S3_ENDPOINT", "value": "http://192.168.0.40:9000"},
        {"name": "S3_BUCKET", "value": "homelab"},
        {"name": "S3_PREFIX", "value": "kms"},
        {"name": "AWS_REGION", "value": "us-east-1"},
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "talos-backup-s3", "key": "AWS_ACCESS_KEY_ID"}}},
        {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "talos-backup-s3", "key": "AWS_SECRET_ACCESS_KEY"}}},
    ]
    # The file only (ciphertext), no account token, nobody, nothing writable.
    assert pod["volumes"] == [{"name": "backup", "configMap": {"name": "kms-key-backup"}}]
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["runAsUser"] == 65534 and container["securityContext"]["readOnlyRootFilesystem"] is True
    assert kms.backup_configmap("armored")["data"] == {"kms-key.age": "armored"}


def test_without_arda_s_etcd_on_an_s3_target_the_key_is_not_uploaded(homelab: StackConfig) -> None:
    assert kms.backup_enabled(homelab) is True
    assert kms.backup_enabled(load_stack_file(RK1)) is False  # no Ainur, no KMS
