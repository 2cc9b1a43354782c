"""`iluvatar upgrader ...`: how Pulumi's command resources run the upgrader (iluvatar/upgrader.py, iluvatar/cli.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from iluvatar import upgrader as product
from plans import storage
from tools.talos_api import addresses, node, scenario, talos_api

ILUVATAR = Path(sys.executable).parent / "iluvatar"


@pytest.fixture(autouse=True, scope="module")
def _built() -> None:
    """The upgrader built before these run: a run that builds it says so first (tests/upgrader/test_cancel.py)."""
    product.build()


def _iluvatar(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ILUVATAR), *args], input=stdin, capture_output=True, text=True, timeout=600)


def test_every_argument_and_stdin_reach_the_upgrader_and_its_exit_code_comes_back(tmp_path: Path) -> None:
    ips = addresses(2)
    with talos_api(
        scenario([node("valinor-1", ips[0], "controlplane", "v1.13.0"), node("istari-1", ips[1], "worker", "v1.12.4", maintenance=True)])
    ) as api:
        stdin = json.dumps({"talosconfig": api.talosconfig_text()})
        # Run from elsewhere, as any folder: the upgrader needs no project around it.
        result = subprocess.run(
            [str(ILUVATAR), "upgrader", "probe", "--node", api.node_arg("valinor-1"), "--node=" + api.node_arg("istari-1"), "--deadline", "3s"],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
    assert result.returncode == product.EXIT_OK, result.stderr
    assert json.loads(result.stdout) == {"nodes": {"valinor-1": "running", "istari-1": "maintenance"}}
    assert sorted(result.stderr.splitlines()) == ["upgrader: istari-1: maintenance", "upgrader: valinor-1: running"]


def test_the_upgraders_own_usage_errors_and_flags_pass_through() -> None:
    missing = _iluvatar("upgrader", "bootstrap", "--node", "valinor-1=10.0.0.2")
    assert (missing.returncode, missing.stdout, missing.stderr) == (
        product.EXIT_USAGE,
        "",
        "upgrader: bootstrap: --timeout is required (a duration such as 15m)\n",
    )
    # A flag iluvatar's own parser would take (--help) is the upgrader's: its command list.
    helped = _iluvatar("upgrader", "--help")
    assert helped.returncode == product.EXIT_USAGE
    assert helped.stderr.splitlines()[0] == "usage: upgrader COMMAND [flags] (secrets as one JSON object on stdin); commands:"


def test_iluvatar_help_lists_the_upgrader() -> None:
    listed = _iluvatar("--help")
    assert listed.returncode == 0
    assert "upgrader" in listed.stdout
    assert "run the upgrader that pulumi up runs for Talos steps (upgrader/README.md)" in " ".join(listed.stdout.split())


def test_check_input_reads_a_command_line_and_its_stdin_as_the_command_does_and_contacts_nothing() -> None:
    # A machine nobody answers for (TEST-NET-1): the check never asks it anything.
    apply = ["apply", "--node", "tirion=192.0.2.22", "--role", "worker", "--timeout", "45m"]
    stdin = {"talosconfig": "(a talosconfig)", "machineConfig": "(a machine config)", "hooks": storage.noout_jobs()}
    ok = _iluvatar("upgrader", "check-input", "--", *apply, stdin=json.dumps(stdin, sort_keys=True))
    assert (ok.returncode, ok.stdout, ok.stderr) == (
        product.EXIT_OK,
        "",
        "upgrader: check-input: apply: the arguments and stdin are as it reads them (nothing was contacted)\n",
    )
    # A hook that is no Job (a Pod): refused by the check as by the command, before it contacts anything.
    pod = {**stdin, "hooks": {"before": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}]}}
    refused = _iluvatar("upgrader", "check-input", "--", *apply, stdin=json.dumps(pod, sort_keys=True))
    message = "upgrader: apply: stdin: hooks.before[0] must be a batch/v1 Job with a name\n"
    assert (refused.returncode, refused.stdout, refused.stderr) == (product.EXIT_USAGE, "", message)
    # The real command says the same, before it contacts anything.
    real = _iluvatar("upgrader", *apply, stdin=json.dumps(pod, sort_keys=True))
    assert (real.returncode, real.stdout, real.stderr) == (product.EXIT_USAGE, "", message)
