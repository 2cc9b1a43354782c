"""The Ainur's KMS server, run as the pod runs it (the same sources, plans.kms), with a client that speaks to it as
Talos v1.13.9's kms key handler does (tools/kms-client), and Debian's cryptsetup formatting and opening a LUKS2
volume with the passphrase the KMS unsealed, as Talos does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pytest

from iluvatar import golang
from iluvatar.simulate import SecretValue, Simulation, simulate
from plans import age, kms
from stacks import encryption, load_stack_file
from stacks.load import StackFile
from stacks.secrets import Secure
from tests import runbook
from tests.edit import HOMELAB, homelab_stack_file
from tests.sims import outputs_of, simulated
from tools import gotools

NODE = "4c4c4544-0042-3510-8052-b4c04f4a4d32"
OTHER_NODE = "4c4c4544-0042-3510-8052-b4c04f4a4d33"
HOST = "127.0.0.1"


def server_binary() -> Path:
    return golang.build(golang.Program("kms-server", kms.SERVER_DIR))


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a server certificate of it for the endpoint's address, as components.local_ca issues one."""
    root = tmp_path_factory.mktemp("kms-pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl("req", "-x509", *ec, "-days", "1", "-keyout", str(root / "ca.key"), "-out", str(root / "ca.crt"), "-subj", "/CN=kms test CA")
    openssl("req", *ec, "-keyout", str(root / "tls.key"), "-out", str(root / "tls.csr"), "-subj", f"/CN={HOST}")
    (root / "ext").write_text(f"subjectAltName=IP:{HOST}\nextendedKeyUsage=serverAuth\n")
    openssl(
        "x509", "-req", "-in", str(root / "tls.csr"), "-CA", str(root / "ca.crt"), "-CAkey", str(root / "ca.key"), "-CAcreateserial",
        "-days", "1", "-out", str(root / "tls.crt"), "-extfile", str(root / "ext"),
    )  # fmt: skip
    (root / "other-ca.crt").write_bytes(b"")
    openssl("req", "-x509", *ec, "-days", "1", "-keyout", str(root / "other-ca.key"), "-out", str(root / "other-ca.crt"), "-subj", "/CN=another CA")
    return root


def new_key(path: Path) -> Path:
    path.write_text(base64.b64encode(os.urandom(32)).decode())
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    log: list[str]

    @property
    def endpoint(self) -> str:
        return f"https://{HOST}:{self.port}"

    def stop(self) -> str:
        self.process.terminate()
        rest, _ = self.process.communicate(timeout=30)
        self.log.append(rest)
        return "".join(self.log)


def admitting(path: Path, *cidrs: str) -> Path:
    """The server's --admitted file (plans.kms.admitted_file's form): the test's address among an Arda machine's."""
    path.write_text("".join(f"{c}\n" for c in cidrs or ("192.168.0.21/32", f"{HOST}/32")))
    return path


def start(key: Path, pki: Path, port: int = 0, admitted: Path | None = None) -> Server:
    """The server with the pod's arguments (plans.kms.daemon_set), on a local port; returns once it serves (its line)."""
    admitted = admitted or admitting(key.parent / f"{key.name}.admitted")
    args = [f"--listen={HOST}:{port}", f"--key={key}", f"--tls-cert={pki / 'tls.crt'}", f"--tls-key={pki / 'tls.key'}", f"--admitted={admitted}"]
    process = subprocess.Popen([str(server_binary()), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    log: list[str] = []
    for line in process.stdout:
        log.append(line)
        if found := re.search(r"serving on 127\.0\.0\.1:(\d+)$", line.strip()):
            return Server(process, int(found.group(1)), log)
    process.wait(timeout=30)
    raise AssertionError(f"the KMS server ended before serving: {''.join(log)}")


@pytest.fixture
def server(tmp_path: Path, pki: Path) -> Iterator[Server]:
    running = start(new_key(tmp_path / "key"), pki)
    yield running
    if running.process.poll() is None:
        running.stop()


def client(op: str, endpoint: str, ca: Path, node: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [str(gotools.build("kms-client")), op, f"--endpoint={endpoint}", f"--ca={ca}", f"--node={node}", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def seal(server: Server, pki: Path, node: str = NODE) -> dict[str, str]:
    done = client("seal", server.endpoint, pki / "ca.crt", node)
    assert done.returncode == 0, done.stderr
    sealed: dict[str, str] = json.loads(done.stdout)
    return sealed


def unseal(endpoint: str, pki: Path, node: str, sealed: str) -> subprocess.CompletedProcess[str]:
    return client("unseal", endpoint, pki / "ca.crt", node, f"--sealed={sealed}")


def refusal(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stdout
    return done.stderr.splitlines()[-1].split(":")[1].strip()


def test_seal_then_unseal_gives_the_passphrase_back(server: Server, pki: Path) -> None:
    sealed = seal(server, pki)
    # Talos's passphrase is the 32 random bytes in base64 (kms.go:92); the blob is version, nonce, ciphertext and tag.
    assert len(base64.b64decode(sealed["passphrase"])) == 32
    assert len(base64.b64decode(sealed["sealed"])) == 1 + 12 + 32 + 16
    done = unseal(server.endpoint, pki, NODE, sealed["sealed"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"passphrase": sealed["passphrase"]}


def test_a_replayed_unseal_gives_the_same_passphrase_and_a_new_seal_a_new_blob(server: Server, pki: Path) -> None:
    """Talos unseals the same blob at every boot, so a replay of the request answers the same; a seal never repeats a blob."""
    sealed = seal(server, pki)
    answers = [json.loads(unseal(server.endpoint, pki, NODE, sealed["sealed"]).stdout) for _ in range(2)]
    assert answers == [{"passphrase": sealed["passphrase"]}] * 2
    assert seal(server, pki)["sealed"] != sealed["sealed"]


def test_another_nodes_blob_is_refused(server: Server, pki: Path) -> None:
    sealed = seal(server, pki)
    assert refusal(unseal(server.endpoint, pki, OTHER_NODE, sealed["sealed"])) == "PermissionDenied"
    # The same node in upper case is the same node (SMBIOS UUIDs are read in either case).
    done = unseal(server.endpoint, pki, NODE.upper(), sealed["sealed"])
    assert json.loads(done.stdout) == {"passphrase": sealed["passphrase"]}


def test_a_tampered_blob_is_refused(server: Server, pki: Path) -> None:
    blob = bytearray(base64.b64decode(seal(server, pki)["sealed"]))
    for index in (1, 13, len(blob) - 1):  # the nonce, the ciphertext, the tag
        altered = bytearray(blob)
        altered[index] ^= 0x01
        assert refusal(unseal(server.endpoint, pki, NODE, base64.b64encode(altered).decode())) == "PermissionDenied"
    assert refusal(unseal(server.endpoint, pki, NODE, base64.b64encode(blob[:-1]).decode())) == "InvalidArgument"
    assert refusal(client("seal", server.endpoint, pki / "ca.crt", "not-a-uuid")) == "InvalidArgument"


def test_a_blob_of_another_kms_key_is_refused_and_the_restored_key_opens_it(tmp_path: Path, pki: Path) -> None:
    """The "Ainur lost" runbook's core: only the backed-up key opens the machines' blobs, a new key does not."""
    key = new_key(tmp_path / "key")
    first = start(key, pki)
    sealed = seal(first, pki)
    first.stop()
    fresh = start(new_key(tmp_path / "fresh"), pki)
    assert refusal(unseal(fresh.endpoint, pki, NODE, sealed["sealed"])) == "PermissionDenied"
    fresh.stop()
    restored = tmp_path / "restored"
    shutil.copy(key, restored)
    again = start(restored, pki)
    done = unseal(again.endpoint, pki, NODE, sealed["sealed"])
    again.stop()
    assert json.loads(done.stdout) == {"passphrase": sealed["passphrase"]}


def test_the_real_server_unseals_the_canary_the_program_seals_and_only_under_its_key(tmp_path: Path, pki: Path) -> None:
    """The key's restore drill checks the key against plans.kms.canary: a blob the server itself opens, for its node only."""
    key = new_key(tmp_path / "key")
    running = start(key, pki)
    blob = kms.canary(key.read_text())
    done = unseal(running.endpoint, pki, kms.CANARY_NODE, blob)
    other = unseal(running.endpoint, pki, NODE, blob)
    running.stop()
    assert json.loads(done.stdout) == {"passphrase": base64.b64encode(kms.CANARY_PLAINTEXT).decode()}
    assert refusal(other) == "PermissionDenied"
    # The same key gives the same blob (no diff at every run); another key another one, which this server refuses.
    assert kms.canary(key.read_text()) == blob
    assert kms.canary(base64.b64encode(os.urandom(32)).decode()) != blob


RUNBOOK = ("docs/layers/ainur.md", "### The Ainur lost")


def age_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose `age` is age v1.3.1 itself (tools/age), as the runbook's reader has it, and coreutils."""
    folder = tmp_path / "bin"
    if not folder.exists():
        folder.mkdir()
        (folder / "age").symlink_to(gotools.build("age"))
    return {"PATH": f"{folder}:/usr/bin:/bin"}


# A stand-in for the Pulumi CLI's `config set --secret <key>` with no value on the line: it reads the value from its
# stdin when that is no terminal and drops one trailing newline (pkg/cmd/pulumi/config/config.go, `case
# !term.IsTerminal(...)`: io.ReadAll, cmdutil.RemoveTrailingNewline). It writes {key: value} to pulumi-config.json.
STANDIN_PULUMI = """#!/usr/bin/env python3
import json, pathlib, sys
args = sys.argv[1:]
if args[:3] != ["config", "set", "--secret"] or len(args) != 4:
    sys.exit(f"stand-in pulumi: {args} is not stood in")
value = sys.stdin.read()
value = value[:-1] if value.endswith("\\n") else value
store = pathlib.Path("pulumi-config.json")
config = json.loads(store.read_text()) if store.exists() else {}
config[args[3]] = value
store.write_text(json.dumps(config))
"""


def restored_run(config: dict[str, str], previous: dict[str, object] | None = None) -> Simulation:
    """The program (`pulumi up`) on the homelab with the secrets `config` set as `pulumi config set --secret` sets them."""
    sf = homelab_stack_file()
    with_config = StackFile(sf.path, {**sf.config, **config}, sf.secret_keys | set(config), sf.secrets_manager, sf.imports_environment)
    return simulate(with_config, previous=previous)


@pytest.fixture(scope="module")
def restored() -> tuple[str, Simulation]:
    """A random key restored (`kmsKeyRestore`) and the first `up` with it, made once for the module: the tests that
    start from a deployment that restored a key read its outputs only."""
    key = base64.b64encode(os.urandom(32)).decode()
    return key, restored_run({"iluvatar:kmsKeyRestore": key})


def desk_with(tmp_path: Path, backup: str, identity: bytes, live: str) -> tuple[Path, dict[str, str]]:
    """The operator's folder as the runbook has it ready: the downloaded age file, `backupAgeKey`, and the name of the
    live key's object as Arda's drill names it (`live`); and an environment with age and the stand-in `pulumi`."""
    desk = tmp_path / "desk"
    desk.mkdir()
    (desk / "kms-key.age").write_text(backup)
    (desk / "backup-age.key").write_text(age.identity(identity) + "\n")
    (desk / "object.txt").write_text(live + "\n")
    tools = tmp_path / "cli"
    tools.mkdir()
    (tools / "pulumi").write_text(STANDIN_PULUMI)
    (tools / "pulumi").chmod(0o755)
    env = age_path(tmp_path)
    env["PATH"] = f"{tools}:{env['PATH']}"
    return desk, env


def run_runbook(desk: Path, env: dict[str, str]) -> tuple[int, subprocess.CompletedProcess[str]]:
    """The runbook's commands, read from the page, run as written one after the other until one fails: its index and
    its result (the last's when none fails)."""
    said = runbook.commands(*RUNBOOK)
    for n, line in enumerate(said):
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=desk, env=env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            return n, done
    return len(said), done


IDENTITY = hashlib.sha256(b"the stack's backup age identity, for the test").digest()


def test_the_ainur_lost_runbook_restores_the_key_and_a_new_server_unseals(tmp_path: Path, pki: Path) -> None:
    """The Ainur and Pulumi's state lost: the key comes back from its age-encrypted backup by the runbook's own commands
    (read from the page, run as written, `pulumi config set` by a stand-in), the program run on that config serves that
    key with none generated, and a new server with the key the program's Secret holds unseals what the old one sealed."""
    key = new_key(tmp_path / "key")
    first = start(key, pki)
    sealed = seal(first, pki)
    first.stop()
    old = key.read_text().strip()
    backup = kms.key_backup(old, age.recipient(IDENTITY))
    key.unlink()  # the Ainur lost: the server, its Secret and Pulumi's state with them
    desk, env = desk_with(tmp_path, backup, IDENTITY, kms.backup_object(load_stack_file(HOMELAB), backup))
    said = runbook.commands(*RUNBOOK)
    assert said == [
        "umask 077",
        'test "$(basename "$(cat object.txt)")" = "kms-key-$(sha256sum <kms-key.age | cut -c1-16).age"',
        'test "$(age --decrypt -i backup-age.key kms-key.age | wc -c)" -eq 32',
        "age --decrypt -i backup-age.key kms-key.age | base64 -w 0 | pulumi config set --secret iluvatar:kmsKeyRestore",
    ]
    # The key is on no command line: only `config set`'s stdin carries it.
    assert not [line for line in said if old in line or "kmsKeyRestore " in line]
    n, done = run_runbook(desk, env)
    assert n == len(said), (said[n], done.stderr)
    assert sorted(f.name for f in desk.iterdir()) == ["backup-age.key", "kms-key.age", "object.txt", "pulumi-config.json"], "no key in clear left"
    config = json.loads((desk / "pulumi-config.json").read_text())
    assert config == {"iluvatar:kmsKeyRestore": old}
    # `pulumi up` on that config: the restored key is the KMS's, none generated, and the output says it was restored.
    run = restored_run(config)
    assert [r.name for r in run.registrations if r.type.startswith("random:") and r.name.startswith("kms-")] == []
    served = run.one("kubernetes:core/v1:Secret", "kms-secret-kms-key").inputs["stringData"]
    served_key = (served.value if isinstance(served, SecretValue) else served)["key"]
    assert served_key == old
    assert run.outputs[kms.RESTORED_OUTPUT] is True
    restored = tmp_path / "restored"
    restored.write_text(served_key)
    again = start(restored, pki)
    done = unseal(again.endpoint, pki, NODE, sealed["sealed"])
    again.stop()
    assert json.loads(done.stdout) == {"passphrase": sealed["passphrase"]}


def test_a_restored_key_cannot_be_unset_once_used(restored: tuple[str, Simulation]) -> None:
    """After an `up` with the restored key, one without it would generate a new key that opens nothing: refused, naming
    the key and the fix."""
    key, first = restored
    previous = outputs_of(first)
    assert previous[kms.RESTORED_OUTPUT] is True
    with pytest.raises(pulumi.RunError) as refused:
        simulate(homelab_stack_file(), previous=previous)
    assert "iluvatar:kmsKeyRestore: is unset, but the KMS key in use was restored from its backup by it" in str(refused.value)
    # With it set again, the next run goes on.
    assert restored_run({"iluvatar:kmsKeyRestore": key}, previous=previous).outputs[kms.RESTORED_OUTPUT] is True


def test_a_restored_key_that_is_changed_is_refused_at_preview_naming_the_key(restored: tuple[str, Simulation]) -> None:
    """Set to another key (an older backup, another stack's) once a key is in use, the run stops before any resource,
    as an unset one does: the last deployment's id of its key (a secret output, an HMAC under the key) differs."""
    key, first = restored
    exported = first.outputs[encryption.KMS_KEY_ID_OUTPUT]
    assert isinstance(exported, SecretValue) and exported.value == encryption.kms_key_id(key)
    assert key not in json.dumps(encryption.kms_key_id(key))
    # As the engine's readStackOutputs hands it to the program: the secret's value (the SDK's sync invoke unwraps it),
    # or in its wire form; both are read.
    for last in (exported.value, {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": exported.value}):
        previous = {**outputs_of(first), encryption.KMS_KEY_ID_OUTPUT: last}
        other = base64.b64encode(os.urandom(32)).decode()
        with pytest.raises(pulumi.RunError) as refused:
            restored_run({"iluvatar:kmsKeyRestore": other}, previous=previous)
        assert "iluvatar:kmsKeyRestore: is not the KMS key the last deployment served (its id differs from the stack output kmsKeyId)" in str(
            refused.value
        )
        assert other not in str(refused.value) and key not in str(refused.value)
        # The same key, written with a trailing newline as a pipe may give it, goes on.
        assert restored_run({"iluvatar:kmsKeyRestore": key + "\n"}, previous=previous).outputs[kms.RESTORED_OUTPUT] is True


def test_a_generated_key_in_use_is_not_replaced_by_a_restore_value_of_another_key() -> None:
    """The last deployment served a generated key: a kmsKeyRestore of another key is refused at preview already."""
    first = simulated(HOMELAB)  # simulate(homelab_stack_file()), shared by the process's tests
    exported = first.outputs[encryption.KMS_KEY_ID_OUTPUT]
    assert isinstance(exported, SecretValue)
    previous = {**outputs_of(first), encryption.KMS_KEY_ID_OUTPUT: exported.value}
    with pytest.raises(pulumi.RunError, match=r"iluvatar:kmsKeyRestore: is not the KMS key the last deployment served"):
        restored_run({"iluvatar:kmsKeyRestore": base64.b64encode(os.urandom(32)).decode()}, previous=previous)


def test_a_stack_file_holding_the_restored_key_encrypted_renders_offline(restored: tuple[str, Simulation]) -> None:
    """`iluvatar render` (offline) sees a `secure:` value as the placeholder: the program renders with a stand-in key,
    judging nothing it cannot read, and says the key is the restored one; a previous id is not compared with it."""
    sf = homelab_stack_file()
    config = {**sf.config, "iluvatar:kmsKeyRestore": Secure("v1:bm90IHJlYWQgb2ZmbGluZQ==")}
    encrypted = StackFile(sf.path, config, sf.secret_keys | {"iluvatar:kmsKeyRestore"}, sf.secrets_manager, sf.imports_environment)
    previous = {**outputs_of(restored[1]), "kmsKeyId": "0" * 32}
    for run in (simulate(encrypted), simulate(encrypted, previous=previous)):
        served = run.one("kubernetes:core/v1:Secret", "kms-secret-kms-key").inputs["stringData"]
        assert (served.value if isinstance(served, SecretValue) else served) == {"key": kms.OFFLINE_KEY}
        assert run.outputs[kms.RESTORED_OUTPUT] is True


def test_a_restore_value_that_is_no_key_is_refused_at_preview_naming_the_key(restored: tuple[str, Simulation]) -> None:
    """A value that is no key (too short, too long, not base64) stops the run at its load, before any resource, on a
    first deployment as on a later one; the value is never in the message. The KMS component's own check is the last
    guard of a program run without that load."""
    key, first = restored
    for value in (base64.b64encode(b"short").decode(), base64.b64encode(os.urandom(33)).decode(), "not-base64!" + key[11:]):
        for previous in (None, outputs_of(first)):
            with pytest.raises(pulumi.RunError) as refused:
                restored_run({"iluvatar:kmsKeyRestore": value}, previous=previous)
            assert f"iluvatar:kmsKeyRestore: {encryption.KMS_RESTORE_FORM}" in str(refused.value), value
            assert value not in str(refused.value)
        with pytest.raises(ValueError, match=r"^iluvatar:kmsKeyRestore: is not the base64 of 32 bytes;"):
            kms.restored_key(value)


def test_the_ainur_lost_runbook_stops_at_a_backup_the_identity_does_not_open(tmp_path: Path) -> None:
    """A backup encrypted to another recipient (or damaged) stops the runbook at its decryption, no key written."""
    other = hashlib.sha256(b"another stack's identity").digest()
    backup = kms.key_backup(base64.b64encode(os.urandom(32)).decode(), age.recipient(other))
    desk, env = desk_with(tmp_path, backup, IDENTITY, kms.backup_object(load_stack_file(HOMELAB), backup))
    n, done = run_runbook(desk, env)
    assert runbook.commands(*RUNBOOK)[n].startswith('test "$(age --decrypt'), n
    assert "no identity matched any of the recipients" in done.stderr
    assert not (desk / "pulumi-config.json").exists()


def test_the_ainur_lost_runbook_stops_at_another_key_s_backup(tmp_path: Path) -> None:
    """The target holds another key's file too (a key made after the loss, a rotation): taken in place of the one Arda's
    drill named before the loss, even if newer, it stops the runbook at its first check, no key written."""
    stack = load_stack_file(HOMELAB)
    right = kms.key_backup(base64.b64encode(os.urandom(32)).decode(), age.recipient(IDENTITY))
    newer = kms.key_backup(base64.b64encode(os.urandom(32)).decode(), age.recipient(IDENTITY))
    desk, env = desk_with(tmp_path, newer, IDENTITY, kms.backup_object(stack, right))
    n, done = run_runbook(desk, env)
    assert (n, done.returncode) == (1, 1)
    assert not (desk / "pulumi-config.json").exists()


def test_a_server_of_another_ca_is_not_trusted(server: Server, pki: Path) -> None:
    done = client("seal", server.endpoint, pki / "other-ca.crt", NODE)
    assert refusal(done) == "Unavailable"
    assert "certificate signed by unknown authority" in done.stderr


def test_the_ainur_down_at_boot_the_node_waits_then_unlocks(tmp_path: Path, pki: Path) -> None:
    """The KMS is down when the machine boots: its unseal fails and is tried again, and succeeds once the KMS is back."""
    key = new_key(tmp_path / "key")
    first = start(key, pki)
    sealed = seal(first, pki)
    port = first.port
    first.stop()
    command = [
        str(gotools.build("kms-client")), "unseal", f"--endpoint={first.endpoint}", f"--ca={pki / 'ca.crt'}", f"--node={NODE}",
        f"--sealed={sealed['sealed']}", "--attempts=600", "--retry-every=100ms",
    ]  # fmt: skip
    waiting = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert waiting.stderr is not None
    # The event: the node's first try failed because nothing answers.
    first_try = waiting.stderr.readline()
    assert first_try.startswith("attempt 1 failed: Unavailable:"), first_try
    back = start(key, pki, port)
    out, err = waiting.communicate(timeout=120)
    back.stop()
    assert waiting.returncode == 0, err
    assert json.loads(out) == {"passphrase": sealed["passphrase"]}


def node_tag(key: Path, node: str) -> str:
    """The log's tag of a node: HMAC-SHA256 under HMAC-SHA256(key, label), of the lower-cased UUID, 8 bytes in hex."""
    tag_key = hmac.new(base64.b64decode(key.read_text()), b"iluvatar-kms/v1 log tag", hashlib.sha256).digest()
    return "node#" + hmac.new(tag_key, node.lower().encode(), hashlib.sha256).hexdigest()[:16]


def test_the_log_tags_the_node_never_its_uuid_the_key_the_passphrase_or_the_blob(tmp_path: Path, pki: Path) -> None:
    """The UUID is all an Unseal asks for besides a stolen disk's blob, and the logs leave the Pi: a keyed tag stands
    for it, the same for the same node in either case."""
    key = new_key(tmp_path / "key")
    running = start(key, pki)
    sealed = seal(running, pki)
    unseal(running.endpoint, pki, OTHER_NODE, sealed["sealed"])
    unseal(running.endpoint, pki, NODE.upper(), sealed["sealed"])
    client("seal", running.endpoint, pki / "ca.crt", "not-a-uuid")
    log = running.stop()
    assert re.search(rf"sealed: {node_tag(key, NODE)} from 127\.0\.0\.1:\d+$", log, re.M)
    assert re.search(rf"unseal refused: {node_tag(key, OTHER_NODE)} from 127\.0\.0\.1:\d+: ", log, re.M)
    assert re.search(rf"unsealed: {node_tag(key, NODE)} from 127\.0\.0\.1:\d+$", log, re.M)
    assert re.search(r"seal refused: from 127\.0\.0\.1:\d+: the node is not a UUID$", log, re.M)
    secrets = [key.read_text(), sealed["passphrase"], sealed["sealed"]]
    secrets += [base64.b64decode(s).hex() for s in secrets]
    secrets += [NODE, NODE.upper(), OTHER_NODE, "not-a-uuid"]
    assert [s for s in secrets if s.lower() in log.lower()] == []


def test_only_the_admitted_addresses_are_answered_read_at_every_call(tmp_path: Path, pki: Path) -> None:
    """The server's own check of the caller's address (a host-network process on the Pi passes the NetworkPolicy):
    a caller outside the list is refused before anything is sealed, and a list changed in place (the kubelet's
    refresh of the ConfigMap) applies at the next call, with no restart."""
    admitted = admitting(tmp_path / "admitted", "192.168.0.21/32", "192.168.0.22/32")
    running = start(new_key(tmp_path / "key"), pki, admitted=admitted)
    assert refusal(client("seal", running.endpoint, pki / "ca.crt", NODE)) == "PermissionDenied"
    admitting(admitted, "192.168.0.21/32", f"{HOST}/32")
    sealed = seal(running, pki)
    admitting(admitted, "# no one", "")
    assert refusal(unseal(running.endpoint, pki, NODE, sealed["sealed"])) == "PermissionDenied"
    admitting(admitted, "192.168.0.21/32", "not a cidr", f"{HOST}/32")
    assert refusal(unseal(running.endpoint, pki, NODE, sealed["sealed"])) == "PermissionDenied"
    admitted.unlink()
    assert refusal(unseal(running.endpoint, pki, NODE, sealed["sealed"])) == "PermissionDenied"
    log = running.stop()
    assert re.search(r"^.*refused 127\.0\.0\.1:\d+: not an admitted address$", log, re.M)
    assert "refused 127.0.0.1" in log and 'the admitted list has "not a cidr", not a CIDR' in log
    assert "the admitted list cannot be read" in log


def issue(pki: Path, name: str) -> tuple[Path, Path]:
    """Another certificate of the same CA for the endpoint (what `pulumi up` issues in the renewal window)."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    key, csr, cert = pki / f"{name}.key", pki / f"{name}.csr", pki / f"{name}.crt"
    openssl("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"), "-CAcreateserial",
        "-days", "1", "-out", str(cert), "-extfile", str(pki / "ext"),
    )  # fmt: skip
    return cert, key


def served(server: Server, ca: Path) -> bytes:
    """The certificate the server presents to a new connection (DER), checked against the CA as Talos checks it."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((HOST, server.port), timeout=30) as raw, context.wrap_socket(raw, server_hostname=HOST) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def der(pem: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.read_text())


def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path, pki: Path) -> None:
    """`pulumi up` renews the certificate in its last 30 days and the kubelet swaps the Secret's files (a new
    ..data directory, the symlink moved): the next handshake presents the new pair; a pair that does not load
    (a key of another certificate) leaves the last good one serving."""
    tls_dir = tmp_path / "tls"
    first = tls_dir / "..data-1"
    first.mkdir(parents=True)
    shutil.copy(pki / "tls.crt", first / "tls.crt")
    shutil.copy(pki / "tls.key", first / "tls.key")
    (tls_dir / "..data").symlink_to("..data-1")
    for name in ("tls.crt", "tls.key"):
        (tls_dir / name).symlink_to(f"..data/{name}")
    # The pod's mount (the Secret's files behind ..data) in place of the fixture's.
    running = start(new_key(tmp_path / "key"), tls_dir)
    assert served(running, pki / "ca.crt") == der(pki / "tls.crt")
    cert, key = issue(pki, "renewed")
    second = tls_dir / "..data-2"
    second.mkdir()
    shutil.copy(cert, second / "tls.crt")
    shutil.copy(key, second / "tls.key")
    (tls_dir / "..data-tmp").symlink_to("..data-2")
    (tls_dir / "..data-tmp").rename(tls_dir / "..data")
    assert served(running, pki / "ca.crt") == der(cert)
    assert seal(running, pki)["sealed"]
    other, _ = issue(pki, "mismatched")
    third = tls_dir / "..data-3"
    third.mkdir()
    shutil.copy(other, third / "tls.crt")
    shutil.copy(key, third / "tls.key")
    (tls_dir / "..data-tmp").symlink_to("..data-3")
    (tls_dir / "..data-tmp").rename(tls_dir / "..data")
    assert served(running, pki / "ca.crt") == der(cert)
    log = running.stop()
    assert "the TLS certificate changed: serving the new one" in log
    assert "the TLS certificate could not be read again, the last one serves: tls: private key does not match public key" in log


@pytest.mark.parametrize(
    ("key", "error"),
    [
        (base64.b64encode(b"x" * 16).decode(), "error: the KMS key is 16 bytes; it must be 32 (AES-256)"),
        ("not base64!", "error: the KMS key in {path} is not base64"),
    ],
)
def test_a_wrong_key_stops_the_server(tmp_path: Path, pki: Path, key: str, error: str) -> None:
    path = tmp_path / "key"
    path.write_text(key)
    args = [
        f"--listen={HOST}:0",
        f"--key={path}",
        f"--tls-cert={pki / 'tls.crt'}",
        f"--tls-key={pki / 'tls.key'}",
        f"--admitted={admitting(tmp_path / 'admitted')}",
    ]
    done = subprocess.run([str(server_binary()), *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip().endswith(error.format(path=path))


def test_the_server_serves_tls_only(tmp_path: Path) -> None:
    done = subprocess.run([str(server_binary()), f"--key={new_key(tmp_path / 'key')}"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip().endswith("error: --key, --tls-cert and --tls-key are required: the KMS serves TLS only")


def test_the_server_needs_its_admitted_list(tmp_path: Path, pki: Path) -> None:
    args = [f"--key={new_key(tmp_path / 'key')}", f"--tls-cert={pki / 'tls.crt'}", f"--tls-key={pki / 'tls.key'}"]
    done = subprocess.run([str(server_binary()), *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip().endswith("error: --admitted is required: the KMS answers only the machines it lists")


def cryptsetup(*args: str, key: bytes) -> subprocess.CompletedProcess[str]:
    found = shutil.which("cryptsetup") or "/usr/sbin/cryptsetup"
    assert Path(found).exists(), "cryptsetup is missing: scripts/prerequisites.sh installs Debian's cryptsetup-bin"
    return subprocess.run([found, *args, "--key-file=-", "--batch-mode"], input=key.decode(), capture_output=True, text=True, timeout=120)


def test_a_luks2_volume_made_with_the_sealed_passphrase_opens_with_the_unsealed_one(server: Server, pki: Path, tmp_path: Path) -> None:
    """As Talos does: the volume is formatted with the passphrase of Seal (kms.go:92), opened with the one of Unseal."""
    sealed = seal(server, pki)
    volume = tmp_path / "volume.img"
    volume.write_bytes(b"\0" * (32 << 20))
    # A small, fixed argon2id cost: the test's time does not hang on the machine's speed (Talos's own cost is the default).
    cost = ("--pbkdf=argon2id", "--pbkdf-memory=32768", "--pbkdf-force-iterations=4", "--pbkdf-parallel=1")
    made = cryptsetup("luksFormat", "--type=luks2", *cost, str(volume), key=sealed["passphrase"].encode())
    assert made.returncode == 0, made.stderr
    unsealed = json.loads(unseal(server.endpoint, pki, NODE, sealed["sealed"]).stdout)["passphrase"]
    # Opening checks the passphrase against the keyslot: the device mapper is not in this sandbox, so no mapping is made.
    opened = cryptsetup("open", "--test-passphrase", str(volume), key=unsealed.encode())
    assert opened.returncode == 0, opened.stderr
    other = seal(server, pki)["passphrase"]
    refused = cryptsetup("open", "--test-passphrase", str(volume), key=other.encode())
    assert refused.returncode == 2
    assert "No key available with this passphrase." in refused.stderr
    dump = subprocess.run([shutil.which("cryptsetup") or "/usr/sbin/cryptsetup", "luksDump", str(volume)], capture_output=True, text=True, timeout=30)
    assert "Version:       \t2" in dump.stdout
