"""`iluvatar versions STACK` (iluvatar.versions): what runs, the newest each part supports, and the path there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iluvatar.cli import main
from tests.edit import edit, homelab_doc, write_stack


def _stack(tmp_path: Path, **arda: str) -> Path:
    return write_stack(tmp_path, edit(homelab_doc(), {f"iluvatar:arda.{k}": v for k, v in arda.items()}), stack="homelab")


def _lines(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert main(["versions", *argv]) == 0
    return capsys.readouterr().out.splitlines()


def test_a_stack_on_the_newest_has_no_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _lines(capsys, str(_stack(tmp_path)))
    assert lines[1] == "  Talos       v1.14.1        newest this Iluvatar knows: v1.14.1 (a stack may run v1.12 to v1.14)"
    assert lines[2] == "  Kubernetes  v1.35.1        Talos v1.14 runs 1.32 to 1.37; the release Iluvatar is tested with: v1.35.1"
    assert lines[3:6] == [
        "  k3s         v1.35.8+k3s1   the release Iluvatar is tested with: v1.35.8+k3s1",
        "  Cilium      1.18.4         the chart Iluvatar installs and is tested with: 1.18.4",
        "  Argo CD     10.8.0         the chart Iluvatar installs and is tested with: 10.8.0",
    ]
    assert lines[-1] == "  path to the newest: none, the stack names it"


def test_an_older_stack_gets_the_runs_to_the_newest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _lines(capsys, str(_stack(tmp_path, talosVersion="v1.13.0", kubernetesVersion="v1.33.2")))
    assert lines[-4:] == [
        "  path to the newest, one `pulumi up` each:",
        "    1. arda.talosVersion v1.14.1: 2 roll(s) of every machine (v1.13.9, v1.14.1)",
        "    2. arda.kubernetesVersion v1.34.x",
        "    3. arda.kubernetesVersion v1.35.1",
    ]


def test_with_the_last_outputs_the_path_starts_from_what_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"arda": {"talosVersion": "v1.12.4", "kubernetesVersion": "v1.34.1", "nodes": {}}}))
    lines = _lines(capsys, str(_stack(tmp_path)), "--previous", str(outputs))
    assert lines[-4:] == [
        "  runs now    Talos v1.12.4, Kubernetes v1.34.1 (the last deployment's outputs)",
        "  path to this stack's versions, one `pulumi up` each:",
        "    1. arda.talosVersion v1.14.1: 3 roll(s) of every machine (v1.12.11, v1.13.9, v1.14.1)",
        "    2. arda.kubernetesVersion v1.35.1",
    ]
    outputs.write_text(json.dumps({"arda": {"talosVersion": "v1.12.4", "kubernetesVersion": "v1.30.2", "nodes": {}}}))
    # Kubernetes moved on the way where a minor needs it: one run, its last Kubernetes step the stack's own version.
    lines = _lines(capsys, str(_stack(tmp_path, kubernetesVersion="v1.32.0")), "--previous", str(outputs))
    assert lines[-2:] == [
        "  path to this stack's versions, one `pulumi up` each:",
        "    1. arda.talosVersion v1.14.1 with arda.kubernetesVersion v1.32.0: 3 roll(s) of every machine (v1.12.11, v1.13.9, v1.14.1), "
        "Kubernetes moved before the rolls that need it (v1.31.14, v1.32.0)",
    ]
    # Past the floors: the path's run at that minor's newest, then a minor a run.
    lines = _lines(capsys, str(_stack(tmp_path, kubernetesVersion="v1.34.2")), "--previous", str(outputs))
    assert lines[-3:] == [
        "    1. arda.talosVersion v1.14.1 with arda.kubernetesVersion v1.32.13: 3 roll(s) of every machine (v1.12.11, v1.13.9, v1.14.1), "
        "Kubernetes moved before the rolls that need it (v1.31.14, v1.32.13)",
        "    2. arda.kubernetesVersion v1.33.x",
        "    3. arda.kubernetesVersion v1.34.2",
    ]
