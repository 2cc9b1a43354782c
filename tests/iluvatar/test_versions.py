"""`iluvatar versions STACK` (iluvatar.versions): what runs, the newest each part supports, and the path there."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iluvatar.cli import main
from tests.edit import HOMELAB, ROOT, edit, homelab_doc, write_stack
from tests.sims import outputs_of, simulated


def _stack(tmp_path: Path, **arda: str) -> Path:
    return write_stack(tmp_path, edit(homelab_doc(), {f"iluvatar:arda.{k}": v for k, v in arda.items()}), stack="homelab")


def _lines(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert main(["versions", *argv]) == 0
    return capsys.readouterr().out.splitlines()


# Outputs record every machine of a cluster beside its release (stacks.outputs.CLUSTER_RELEASES): one each here, as the
# homelab's, so the outputs read as a real deployment's.
AINUR_MACHINE = {"manwe": {"mac": "d8:3a:dd:10:00:01", "ip": "192.168.0.11", "role": "valar"}}


def _arda_machine(talos: str) -> dict[str, dict[str, str]]:
    return {
        "taniquetil": {"installer": f"factory.talos.dev/metal-installer/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba:{talos}"}
    }


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
    outputs.write_text(json.dumps({"arda": {"talosVersion": "v1.12.4", "kubernetesVersion": "v1.34.1", "nodes": _arda_machine("v1.12.4")}}))
    lines = _lines(capsys, str(_stack(tmp_path)), "--previous", str(outputs))
    assert lines[-4:] == [
        "  runs now    Talos v1.12.4, Kubernetes v1.34.1 (the last deployment's outputs)",
        "  path to this stack's versions, one `pulumi up` each:",
        "    1. arda.talosVersion v1.14.1: 3 roll(s) of every machine (v1.12.11, v1.13.9, v1.14.1)",
        "    2. arda.kubernetesVersion v1.35.1",
    ]
    outputs.write_text(json.dumps({"arda": {"talosVersion": "v1.12.4", "kubernetesVersion": "v1.30.2", "nodes": _arda_machine("v1.12.4")}}))
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


def _installers_at(arda: dict[str, Any], talos: str) -> dict[str, Any]:
    """The `arda` output with Arda at Talos `talos`: a deployment records every machine's installer at its release."""
    nodes = {n: {**v, "installer": v["installer"].rsplit(":", 1)[0] + f":{talos}"} for n, v in arda["nodes"].items()}
    return {**arda, "talosVersion": talos, "nodes": nodes}


HOMELAB_ORDER = ("taniquetil", "tirion", "alqualonde", "gandalf", "saruman")
BACK = (
    "a roll back of every machine, one machine at a time ({0} -> {1}, a patch back within v1.14, which Talos installs as it does "
    "an upgrade: each machine drained, installed and rebooted, and checked healthy before the next); it undoes the fixes of {0} on "
    "every machine: unless it is meant, write {0} back"
)


