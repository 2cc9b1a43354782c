"""A household lab called off while it runs (tests.netns.lan.abandonable): what a Ctrl-C of the household tests does to
the lab each of their threads runs. The lab ends at its next wait, and leaves no network namespace and no process. And
a Pi lab's steps run as the engine runs them (tests.netns.pis.run_like_the_engine) are hung up at once."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest

from iluvatar.graph import Graph
from iluvatar.simulate import Registration
from stacks import parse_stack, read_stack_file
from tests.edit import HOMELAB
from tests.netns.household import run_all
from tests.netns.lan import CalledOffError, abandonable, in_ns, lan, require_root, sh, wait_until
from tests.netns.pis import Pis, run_like_the_engine
from tests.upgrader.run import descendants, running
from tools.kube_cluster import Cluster

require_root()

VALAR = "192.168.0.11"


def _namespaces(prefix: str) -> list[str]:
    return [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line.startswith(prefix)]


def _ours() -> set[int]:
    """The live processes under this one (the lab's dnsmasq, nginx, udhcpc, the household's loops, `ip netns exec`)."""
    return {pid for pid in descendants(os.getpid())[1:] if running(pid)}


def _inodes(namespaces: list[str]) -> set[tuple[int, int]]:
    """The network namespaces themselves (nsfs's device and inode), as `ip netns add` bind-mounts them under /run/netns."""
    found = set()
    for ns in namespaces:
        st = os.stat(f"/run/netns/{ns}")
        found.add((st.st_dev, st.st_ino))
    return found


def _in(namespaces: set[tuple[int, int]]) -> list[str]:
    """Every live process in one of `namespaces`, whoever its parent: a process whose parent the teardown killed is
    reparented to init and no longer under this one, but /proc/<pid>/ns/net still names its namespace (proc(5)), which
    outlives its /run/netns name while the process lives."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(entry / "ns" / "net")
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError):  # ended meanwhile; a zombie has no namespaces left
            continue
        if (st.st_dev, st.st_ino) in namespaces and running(int(entry.name)):
            out.append(f"{entry.name} {command}")
    return out


def _call_off_when(tmp_path: Path, what: str, ready: Callable[[str], bool]) -> None:
    """A household lab run as tests/netns/test_household.py runs it, called off once `ready(prefix)`: it ends raising
    CalledOffError, and leaves no namespace and no process in any of them."""
    raw = dict(read_stack_file(HOMELAB).config)
    ainur = raw["iluvatar:ainur"]
    raw["iluvatar:ainur"] = {**ainur, "netboot": {**ainur["netboot"], "mode": "proxy"}}
    prefix = f"ilv{os.getpid() % 10000}x"
    before = _ours()
    called_off = threading.Event()

    def household() -> None:
        # As tests/netns/test_household.py's own runs start: the netboot dnsmasq left to the bring-up.
        with abandonable(called_off), lan(parse_stack(raw), tmp_path, prefix) as net:
            net.stop("dnsmasq")
            valar = net.host("v", VALAR)
            in_ns(valar, "ip", "link", "set", "eth0", "address", net.stack.nodes[0].mac)
            run_all(net, raw, 2, valar)

    with ThreadPoolExecutor(1) as pool:
        lab = pool.submit(household)
        wait_until(what, lambda: lab.done() or ready(prefix), 600)
        assert not lab.done(), lab.exception()
        assert _namespaces(prefix) != [] and _ours() - before
        namespaces = _inodes(_namespaces(prefix))
        assert _in(namespaces) != []
        called_off.set()
        with pytest.raises(CalledOffError) as ended:
            lab.result()
        assert str(ended.value) == "the lab's run was called off"
    assert _namespaces(prefix) == []
    assert _ours() - before == set()
    assert _in(namespaces) == []


def test_a_household_lab_called_off_ends_at_its_next_wait_and_leaves_nothing(tmp_path: Path) -> None:
    # The household runs: its first client was lent an address (its renewal loop's hook wrote the event).
    _call_off_when(tmp_path, "the household's first lease", lambda prefix: (tmp_path / "events-0").exists())


def test_a_household_lab_called_off_while_a_pi_takes_over_leaves_nothing(tmp_path: Path) -> None:
    """Called off at "the Pi killed" step, once the replacement dnsmasq runs on the second Pi (tests.netns.failover,
    _start_replacement): the failover's threads, the replacement's processes and its namespace go too."""

    def replacement_runs(prefix: str) -> bool:
        return f"{prefix}p2" in _namespaces(prefix) and (tmp_path / "dnsmasq-p2.pid").exists()

    _call_off_when(tmp_path, "the replacement dnsmasq on the second Pi", replacement_runs)


def _pis(tmp_path: Path, cluster: object = None) -> Pis:
    """A Pi lab's steps without its Pis: what `hang_up` and run_like_the_engine act on."""
    return Pis(parse_stack(dict(read_stack_file(HOMELAB).config)), tmp_path, "x", cast(Cluster, cluster), tmp_path / "key")


# A dial that fails as ssh's does against a Pi rebooting (pis.DIAL_FAILED), counted in the file its first argument names.
DIAL = "echo dial >> \"$0\"; echo 'ssh: connect to host 192.168.0.21 port 22: No route to host' >&2; exit 255"


class _Pause(threading.Event):
    """`Pis.hung_up`, telling the test when a step pauses between two dials (`Pis.redial` waits on it there)."""

    def __init__(self) -> None:
        super().__init__()
        self.pausing = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.pausing.set()
        return super().wait(timeout)


def test_a_pi_labs_steps_still_running_are_hung_up(tmp_path: Path) -> None:
    """What run_like_the_engine does on a Ctrl-C or a failure while steps run: their SSH sessions end at once."""
    lab = _pis(tmp_path)
    with ThreadPoolExecutor(1) as pool:
        step = pool.submit(lab.session, ["sleep", "600"], "", 900)
        wait_until("the step's session", lambda: step.done() or bool(lab.sessions), 30)
        lab.hang_up()
        assert step.result().returncode == -signal.SIGKILL
    assert lab.sessions == set()


def test_a_step_between_two_dials_is_hung_up_and_dials_no_more(tmp_path: Path) -> None:
    """A step whose Pi is rebooting (its join's dialErrorLimit 60) spends most of its time in the pause between dials,
    in no session: the hang-up ends the pause, and the step ends as a session killed, without dialling again."""
    lab = _pis(tmp_path)
    lab.hung_up = pause = _Pause()
    dials = tmp_path / "dials"
    with ThreadPoolExecutor(1) as pool:
        step = pool.submit(lab.redial, ["sh", "-c", DIAL, str(dials)], "", 900, 60)
        wait_until("the step's pause after its first dial", lambda: step.done() or pause.pausing.is_set(), 30)
        lab.hang_up()
        assert step.result().returncode == -signal.SIGKILL
    assert dials.read_text() == "dial\n"
    assert lab.sessions == set()


def test_a_session_after_the_hang_up_is_not_started(tmp_path: Path) -> None:
    """A step submitted, or between its connection and its Popen, when the hang-up comes: its session never runs."""
    lab = _pis(tmp_path)
    lab.hang_up()
    ran = tmp_path / "ran"
    done = lab.session(["touch", str(ran)], "", 900)
    assert (done.returncode, done.stdout, done.stderr) == (-signal.SIGKILL, "", "")
    assert not ran.exists()
    assert lab.sessions == set()


class _RefusingClient:
    """The lab's API server refusing a ConfigMap's apply, once the steps the test means are where it means."""

    def __init__(self, ready: Callable[[], bool]) -> None:
        self.ready = ready

    def apply(self, obj: dict[str, Any], field_manager: str, force: bool) -> dict[str, Any]:
        wait_until("the other steps in a session and in a redial pause", self.ready, 30)
        raise RuntimeError(f"the API server refused ConfigMap {obj['metadata']['name']}")


def _hung_up_by_the_test(lab: Pis) -> str:
    lab.hang_up()
    return "it did not hang them up; the test did"


def test_run_like_the_engine_hangs_up_its_steps_when_a_step_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step that raises (a ConfigMap's apply refused) while independent steps run, one in a session that would go on
    for ten minutes and one in its redial pause: the error comes out of run_like_the_engine at once, both steps ended as
    sessions killed. Without the hang-up, the pool's `with` waited for both (the sleep, then 60 dials)."""
    dials = tmp_path / "dials"
    lab = _pis(tmp_path)
    lab.hung_up = pause = _Pause()
    client = _RefusingClient(lambda: bool(lab.sessions) and pause.pausing.is_set())
    lab.cluster = cast(Cluster, type("RefusingCluster", (), {"client": client})())
    ended: dict[str, subprocess.CompletedProcess[str]] = {}

    def ssh(connection: dict[str, Any], script: str, stdin: str | None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        # Pis.ssh's session and redials, run here rather than over SSH to a Pi: the script `exec`s its program, as
        # `ip netns exec` execs ssh, so the session's process is the one the hang-up kills.
        done = lab.redial(["sh", "-c", script, str(dials)], stdin or "", timeout, int(connection.get("dialErrorLimit", 1)))
        ended[script] = done
        return done

    monkeypatch.setattr(lab, "ssh", ssh)

    def command(name: str, script: str, dial_error_limit: int) -> Registration:
        connection = {"host": "192.168.0.21", "user": "pi", "dialErrorLimit": dial_error_limit}
        return Registration(f"urn:{name}", "command:remote:Command", name, "", True, "", False, (), {"connection": connection, "create": script})

    boot_pointer = Registration(
        "urn:c-boot-pointer", "kubernetes:core/v1:ConfigMap", "boot-pointer", "", True, "", False, (),
        {"metadata": {"name": "boot-pointer", "namespace": "kube-system"}, "data": {}},
    )  # fmt: skip
    steps = [command("a-long", "exec sleep 600", 1), command("b-rebooting", DIAL, 60), boot_pointer]
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(run_like_the_engine, lab, Graph({s.urn: s for s in steps}), steps)
        # A bound on a hang only: hung up, the run ends as soon as the apply is refused. Past it, the steps are hung up
        # here, so the test fails rather than waiting out the sleep.
        wait_until("run_like_the_engine to end, its steps hung up", run.done, 120, detail=lambda: _hung_up_by_the_test(lab))
        with pytest.raises(RuntimeError) as raised:
            run.result()
    assert str(raised.value) == "the API server refused ConfigMap boot-pointer"
    assert {script: done.returncode for script, done in ended.items()} == {"exec sleep 600": -signal.SIGKILL, DIAL: -signal.SIGKILL}
    assert dials.read_text() == "dial\n"
    assert lab.sessions == set()
