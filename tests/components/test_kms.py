"""The KMS component under the mock runtime: its key protected and secret end to end, its certificate for the address."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

from iluvatar.simulate import SecretValue, Simulation
from plans import kms as kms_plan
from stacks import encryption
from tests.edit import RK1
from tests.sims import simulated
from tools import gotools


def test_the_key_is_protected_and_secret_end_to_end(homelab: Simulation) -> None:
    key = homelab.one("random:index/randomBytes:RandomBytes", "kms-key")
    assert key.protect is True
    assert key.inputs == {"length": 32}
    assert set(key.additional_secret_outputs) >= {"base64", "hex"}
    secret = homelab.one("kubernetes:core/v1:Secret", "kms-secret-kms-key")
    assert secret.secret_inputs == ("stringData",)
    assert set(secret.additional_secret_outputs) >= {"data", "stringData"}
    # Deleted with the Ainur, as every object of theirs; the key itself is not a Kubernetes object and stays.
    assert secret.deleted_with != ""
    assert key.deleted_with == ""


def test_the_certificate_names_the_endpoints_address(homelab: Simulation) -> None:
    request = homelab.one("tls:index/certRequest:CertRequest", "kms-tls-request")
    assert request.inputs["ipAddresses"] == ["192.168.0.14"]
    assert request.inputs["dnsNames"] == ["kms.iluvatar.home.arpa"]
    # Dex's certificate, issued before addresses could be named, keeps its inputs as they were.
    assert "ipAddresses" not in homelab.one("tls:index/certRequest:CertRequest", "identity-dex-request").inputs


def test_without_the_ainur_there_is_no_kms() -> None:
    assert [r.name for r in simulated(RK1).registrations if r.name.startswith("kms")] == []


def test_the_key_backup_opens_with_the_backups_age_key_and_gives_the_key_the_ainur_serve(homelab: Simulation, tmp_path: Path) -> None:
    """The "Ainur lost" runbook's second path: from `kmsKeyBackup` and `backupAgeKey` alone, with age itself, the key
    the KMS Secret holds; the backup itself is no secret (ciphertext), the key is."""
    backup = homelab.outputs["kmsKeyBackup"]
    assert isinstance(backup, str)
    assert backup.startswith("-----BEGIN AGE ENCRYPTED FILE-----\n")
    identity = homelab.outputs["backupAgeKey"]
    key = homelab.outputs["kmsKey"]
    assert isinstance(identity, SecretValue) and isinstance(key, SecretValue)
    (tmp_path / "age.key").write_text(identity.value + "\n")
    (tmp_path / "kms-key.age").write_text(backup)
    command = [str(gotools.build("age")), "--decrypt", "-i", str(tmp_path / "age.key"), str(tmp_path / "kms-key.age")]
    done = subprocess.run(command, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == base64.b64decode(key.value)
    secret = homelab.one("kubernetes:core/v1:Secret", "kms-secret-kms-key")
    served = secret.inputs["stringData"]
    assert (served.value if isinstance(served, SecretValue) else served) == {"key": key.value}


def test_the_key_backup_on_arda_is_the_output_s_file_and_the_drill_checks_the_live_key_s_canary(homelab: Simulation) -> None:
    """The file the upload sends to the backup target is `kmsKeyBackup` (ciphertext, not a secret), it waits for
    talos-backup's S3 Secret it reads, and the drill unseals the canary of the key the Ainur serve."""
    key = homelab.outputs["kmsKey"]
    assert isinstance(key, SecretValue)
    configmap = homelab.one("kubernetes:core/v1:ConfigMap", "data-backup-configmap-kms-key-backup")
    assert configmap.inputs["data"] == {"kms-key.age": homelab.outputs["kmsKeyBackup"]}
    assert configmap.secret_inputs == ()
    upload = homelab.one("kubernetes:batch/v1:CronJob", "data-backup-cronjob-kms-key-backup")
    names = {r.urn: r.name for r in homelab.registrations}
    assert {"data-backup-secret-talos-backup-s3", "data-backup-configmap-kms-key-backup"} <= {names[u] for u in upload.dependencies}
    drill = homelab.one("kubernetes:batch/v1:CronJob", "data-drill-cronjob-drill-kms-key")
    env = {e["name"]: e["value"] for e in drill.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
    assert env["CANARY"] == kms_plan.canary(key.value)
    assert env["S3_PREFIX"] == "kms"
    # The object it fetches is the one the upload writes that very file to (its bytes' SHA-256), and the key's id the
    # next preview compares a restored key with is the served key's.
    digest = hashlib.sha256(configmap.inputs["data"]["kms-key.age"].encode()).hexdigest()[:16]
    assert env["OBJECT"] == f"kms/kms-key-{digest}.age"
    key_id = homelab.outputs[encryption.KMS_KEY_ID_OUTPUT]
    assert isinstance(key_id, SecretValue) and key_id.value == encryption.kms_key_id(key.value)
