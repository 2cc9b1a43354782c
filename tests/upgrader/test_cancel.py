"""A step stopped as Pulumi stops one: Ctrl-C (or the step's custom timeout) while the upgrader runs or builds.

The step is the program's own (`plans.bringup.talos_apply`'s command, run from the project folder, its stdin
what the component sends), run as pulumi-command v1.2.1 runs a local Command and stopped as the engine stops
one (tests/upgrader/run.py `step`: `tools/pulumi-command-local`), with each /bin/sh a user may have: dash (Debian's,
Ubuntu's), which forks for the command, and bash (Fedora's, Arch's, RHEL's) and busybox's ash (Alpine's), which exec
a lone command in place of themselves, so the SIGKILL hits `iluvatar` itself. The node is the scripted
Talos API (tools/talos-api); a drain stopped this way is tests/upgrader/test_disrupt.py's.
"""

from __future__ import annotations

import json
import os
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from iluvatar import golang
from iluvatar import upgrader as product
from plans import bringup
from stacks import load_stack_file
from tests.edit import HOMELAB
from tests.upgrader.run import GRACE_S, SHELLS, children, descendants, group, mutations, running, shell, step, until
from tools.talos_api import VANILLA, addresses, installer, node, scenario, talos_api

NEW, NEWER = "v1.13.0", "v1.13.1"


def worker_step(address: str) -> tuple[str, str]:
    """The homelab's first istari, at the stand-in's address: its name and the apply step's command as the program has it."""
    stack = load_stack_file(HOMELAB)
    machine = stack.by_role("istari")[0]
    command = bringup.talos_apply(stack, machine.model_copy(update={"ip": IPv4Address(address)})).command
    return machine.name, command


def forks(sh: str, top: int) -> bool:
    """The shell forked for the command (the step's top process is still the shell), rather than exec'ing it."""
    return Path(f"/proc/{top}/exe").resolve() == Path(sh).resolve()


@pytest.mark.parametrize("sh_name", list(SHELLS))
def test_a_step_killed_as_pulumi_command_kills_it_leaves_no_upgrader_running_and_the_next_run_finishes_it(sh_name: str) -> None:
    control_plane, ip = addresses(2)
    name, command = worker_step(ip)
    assert command.startswith(".venv/bin/iluvatar upgrader apply ") and command.endswith(" --timeout 45m"), command
    product.build()  # this test is about a step stopped while it waits for its node, not while it builds (the next one is)
    # Before the bootstrap (etcd waits on the control plane): Talos steps only, no drain. The node stays down from its
    # upgrade's reboot until the test powers it again, so the step is stopped while it is down however long stopping
    # takes, and a step that ended while the node was still down ended without it.
    nodes = [node("valinor-1", control_plane, "controlplane", NEW), node(name, ip, "worker", NEW, upgrade={"result": "never"})]
    with talos_api(scenario(nodes, bootstrapped=False)) as api:
        stdin = json.dumps({"machineConfig": api.config("worker", installer(VANILLA, NEWER)), "talosconfig": api.talosconfig_text()}, sort_keys=True)
        sh = shell(sh_name)
        with step(command, stdin, sh=sh) as first:
            top = first.shell()
            # The apply upgraded the node and waits for it to come back from its reboot: it said the node is down. The
            # node itself down is not that: the stand-in goes down 50 ms after it answered the Reboot, and a stop before
            # the upgrader read that answer is a stop of the reboot call, which fails in other words.
            first.logged(f"upgrader: {name}: down", 120)
            assert "LifecycleService/Upgrade" in [m for _, m in mutations(api)]
            # Which process pulumi-command's SIGKILL hits: the shell (dash forks) or `iluvatar` (bash and busybox exec it).
            assert forks(sh, top) is (sh_name == "dash")
            tree = descendants(top)
            (upgrader,) = [p for p in tree if Path(f"/proc/{p}/exe").resolve() == product.build().resolve()]
            assert upgrader != top
            first.cancel()
            stopped = first.result(timeout=GRACE_S + 120)
            # Wait returned while the node was still down: nothing held the pipes but the upgrader, which stopped.
            assert api.state()[name]["up"] is False
        assert [(p, Path(f"/proc/{p}/cmdline").read_bytes()[:150], Path(f"/proc/{p}/stat").read_text()[:80]) for p in tree if running(p)] == []
        assert (stopped["signaled"], stopped["exit"]) == (True, -1)  # the shell (or `iluvatar`), SIGKILLed by Go's exec
        assert stopped["error"].startswith(f"signal: killed: running {json.dumps(command)}:\n")
        assert 0 <= stopped["waitedAfterCancelMs"] < GRACE_S * 1000
        lines = stopped["stderr"].splitlines()
        assert lines[-2] == (
            "upgrader: -: SIGTERM: stopping: every wait ends now, as a failure; putting back a drain before a reboot may take up to 1m0s, "
            "and the upgrader ends within 1m15s"
        )
        # The wait for the reboot, stopped (what it saw last: the node not answering).
        assert lines[-1].startswith(f"upgrader: FAILED: {name}: reboot: stopped: SIGTERM; last seen: the node did not come back ("), lines[-1]
        assert lines[-1].endswith(f"; look with: talosctl -n {ip} dmesg; the machine's console")
        assert stopped["stdout"] == ""  # no record: the step failed

        # The node comes back (powered again); the next `pulumi up` runs the same step, which finds the upgrade done.
        api.crash(name)
        until("the node back", lambda: api.state()[name]["up"], 30)
        upgrades = mutations(api)
        with step(command, stdin, sh=sh) as second:
            finished = second.result(timeout=300)
        assert (finished["error"], finished["exit"]) == ("", 0)
        assert f"upgrader: {name}: config unchanged and Talos as configured: checking health only" in finished["stderr"].splitlines()
        assert json.loads(finished["stdout"])["node"] == name
        assert mutations(api) == upgrades
        assert api.state()[name]["version"] == NEWER