@pytest.mark.parametrize(
    ("case", "stack", "outputs", "render_says", "versions_says"),
    [
        # A patch back within the running minor (stacks.releases allows it): both plan the roll back.
        (
            "patch back",
            {"iluvatar:arda.talosVersion": "v1.14.0"},
            lambda o: o,
            [f"  {i}. {n}: Talos v1.14.1 -> v1.14.0 (a roll back: it undoes the fixes of v1.14.1)" for i, n in enumerate(HOMELAB_ORDER, 1)],
            ["  path to this stack's versions, one `pulumi up` each:", "    1. arda.talosVersion v1.14.0: " + BACK.format("v1.14.1", "v1.14.0")],
        ),
        # Arda at a patch newer than this Iluvatar's table knows: the stack's release is the same roll back.
        (
            "outputs newer than the table",
            {},
            lambda o: {**o, "arda": _installers_at(o["arda"], "v1.14.2")},
            [f"  {i}. {n}: Talos v1.14.2 -> v1.14.1 (a roll back: it undoes the fixes of v1.14.2)" for i, n in enumerate(HOMELAB_ORDER, 1)],
            ["  path to this stack's versions, one `pulumi up` each:", "    1. arda.talosVersion v1.14.1: " + BACK.format("v1.14.2", "v1.14.1")],
        ),
        (
            "minor back",
            {"iluvatar:arda.talosVersion": "v1.13.9"},
            lambda o: o,
            [
                "  iluvatar:arda.talosVersion: v1.13.9 cannot be rolled out: Talos v1.13 is older than v1.14.1, which Arda runs; a minor "
                "is not rolled back; write v1.14.1 back, or a newer release (docs/day2.md#across-talos-minors)"
            ],
            None,
        ),
        (
            "Kubernetes back",
            {},
            lambda o: {**o, "arda": {**o["arda"], "kubernetesVersion": "v1.35.4"}},
            ["  iluvatar:arda.kubernetesVersion: v1.35.1 is older than v1.35.4, which Arda runs; Kubernetes cannot be downgraded"],
            None,
        ),
        (
            "k3s back",
            {},
            lambda o: {**o, "ainur": {**o["ainur"], "k3sVersion": "v1.36.2+k3s1"}},
            [
                "  iluvatar:ainur.k3sVersion: v1.35.8+k3s1 is older than v1.36.2+k3s1, which the Ainur run; k3s cannot be downgraded "
                "(docs/day2.md#upgrading-k3s-on-the-ainur)"
            ],
            None,
        ),
    ],
)
def test_versions_and_render_agree_against_the_same_outputs(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    stack: dict[str, Any],
    outputs: Callable[[dict[str, Any]], dict[str, Any]],
    render_says: list[str],
    versions_says: list[str] | None,
) -> None:
    """`versions --previous` and `render --previous` on the same stack and outputs: a roll `render` plans is the path
    `versions` gives, and what `render` refuses `versions` says in the same words, in place of a path."""
    monkeypatch.chdir(ROOT)
    path = write_stack(tmp_path, edit(homelab_doc(), stack), stack="homelab")
    previous = tmp_path / "outputs.json"
    previous.write_text(json.dumps(outputs(outputs_of(simulated(HOMELAB)))))
    capsys.readouterr()
    code = main(["render", str(path), "--out", str(tmp_path / "out"), "--previous", str(previous), "--on", "2026-11-25"])
    out, err = capsys.readouterr()
    versions = _lines(capsys, str(path), "--previous", str(previous))
    if versions_says is None:
        # Refused: the render's problems, and versions' none with them.
        assert code == 1, out
        assert err.splitlines()[1:] == render_says
        assert versions[-len(render_says) - 1 :] == [
            "  path to this stack's versions: none, `pulumi up` refuses them (as `iluvatar render --previous` does):",
            *(f"  {line}" for line in render_says),
        ]
    else:
        assert code == 0, err
        rollout = (tmp_path / "out" / "rollout.txt").read_text().splitlines()
        assert rollout[-len(render_says) :] == render_says
        assert versions[-2:] == versions_says
        # A roll back is warned of too, naming both releases, as `pulumi preview` logs it (stacks.day2._talos_rolled_back).
        rolled = [line for line in err.splitlines() if line.startswith("warning: iluvatar:arda.talosVersion: ")]
        running, target = render_says[0].split("Talos ", 1)[1].split(" (", 1)[0].split(" -> ")
        assert rolled == [
            f"warning: iluvatar:arda.talosVersion: {target} is older than {running}, which Arda runs: `up` would roll every machine back to "
            f"it, one at a time, which undoes the fixes of {running} (Talos's patch releases carry security and bug fixes) on every "
            f"machine; if the stack was reverted or checked out from an older commit, write {running} back"
        ]


def test_the_ainurs_k3s_path_is_a_minor_a_run_through_the_safe_etcd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """k3s as stacks.day2._k3s takes it: one minor a run, and through v1.33.12+k3s1 (etcd 3.5.26) before etcd 3.6."""
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps(
            {
                "arda": {"talosVersion": "v1.14.1", "kubernetesVersion": "v1.35.1", "nodes": _arda_machine("v1.14.1")},
                "ainur": {"k3sVersion": "v1.32.5+k3s1", "nodes": AINUR_MACHINE},
            }
        )
    )
    lines = _lines(capsys, str(_stack(tmp_path)), "--previous", str(outputs))
    assert lines[-5:] == [
        "  runs now    Talos v1.14.1, Kubernetes v1.35.1, k3s v1.32.5+k3s1 on the Ainur (the last deployment's outputs)",
        "  path to this stack's versions, one `pulumi up` each:",
        "    1. ainur.k3sVersion v1.33.12+k3s1 (etcd 3.5.26 or later, from which etcd moves to 3.6 safely)",
        "    2. ainur.k3sVersion v1.34.x",
        "    3. ainur.k3sVersion v1.35.8+k3s1",
    ]
    # From below this Iluvatar's floor no run of it leads there: said as `pulumi up` refuses it (stacks.day2.no_way).
    outputs.write_text(
        json.dumps(
            {
                "arda": {"talosVersion": "v1.14.1", "kubernetesVersion": "v1.35.1", "nodes": _arda_machine("v1.14.1")},
                "ainur": {"k3sVersion": "v1.28.15+k3s1", "nodes": AINUR_MACHINE},
            }
        )
    )
    lines = _lines(capsys, str(_stack(tmp_path)), "--previous", str(outputs))
    assert lines[-2:] == [
        "  path to this stack's versions: none, `pulumi up` refuses them (as `iluvatar render --previous` does):",
        "    iluvatar:ainur.k3sVersion: v1.35.8+k3s1 skips a minor: the Ainur run v1.28.15+k3s1, and k3s upgrades one minor at a time, "
        "as Kubernetes does; this Iluvatar runs the Ainur from v1.30 on, so take them one minor at a time up to a v1.29 release "
        "with the Iluvatar that deployed them (git checkout of its commit, `pulumi up`), then, with this one, set a v1.30 release "
        "(e.g. v1.30.14+k3s2) first; the way there, one `pulumi up` each, as `iluvatar versions --previous` lays it out: v1.30.x, "
        "v1.31.x, v1.32.x, v1.33.12+k3s1, v1.34.x, v1.35.8+k3s1 (docs/day2.md#upgrading-k3s-on-the-ainur)",
    ]
