"""A maia's own join token (plans.agent_token): its exact shape, its Secret, and the CA hash read on the first valar."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plans import agent_token
from stacks import load_stack_file
from tests.edit import HOMELAB

HASH = hashlib.sha256(b"a CA").hexdigest()
LOWER = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20)


def test_the_full_token_is_k3s_s_secure_form() -> None:
    assert agent_token.full_token(HASH, "abc123", "0123456789abcdef") == f"K10{HASH}::abc123.0123456789abcdef"


@pytest.mark.parametrize(
    ("ca_hash", "token_id", "secret"),
    [
        (HASH[:-1], "abc123", "0123456789abcdef"),  # k3s: "invalid token CA hash length" (token.go parseToken)
        (HASH.upper(), "abc123", "0123456789abcdef"),  # hashCA writes lower-case hex: never equal
        (HASH, "abc12", "0123456789abcdef"),  # not a bootstrap token: k3s would read `<id>.<secret>` as a password
        (HASH, "abc123", "0123456789abcdeF"),
        (HASH, "abc-23", "0123456789abcdef"),
        ("", "abc123", "0123456789abcdef"),  # no pin: the agent would trust whatever answers at the server URL
    ],
)
def test_anything_k3s_would_read_otherwise_is_refused(ca_hash: str, token_id: str, secret: str) -> None:
    with pytest.raises(ValueError, match=r"K10<64 hex>::"):
        agent_token.full_token(ca_hash, token_id, secret)


@given(LOWER, LOWER)
def test_only_a_six_and_sixteen_character_lower_case_pair_passes(token_id: str, secret: str) -> None:
    ok = len(token_id) == 6 and len(secret) == 16
    try:
        agent_token.full_token(HASH, token_id, secret)
    except ValueError:
        assert not ok
    else:
        assert ok


def test_the_secret_is_a_kubernetes_bootstrap_token_with_authentication_only_and_no_expiry() -> None:
    node = load_stack_file(HOMELAB).ainur_nodes[1]
    assert agent_token.secret_manifest(node, "abc123", "0123456789abcdef") == {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "bootstrap.kubernetes.io/token",
        "metadata": {
            "name": "bootstrap-token-abc123",
            "namespace": "kube-system",
            "labels": {"app.kubernetes.io/part-of": "iluvatar", "iluvatar/pi": "eonwe"},
        },
        "stringData": {
            "token-id": "abc123",
            "token-secret": "0123456789abcdef",
            "usage-bootstrap-authentication": "true",
            "description": "k3s agent join token of the Ainur maia eonwe (Iluvatar; revoked when the Pi leaves the inventory)",
        },
    }


def run_hash_script(tmp_path: Path, token_text: str | None) -> subprocess.CompletedProcess[str]:
    """The step's script as the first valar runs it (sudo: this test's own user)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    (bin_ / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (bin_ / "sudo").chmod(0o755)
    token_file = tmp_path / "token"
    if token_text is not None:
        token_file.write_text(token_text)
    env = {"PATH": f"{bin_}:/usr/bin:/bin"}
    return subprocess.run(["sh", "-c", agent_token.ca_hash_script(str(token_file))], capture_output=True, text=True, env=env, timeout=30, check=False)


def test_the_hash_step_prints_the_hash_k3s_wrote_and_never_the_password(tmp_path: Path) -> None:
    # What k3s writes (pkg/server/server.go printTokens, handlers.WriteToken): K10<hashCA(server-ca.crt)>::server:<password>.
    done = run_hash_script(tmp_path, f"K10{HASH}::server:the-server-password\n")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{HASH}\n", "")
    assert agent_token.parse_ca_hash(done.stdout) == HASH


@pytest.mark.parametrize("text", [None, "the-server-password\n", f"K10{HASH[:-2]}::server:x\n"])
def test_the_hash_step_fails_naming_the_file_when_k3s_wrote_no_full_token(tmp_path: Path, text: str | None) -> None:
    done = run_hash_script(tmp_path, text)
    assert done.returncode == 1 and done.stdout == ""
    assert "holds no K10<CA hash>:: token (k3s writes it at each start); look with: sudo journalctl -u k3s" in done.stderr
    assert "the-server-password" not in done.stderr


@pytest.mark.parametrize("printed", ["", "Warning: something\n" + HASH, HASH + "0", HASH.upper()])
def test_a_printed_hash_that_is_not_one_is_refused(printed: str) -> None:
    with pytest.raises(ValueError, match="not a sha256 hex digest of the cluster CA; look on the first valar with: sudo head -c 70"):
        agent_token.parse_ca_hash(printed)