@pytest.mark.parametrize("sh_name", list(SHELLS))
def test_a_step_killed_while_the_upgrader_builds_leaves_no_build_running_and_nothing_half_written(tmp_path: Path, sh_name: str) -> None:
    """The first step after the upgrader's sources changed builds it: the shell (or `iluvatar`) killed meanwhile, the
    process building gets SIGTERM, kills the go command with every compiler it started, and removes what the build
    had written."""
    cache = tmp_path / "cache"
    (cache / "go").mkdir(parents=True)
    # The project's modules (nothing fetched), an empty build cache: the standard library and every module compiled
    # afresh, a build of minutes.
    (cache / "go" / "mod").symlink_to(golang.go_env()["GOMODCACHE"])
    env = {**os.environ, "ILUVATAR_CACHE": str(cache)}
    ip = addresses(1)[0]
    _, command = worker_step(ip)
    sh = shell(sh_name)
    with step(command, json.dumps({"talosconfig": "(not read: the step is stopped first)", "machineConfig": "-"}), env, sh=sh) as building:
        top = building.shell()

        def read(path: str) -> bytes:
            # A process listed a moment ago may have exited since (a compiler finishing): it reads as nothing.
            try:
                return Path(path).read_bytes()
            except (FileNotFoundError, ProcessLookupError):
                return b""

        def go_build() -> list[int]:
            # A child the go command has forked but not yet exec'd into its compiler still reads the go command's
            # cmdline (fork(2) copies it; execve(2) replaces it), a window a loaded machine widens: only the topmost
            # `go build` is the go command.
            found = [p for p in descendants(top) if read(f"/proc/{p}/cmdline").split(b"\0")[1:2] == [b"build"]]
            return [p for p in found if parent(read(f"/proc/{p}/stat")) not in found]

        def parent(stat: bytes) -> int:
            # proc(5): pid (comm) state ppid ...; comm may hold spaces and parentheses, so read after the last ')'.
            fields = stat.rpartition(b")")[2].split()
            return int(fields[1]) if len(fields) > 1 else 0

        def compiling() -> bool:
            go = go_build()
            return bool(go) and any(read(f"/proc/{c}/comm").strip() == b"compile" for c in children(go[0]))

        until("the go command compiling", compiling, 300)
        assert forks(sh, top) is (sh_name == "dash")
        (go,) = go_build()
        tree = [p for p in descendants(top) if p not in group(go)]  # the shell or not, `iluvatar`'s processes
        building.cancel()
        stopped = building.result(timeout=60)
    assert group(go) == []  # the go command and every compiler it started
    assert [(p, Path(f"/proc/{p}/cmdline").read_bytes()[:150], Path(f"/proc/{p}/stat").read_text()[:80]) for p in tree if running(p)] == []
    lines = stopped["stderr"].splitlines()
    assert lines[0] == (
        "upgrader: building the upgrader first: its sources (upgrader/) are not built in this machine's cache yet "
        "(once per change of them, a few minutes from cold); the build counts against this step's --timeout 45m"
    )
    assert lines[-1] == "upgrader: stopped by SIGTERM while the upgrader was being built: nothing ran (the build starts again at the next run)"
    assert sorted(p.name for p in (cache / "bin").iterdir()) == []  # no binary, no temporary one, no work folder


def test_a_cold_build_counts_against_the_steps_timeout(tmp_path: Path) -> None:
    """The build is part of the step: with a --timeout shorter than the build, it is stopped at the bound and nothing runs."""
    cache = tmp_path / "cache"
    (cache / "go").mkdir(parents=True)
    (cache / "go" / "mod").symlink_to(golang.go_env()["GOMODCACHE"])
    ip = addresses(1)[0]
    _, command = worker_step(ip)
    short = command.replace(" --timeout 45m", " --timeout 3s")
    with step(short, json.dumps({"talosconfig": "-", "machineConfig": "-"}), {**os.environ, "ILUVATAR_CACHE": str(cache)}) as building:
        result = building.result(timeout=120)
    assert (result["exit"], result["signaled"]) == (product.EXIT_FAILED, False)
    lines = result["stderr"].splitlines()
    assert lines[0].endswith("the build counts against this step's --timeout 3s")
    assert lines[-1] == (
        "upgrader: cannot build the upgrader within this step's --timeout 3s: building upgrader (upgrader/) did not finish within 3 s: stopped"
        + product.AHEAD
    )
    assert sorted(p.name for p in (cache / "bin").iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "found"),
    [
        (["apply", "--node", "a=1.2.3.4", "--timeout", "45m"], (4, "45m", 2700.0)),
        (["apply", "--timeout=1h30m", "--node", "a=1.2.3.4"], (1, "1h30m", 5400.0)),
        (["bootstrap", "-timeout", "90s", "--timeout", "1.5m"], (4, "1.5m", 90.0)),  # the last one, as Go's flag package takes it
        (["probe", "--node", "a=1.2.3.4", "--deadline", "3s"], None),
        (["apply", "--timeout", "soon"], None),  # the upgrader's own usage error says so
        (["apply", "--timeout", "-5m"], None),
        (["apply", "--timeout"], None),
    ],
)
def test_the_steps_timeout_is_read_as_the_upgrader_reads_it(argv: list[str], found: tuple[int, str, float] | None) -> None:
    assert product.timeout_of(argv) == found


def test_what_is_left_of_the_timeout_reaches_the_upgrader_in_the_form_it_was_given() -> None:
    assert product.with_timeout(["apply", "--timeout", "45m"], 2, 2508.9) == ["apply", "--timeout", "41m48s"]
    assert product.with_timeout(["apply", "--timeout=2h"], 1, 3723) == ["apply", "--timeout=1h2m3s"]
    assert product.with_timeout(["apply", "--timeout", "90s"], 2, 59.99) == ["apply", "--timeout", "59s"]
