"""The netbooting maiar's roots: the real NFS-Ganesha runs the generated config and the program's own serve script in a
network namespace (as the NFS container runs them on a Pi), and Pis' namespaces mount their roots with libnfs.

What this sandbox's kernel allows, found before this test was written: no NFS client and no nfsd (CONFIG_NFS_FS and
CONFIG_NFSD are not set, CONFIG_MODULES is not set, /proc/filesystems has no nfs; /proc/fs/nfsd is an empty folder),
so neither `mount -t nfs` nor the kernel's server can run; overlayfs, ext4 and loop devices are built in. The server is
therefore the userspace NFS-Ganesha the pod runs, and the client libnfs's (tests/netns/nfs_client.py, nfs-cat, nfs-cp,
nfs-ls), which speaks the same NFSv3 over TCP as klibc's nfsmount and the kernel client. The Pi host's rpcbind (Ubuntu's
nfs-common brings it to every Pi) is Debian's rpcbind in the server's namespace.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from plans.netboot import nfs, pi_pods, pis
from stacks import StackConfig
from tests import pi_image
from tests.netns.lan import REPO, Lan, in_ns, require_root, wait_until
from tests.netns.lan import kubelet_probe as probe
from tests.netns.test_pi_netboot import stack_for
from tests.tools import require

require_root()

SVC = "192.168.0.14"
EONWE_IP, ILMARE_IP, STRANGER_IP = "192.168.0.12", "192.168.0.13", "192.168.0.150"
OTHER_PI = "192.168.0.15"  # a second disk-booting Pi that takes the service address over


UBUNTU_ROOT = pi_image.ROOT


@dataclass
class Server:
    """One Pi's NFS container: its namespace, the program's serve script under a mount namespace of its own."""

    net: Lan
    ns: str
    root: Path
    stack: StackConfig
    image: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    # The boot pointers' files as the kubelet projects them (plans.netboot.pi_pods.boot_projection); None: the stack's.
    pointers: dict[str, str] | None = None
    # Where the roots are (None: the module's `roots` folder beside the servers'), and the first version's single volume.
    roots: Path | None = None
    legacy: Path | None = None

    def start(self) -> None:
        pis_dir, boots, core = self.root / "pis", self.root / "boots", self.root / "ganesha-core.conf"
        shutil.rmtree(pis_dir, ignore_errors=True)
        shutil.rmtree(boots, ignore_errors=True)
        # Laid out as the kubelet projects the pi-netboot ConfigMap's items into the NFS container (plans.netboot.pi_pods).
        for rel, text in pi_pods.project(self.stack).items():
            (pis_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (pis_dir / rel).write_text(text)
        for rel, text in (pi_pods.boot_projection(self.stack) if self.pointers is None else self.pointers).items():
            (boots / rel).parent.mkdir(parents=True, exist_ok=True)
            (boots / rel).write_text(text)
        (self.root / "exports").mkdir(exist_ok=True)
        core.write_text(nfs.ganesha_conf(self.stack))
        script = self.root / "serve.sh"
        script.write_text(nfs.serve_script())
        env = {
            "ADDRESS": SVC,
            "IMAGE": str(self.image),
            "ROOTS": str(self.roots or self.root.parent / "roots"),
            **({"LEGACY": str(self.legacy)} if self.legacy else {}),
            "PIS": str(pis_dir),
            "BOOTS": str(boots),
            "EXPORTS": str(self.root / "exports"),
            "CORE": str(core),
            "CONF": str(self.conf),
            # How often the script looks for the stack's image once it started without it (10 s in the pod).
            "IMAGE_POLL": "1",
        }
        # The Pi host's rpcbind, then the container's script, in one mount namespace whose /run is its own.
        wrapped = f"mount -t tmpfs none /run && mkdir -p /run/rpcbind && {require('rpcbind')} -w -f & sleep 0.3; exec sh {script}"
        # A log of this start alone: its readiness is read from it (an earlier start's would pass at once).
        log = (self.root / "ganesha.log").open("wb")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "unshare", "--mount", "--propagation", "private", "sh", "-c", wrapped],
            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.procs.append(proc)
        wait_for(lambda: "NFS SERVER INITIALIZED" in (self.root / "ganesha.log").read_text(), 20, f"Ganesha in {self.ns}", self.root / "ganesha.log")
        # Ready for a Pi's mount once rpcbind gives the MOUNT and NFS programs' ports and each answers its NULL call over
        # TCP at the service address: what the mount itself needs, where the line above only says Ganesha's threads
        # started (a mount just after a start was seen failing at its NFS connection, "nfs_service failed").
        wait_for(
            lambda: all(self.answers(program) for program in ("mountd", "nfs")),
            20,
            f"MOUNT and NFS v3 at {SVC} in {self.ns}",
            self.root / "ganesha.log",
        )

    def answers(self, program: str) -> bool:
        """rpcinfo's NULL call to `program` version 3 over TCP at the service address, its port asked of rpcbind."""
        return in_ns(self.ns, "rpcinfo", "-T", "tcp", SVC, program, "3", check=False, timeout=10).returncode == 0

    def script_copies(self) -> list[int]:
        """The processes of this start that run the serve script: its shell execs Ganesha, so these are the copies it
        forked, the reload it runs once the stack's image is built (plans.netboot.nfs.serve_script), while they last."""
        script = str(self.root / "serve.sh").encode()
        sessions = {proc.pid for proc in self.procs}  # each start is a session of its own (start_new_session)
        found = []
        for entry in Path("/proc").iterdir():
            try:
                session = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3]) if entry.name.isdigit() else 0
                if session in sessions and script in (entry / "cmdline").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
        return found

    @property
    def conf(self) -> Path:
        """The whole ganesha.conf the script wrote (the container's /run/iluvatar/ganesha.conf)."""
        return self.root / "ganesha.conf"

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # a Pi that dies: its namespace's processes with it
                proc.wait(timeout=10)
        self.procs.clear()
        # Every process of the group gone: its ports free for the next start in this namespace.
        wait_for(
            lambda: not re.search(r":(111|2049|627)\s", in_ns(self.ns, "ss", "-ltnH", check=False).stdout), 15, f"the ports of {self.ns} to close"
        )


def wait_for(check: Any, seconds: float, what: str, log: Path | None = None) -> None:
    """lan.wait_until every 0.2 s, failing with the last of `log`: each check here reads a log or runs a command."""
    wait_until(what, check, seconds, lambda: log.read_text()[-2000:] if log else "", interval=0.2)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lan, Server]]:
    for tool in ("ganesha.nfsd", "rpcbind", "nfs-cat", "nfs-cp", "nfs-ls"):
        require(tool)
    root = tmp_path_factory.mktemp("pi-nfs")
    root.chmod(0o755)
    stack = stack_for("dhcp")
    net = Lan(stack=stack, root=root, prefix=f"ilv{os.getpid() % 10000}n", pi_ip="192.168.0.11")
    # The root as the program's builder cuts it out of an Ubuntu-shaped image (tests/pi_image.py).
    image = pi_image.built(root, pis.image_id(stack))
    (root / "a").mkdir()
    server = Server(net, net.pi, root / "a", stack, image)
    try:
        net.build()
        for ip in (EONWE_IP, ILMARE_IP, STRANGER_IP):
            client_ns(net, ip)
        server.start()
        yield net, server
    finally:
        server.stop()
        net.teardown()


def client_ns(net: Lan, ip: str) -> str:
    return net.host(f"c{ip.rsplit('.', 1)[1]}", ip)


IMAGE = pis.image_id(stack_for("dhcp"))


def export(pi: str = "ilmare", image: str = IMAGE) -> str:
    """The export cmdline.txt names for the Pi's root of `image` (plans.netboot.pis.export_path)."""
    return f"{pis.EXPORT_ROOT}/{pi}/{image}"


def url(path: str, pi: str = "ilmare", image: str = IMAGE) -> str:
    # The options of cmdline.txt as libnfs spells them: NFSv3 over TCP to port 2049.
    return f"nfs://{SVC}{export(pi, image)}{path}?version=3&nfsport={pis.NFS_PORT}"


def nfs_cat(net: Lan, ip: str, path: str, pi: str = "ilmare", image: str = IMAGE) -> subprocess.CompletedProcess[str]:
    # One mount, as the server is ready for it: Server.start waits until MOUNT and NFS answer at the service address.
    return in_ns(client_ns(net, ip), require("nfs-cat"), url(path, pi, image), check=False)


def write(net: Lan, ip: str, path: str, text: str, pi: str = "ilmare", image: str = IMAGE) -> subprocess.CompletedProcess[str]:
    args = ["python3", "-m", "tests.netns.nfs_client", "--server", SVC, "--export", export(pi, image), "--path", path, "--write", text]
    return subprocess.run(["ip", "netns", "exec", client_ns(net, ip), *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=False)


def test_each_pi_reads_its_cloud_init_seed_and_fstab_from_its_root(served: tuple[Lan, Server]) -> None:
    net, server = served
    for name, ip in (("ilmare", ILMARE_IP), ("eonwe", EONWE_IP)):
        node = next(n for n in server.stack.nodes if n.name == name)
        for path, text in pis.seed_files(server.stack, node).items():
            got = nfs_cat(net, ip, path, name)
            assert (got.returncode, got.stdout) == (0, text), (name, path, got.stderr)
        # The image's own files, through the Pi's overlay.
        assert nfs_cat(net, ip, "/etc/issue", name).stdout == UBUNTU_ROOT["etc/issue"]


def test_a_pis_fstab_keeps_what_cloud_init_added_across_a_restart_of_the_server(served: tuple[Lan, Server]) -> None:
    """cloud-init's mounts module adds the Longhorn disk's line to the Pi's fstab once per instance: the server writes
    the Pi's fstab into its root only when the root has none, so a restart (a move, a new config) keeps the line. The
    first version wrote it over at each start, and the Pi lost its Longhorn disk at its next reboot."""
    net, server = served
    first = nfs_cat(net, EONWE_IP, "/etc/fstab", "eonwe")
    line = "LABEL=longhorn /var/lib/longhorn xfs defaults,nofail,discard,comment=cloudconfig 0 2\n"
    done = write(net, EONWE_IP, "/etc/fstab", first.stdout + line, "eonwe")
    assert done.returncode == 0, done.stdout
    server.stop()
    server.start()
    assert nfs_cat(net, EONWE_IP, "/etc/fstab", "eonwe").stdout == first.stdout + line
    # The seed, though, is the stack's again at each start.
    node = next(n for n in server.stack.nodes if n.name == "eonwe")
    assert (
        nfs_cat(net, EONWE_IP, "/var/lib/cloud/seed/nocloud/user-data", "eonwe").stdout
        == pis.seed_files(server.stack, node)["/var/lib/cloud/seed/nocloud/user-data"]
    )


def test_a_pi_writes_its_own_root_and_the_image_is_untouched(served: tuple[Lan, Server]) -> None:
    net, server = served
    before = hashlib.sha256((server.image / "root.img").read_bytes()).hexdigest()
    ns = client_ns(net, ILMARE_IP)
    # Over a file of the image (a copy-up), and a new file.
    done = write(net, ILMARE_IP, "/etc/hostname", "ilmare\n")
    assert done.returncode == 0, done.stdout
    new = server.root / "motd"
    new.write_text("hello\n")
    done = in_ns(ns, require("nfs-cp"), str(new), url("/etc/motd"), check=False)
    assert done.returncode == 0, done.stderr
    assert nfs_cat(net, ILMARE_IP, "/etc/motd").stdout == "hello\n"
    assert nfs_cat(net, ILMARE_IP, "/etc/hostname").stdout == "ilmare\n"
    # Copy-on-write: the write is in ilmare's layer; eonwe still sees the image's file; the image is as it was.
    layer = server.root.parent / "roots" / "ilmare" / pis.image_id(server.stack) / "upper"
    assert (layer / "etc" / "hostname").read_text() == "ilmare\n"
    assert nfs_cat(net, EONWE_IP, "/etc/hostname", "eonwe").stdout == "ubuntu\n"
    assert hashlib.sha256((server.image / "root.img").read_bytes()).hexdigest() == before


@pytest.mark.parametrize(("ip", "who"), [(EONWE_IP, "another Pi"), (STRANGER_IP, "a machine nobody listed")])
def test_no_one_else_can_mount_or_write_a_pis_root(served: tuple[Lan, Server], ip: str, who: str) -> None:
    net, server = served
    layer = server.root.parent / "roots" / "ilmare" / pis.image_id(server.stack) / "upper"
    before = sorted(str(p.relative_to(layer)) for p in layer.rglob("*"))
    wrote = write(net, ip, "/etc/hostname", "not mine\n")
    read = nfs_cat(net, ip, "/etc/issue")
    assert wrote.returncode != 0 and read.returncode != 0, who
    assert "MNT3ERR_ACCES(13)" in wrote.stdout, (who, wrote.stdout)
    assert "MNT3ERR_ACCES(13) Permission denied" in read.stderr, (who, read.stderr)
    assert sorted(str(p.relative_to(layer)) for p in layer.rglob("*")) == before
    assert "not mine" not in (layer / "etc" / "hostname").read_text()


def test_the_roots_are_served_on_the_service_address_only(served: tuple[Lan, Server]) -> None:
    net, _ = served
    ns = client_ns(net, ILMARE_IP)
    on_pi = in_ns(ns, require("nfs-ls"), f"nfs://192.168.0.11{export()}/?version=3&nfsport={pis.NFS_PORT}", check=False)
    assert on_pi.returncode != 0
    listing = in_ns(ns, require("nfs-ls"), url("/etc"), check=False)
    assert listing.returncode == 0 and "issue" in listing.stdout, listing.stderr


def test_the_kubelets_readiness_probe_of_pi_nfs_passes_where_ganesha_serves(served: tuple[Lan, Server]) -> None:
    """pi-nfs is Ready once Ganesha serves: the probe as the kubelet runs it, from the Pi, at the address it dials. The
    Pod's IP is the Pi's own (host network), where Ganesha does not listen; a probe with no host (the first version)
    failed there for ever, and `pulumi up`'s wait for pi-nfs with it."""
    net, server = served
    spec = pi_pods.nfs_pod(server.stack)
    got = probe(net.pi, spec, "nfs", net.pi_ip)
    assert got.returncode == 0, got.stderr
    assert got.stderr.strip() == f"{SVC}:{pis.NFS_PORT} open"
    # What the probe with no host would have dialled: the Pi's own address, refused.
    del spec["containers"][0]["readinessProbe"]["tcpSocket"]["host"]
    bare = probe(net.pi, spec, "nfs", net.pi_ip)
    assert bare.returncode == 1 and f"{net.pi_ip}:{pis.NFS_PORT}" in bare.stderr and "refused" in bare.stderr, bare.stderr


def test_a_new_image_not_built_yet_takes_no_pis_root_away(served: tuple[Lan, Server]) -> None:
    """Review 41-1 H2: the server started for a new image (its IMAGE) that this Pi has not built yet still serves every
    Pi the root its pointer boots, and makes no root of the new one; the first version exited, and every root was gone
    until the build ended."""
    net, server = served
    old = server.image
    try:
        server.stop()
        server.image = old.parent / "ubuntu-24.04.9-notbuilt"
        server.start()
        assert "the Pi image at" in (server.root / "ganesha.log").read_text()
        assert sorted(exports_of(server.conf)) == [export("eonwe"), export("ilmare")]
        got = nfs_cat(net, ILMARE_IP, "/etc/issue")
        assert (got.returncode, got.stdout) == (0, UBUNTU_ROOT["etc/issue"]), got.stderr
        assert not (server.root.parent / "roots" / "ilmare" / "ubuntu-24.04.9-notbuilt").exists()
    finally:
        server.stop()
        server.image = old
        server.start()


def test_a_root_survives_the_servers_move_to_another_pi(served: tuple[Lan, Server]) -> None:
    """The netboot pods move (a Pi dies): the service address goes to another Pi, whose NFS container mounts the same
    image and the same layers (the volume that follows it) and serves again. What a Pi holding its root sees, measured."""
    net, server = served
    # A file of the image (the shared lower layer) and one the Pi wrote (its own layer), each held open.
    (server.root / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    made = in_ns(client_ns(net, ILMARE_IP), require("nfs-cp"), str(server.root / "machine-id"), url("/etc/machine-id"), check=False)
    assert made.returncode == 0, made.stderr
    holds = {path: Hold(net, ILMARE_IP, path) for path in ("/etc/issue", "/etc/machine-id")}
    other = Server(net, net.host("p2", OTHER_PI), server.root.parent / "b", server.stack, server.image)
    other.root.mkdir(exist_ok=True)
    try:
        # Both hold their file and read it before the server goes.
        for hold in holds.values():
            hold.wait_read(0, "read before the server goes")
        killed, at_kill = time.monotonic(), {path: len(hold.reads) for path, hold in holds.items()}
        server.stop()
        in_ns(net.pi, "ip", "addr", "del", f"{SVC}/32", "dev", "eth0", check=False)
        # The address moves only once each Pi's reads failed with no server there (each read gives up after 2 s): how
        # long kube-vip and the scheduler take to move it is measured elsewhere (docs/layers/ainur.md#failover).
        for path, hold in holds.items():
            hold.wait_read(at_kill[path], "failing with the server gone", key="error")
        in_ns(other.ns, "ip", "addr", "add", f"{SVC}/32", "dev", "eth0")
        net.announce(other.ns, SVC)
        other.start()
        served_again = time.monotonic() - killed
        at_start = {path: len(hold.reads) for path, hold in holds.items()}
        for path, hold in holds.items():
            hold.wait_read(at_start[path], "read by its handle from the other Pi")
        reads_of = {path: hold.stop() for path, hold in holds.items()}
    finally:
        other.stop()
        for hold in holds.values():
            hold.kill()
        server.ns = net.pi
        in_ns(other.ns, "ip", "addr", "del", f"{SVC}/32", "dev", "eth0", check=False)
        in_ns(net.pi, "ip", "addr", "replace", f"{SVC}/32", "dev", "eth0")
        net.announce(net.pi, SVC)
        server.start()
    expected = {"/etc/issue": UBUNTU_ROOT["etc/issue"], "/etc/machine-id": "0123456789abcdef0123456789abcdef\n"}
    for path, reads in reads_of.items():
        errors = [r for r in reads if "error" in r]
        oks = [r["t"] for r in reads if "ok" in r]
        # What the Pi sees: its reads stall from the last one the old server answered to the first the new one did.
        stall = round(max(b - a for a, b in itertools.pairwise(oks)), 2) if len(oks) > 1 else None
        report = {"path": path, "server_down_s": round(served_again, 1), "reads_stalled_s": stall, "errors": errors}
        print("failover:", json.dumps(report))
        # Read by the old server, failed while none served, read again by the held handle from the other Pi.
        assert [("ok" in r) for r in reads[: at_kill[path]]][:1] == [True], report
        assert any("error" in r for r in reads[at_kill[path] : at_start[path]]), report
        assert any("ok" in r for r in reads[at_start[path] :]), report
        assert all(r["data"] == expected[path] for r in reads if "ok" in r), report
        assert not any("STALE" in r["error"] for r in errors), report


class Hold:
    """A Pi's hold on one file of its root (the stack's image), read by its handle every 0.25 s until stopped
    (tests/netns/nfs_client.py), each read collected as the client prints it, so a test acts at what the Pi has read."""

    def __init__(self, net: Lan, ip: str, path: str) -> None:
        args = ["python3", "-m", "tests.netns.nfs_client", "--server", SVC, "--export", export(), "--path", path, "--until-stopped"]
        self.path = path
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", client_ns(net, ip), *args, "--interval", "0.25"], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        self.reads: list[dict[str, Any]] = []
        self.reader = threading.Thread(target=self._collect, daemon=True)
        self.reader.start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.reads.append(json.loads(line))

    def wait_read(self, since: int, what: str, key: str = "ok") -> None:
        """Until a read at or after index `since` has `key` ("ok": the file read; "error": the read failed)."""
        wait_until(
            f"{self.path} {what}", lambda: any(key in r for r in self.reads[since:]), 60, lambda: (self.proc.poll(), self.reads[-5:]), interval=0.1
        )

    def stop(self) -> list[dict[str, Any]]:
        """Its reads, once the client stopped (SIGTERM: after the read under way) and printed its last."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(timeout=30) == 0, self.reads[-5:]
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.reader.join(timeout=10)
        return self.reads

    def kill(self) -> None:
        """The client gone whatever happened (a test's clean-up)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def roots_of(folder: Path) -> list[str]:
    """The roots of one Pi on the volume: its folders (beside them, the serve script's .booted and .previous)."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def exports_of(conf: Path) -> dict[str, int]:
    """Each export of the generated ganesha.conf by its pseudo path, with its id."""
    blocks = re.findall(r"Export_Id = (\d+);\n\s+Path = [^;]+;\n\s+Pseudo = ([^;]+);", conf.read_text())
    return {pseudo: int(ident) for ident, pseudo in blocks}


def test_a_new_image_gives_each_pi_a_root_beside_the_one_it_runs_which_never_changes(served: tuple[Lan, Server]) -> None:
    """Day 2 (plans.netboot.roll): a new image is built beside the old and the server restarts on it. Each Pi gets a
    root of it, its own export beside the one it runs, carrying its k3s node password and SSH host keys; the running
    root stays as it was, at its path and export id, and a Pi holding a file of it reads on through the restart. A
    Pi's boot pointer moved to the new image keeps its old root served (it runs it until its reboot); once the old
    image is gone from the Pi (no pointer names it), its old root goes, but never a root a pointer still boots."""
    net, server = served
    roots = server.root.parent / "roots"
    old = IMAGE
    upper = roots / "ilmare" / old / "upper"
    (upper / "etc" / "rancher" / "node").mkdir(parents=True, exist_ok=True)
    (upper / "etc" / "rancher" / "node" / "password").write_text("k3s-node-password\n")
    (upper / "etc" / "ssh").mkdir(parents=True, exist_ok=True)
    (upper / "etc" / "ssh" / "ssh_host_ed25519_key").write_text("host key\n")
    assert write(net, ILMARE_IP, "/etc/hostname", "written on the old image\n").returncode == 0
    before = exports_of(server.conf)
    slots = {name: nfs.export_ids(next(n for n in server.stack.nodes if n.name == name)) for name in ("eonwe", "ilmare")}
    assert before == {export("eonwe"): slots["eonwe"][0], export("ilmare"): slots["ilmare"][0]}
    new_root = {**pi_image.ROOT, "etc/issue": "Ubuntu 24.04.4 LTS \\n \\l\n"}
    xz, sha, _ = pi_image.make(server.root.parent / "newer-src", root=new_root)
    newer_id = "ubuntu-24.04.4-newer"
    newer = server.image.parent / newer_id
    assert pi_image.build(__import__("plans.netboot.pi_image", fromlist=["x"]).build_script(), xz, sha, newer).returncode == 0
    hold = Hold(net, ILMARE_IP, "/etc/hostname")
    old_image, pointers = server.image, pi_pods.boot_projection(server.stack)
    try:
        hold.wait_read(0, "read before the restart")
        server.stop()
        server.image = newer
        server.start()  # the pointers still name the old image
        hold.wait_read(len(hold.reads), "read by its handle after the restart")
        reads = hold.stop()
        # The running root never changed under the Pi: its held handle read the same file before and after the restart.
        data = [r["data"] for r in reads if "ok" in r]
        assert data[:1] == data[-1:] == ["written on the old image\n"]
        assert not [r for r in reads if "STALE" in r.get("error", "")], reads
        # Both roots of each Pi served, the old at its id, the new at the next slot's.
        assert exports_of(server.conf) == {
            **before,
            export("eonwe", newer_id): slots["eonwe"][1],
            export("ilmare", newer_id): slots["ilmare"][1],
        }
        assert nfs_cat(net, ILMARE_IP, "/etc/issue").stdout == UBUNTU_ROOT["etc/issue"]
        assert nfs_cat(net, ILMARE_IP, "/etc/iluvatar/pi-image").stdout == f"{old}\n"
        # The new root: the new image's files, what must outlive an image, its own seed, and which image it is.
        assert nfs_cat(net, ILMARE_IP, "/etc/issue", image=newer_id).stdout == new_root["etc/issue"]
        assert nfs_cat(net, ILMARE_IP, "/etc/hostname", image=newer_id).stdout == "ubuntu\n"
        assert nfs_cat(net, ILMARE_IP, "/etc/rancher/node/password", image=newer_id).stdout == "k3s-node-password\n"
        assert nfs_cat(net, ILMARE_IP, "/etc/ssh/ssh_host_ed25519_key", image=newer_id).stdout == "host key\n"
        assert nfs_cat(net, ILMARE_IP, "/etc/iluvatar/pi-image", image=newer_id).stdout == f"{newer_id}\n"
        ilmare = next(n for n in server.stack.nodes if n.name == "ilmare")
        for path, text in pis.seed_files(server.stack, ilmare).items():
            assert nfs_cat(net, ILMARE_IP, path, image=newer_id).stdout == text
        # Another Pi's new root is as closed to ilmare as its old one.
        assert "MNT3ERR_ACCES(13)" in nfs_cat(net, ILMARE_IP, "/etc/issue", "eonwe", newer_id).stderr
        # ilmare's pointer moved (its roll): both its roots stay served, at their ids, while it may still run the old.
        server.stop()
        server.pointers = {**pointers, "ilmare/image": newer_id}
        server.start()
        assert exports_of(server.conf)[export("ilmare")] == slots["ilmare"][0]
        assert nfs_cat(net, ILMARE_IP, "/etc/hostname").stdout == "written on the old image\n"
        # The old image gone from this Pi (the builder removes it once no pointer names it; here eonwe's still does):
        # ilmare's old root stays, its rollback root (review 41-1 H3: what its pointer named before it moved), and
        # eonwe's, which its pointer boots; both stay on the volume, unserved until the image is back.
        server.stop()
        shutil.move(old_image, server.root.parent / "parked")
        server.start()
        assert roots_of(roots / "ilmare") == sorted([old, newer_id])
        assert (roots / "ilmare" / ".previous").read_text() == f"{old}\n"
        assert (roots / "ilmare" / old / "upper" / "etc" / "hostname").read_text() == "written on the old image\n"
        assert roots_of(roots / "eonwe") == sorted([old, newer_id])
        assert exports_of(server.conf) == {export("eonwe", newer_id): slots["eonwe"][1], export("ilmare", newer_id): slots["ilmare"][1]}
        assert "is not served: the image is not built on this Pi" in (server.root / "ganesha.log").read_text()
    finally:
        hold.kill()
        server.stop()
        if (server.root.parent / "parked").exists():
            shutil.move(server.root.parent / "parked", old_image)
        server.image, server.pointers = old_image, None
        server.start()


# The kernel's NFS client cannot run here (the module docstring): the reboot gate's `mount -i -t nfs` is libnfs's mount of
# the same export (nfs-ls: its MOUNT and a READDIRPLUS of the root, refused as the kernel's mount is refused), then the
# mark read through it (nfs-cat); sudo is the Pi user's (cloud-init's NOPASSWD rule), here the test's root.
GATE_MOUNT = f"""#!/bin/bash
set -eu
[ "$1 $2 $3 $4" = "-i -t nfs -o" ] || {{ echo "stand-in mount: '$*' is not stood in" >&2; exit 2; }}
opts=$5 source=$6 dir=$7
port=$(printf '%s' "$opts" | tr , '\\n' | sed -n 's/^port=//p')
url="nfs://${{source%%:*}}${{source#*:}}"
{require("nfs-ls")} "$url/?version=3&nfsport=$port" >/dev/null || exit 32
mkdir -p "$dir/etc/iluvatar"
{require("nfs-cat")} "$url/etc/iluvatar/pi-image?version=3&nfsport=$port" > "$dir/etc/iluvatar/pi-image" || rm -f "$dir/etc/iluvatar/pi-image"
"""


def gate(net: Lan, ip: str, stack: StackConfig, pi: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """The roll's reboot gate (plans.netboot.roll.export_gate, 2 s for its 300) run in the Pi's namespace."""
    from plans import k3s
    from plans.netboot import roll

    bin_ = tmp / "gate-bin"
    bin_.mkdir(exist_ok=True)
    for name, text in (("sudo", '#!/bin/sh\nexec "$@"\n'), ("mount", GATE_MOUNT), ("umount", '#!/bin/sh\nrm -rf "$1/etc"\n')):
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    node = next(n for n in stack.nodes if n.name == pi)
    script = "set -eu\n" + k3s.gate_functions(node) + roll.export_gate(stack, node, timeout=2)
    env = f"PATH={bin_}:{os.environ['PATH']}"
    return subprocess.run(
        ["ip", "netns", "exec", client_ns(net, ip), "env", env, "bash", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_reboot_gate_sees_the_new_root_exported_not_only_its_boot_files(served: tuple[Lan, Server], tmp_path: Path) -> None:
    """Review 41-2 M1: the reboot step reboots a Pi only once the Ainur's Ganesha exports it its root of the new image
    (mounted from the Pi, its mark read): pi-nfs exports a new image's roots only from a start that found the image
    built, so TFTP serving the new boot files is no proof. The real Ganesha: a root it exports passes; an image it has
    no root of (built after its start) fails within the bound, naming the export and the restart to make; another
    Pi's root is refused to this Pi's address."""
    net, server = served
    assert server.stack.ainur is not None
    image = server.stack.ainur.pi_image
    newer = server.stack.model_copy(
        update={"ainur": server.stack.ainur.model_copy(update={"pi_image": image.model_copy(update={"sha256": "5" * 64})})}
    )
    ok = gate(net, ILMARE_IP, server.stack, "ilmare", tmp_path)
    assert ok.returncode == 0, ok.stderr
    # Bounded by the gate's own 2 s, which its line below names (waited 2 s); a gate that never gives up makes `gate`'s
    # 60 s timeout raise. Not by how long the run took: that measured the loaded machine.
    missing = gate(net, ILMARE_IP, newer, "ilmare", tmp_path)
    assert missing.returncode == 1, missing.stderr
    want = pis.image_id(newer)
    assert (
        f"waited 2 s for the Ainur to export ilmare its root of {want} over NFS, mounted from ilmare with its cmdline.txt's "
        f"options; still: the mount of {SVC}:/pis/ilmare/{want} failed (status 32): "
    ) in missing.stderr
    # The mount's own words (here libnfs's, standing in for the kernel's), then the cause that matches a refusal.
    assert (
        f"Refused ('access denied', 'No such file'): pi-nfs has no root of {want} for ilmare yet (it makes one once the image is "
        "built on the Pi that serves them; built there and still refused, restart pi-nfs from a valar: sudo k3s kubectl -n "
        "netboot rollout restart deployment pi-nfs)"
    ) in missing.stderr
    # eonwe's root, asked from ilmare's address: Ganesha's CLIENT block refuses it, so the gate cannot pass for it there.
    assert gate(net, ILMARE_IP, server.stack, "eonwe", tmp_path).returncode == 1


def test_a_new_image_built_after_the_server_started_is_exported_without_a_restart(served: tuple[Lan, Server], tmp_path: Path) -> None:
    """Review 41-2 M1, the server's side: pi-nfs started for a new image not built on its Pi yet (a card Pi whose cache
    was empty took the service address over). Once the builder finishes, each Pi gets a root of it and Ganesha reloads
    its exports (SIGHUP), with no restart: the roll's reboot gate, which failed while the root was not exported, then
    passes; the root the Pi runs is served throughout by the same Ganesha."""
    from plans.netboot import pi_image as pi_image_plan

    net, server = served
    assert server.stack.ainur is not None
    image = server.stack.ainur.pi_image
    later = server.stack.model_copy(
        update={"ainur": server.stack.ainur.model_copy(update={"pi_image": image.model_copy(update={"sha256": "6" * 64})})}
    )
    later_id = pis.image_id(later)
    old = server.image
    roots = server.root.parent / "roots"
    try:
        server.stop()
        server.image = old.parent / later_id
        server.start()
        assert gate(net, ILMARE_IP, later, "ilmare", tmp_path).returncode == 1
        xz, sha, _ = pi_image.make(tmp_path / "later-src")
        done = pi_image.build(pi_image_plan.build_script(), xz, sha, server.image)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: export("ilmare", later_id) in exports_of(server.conf), 30, "ilmare's root of the later image in ganesha.conf")
        wait_for(lambda: gate(net, ILMARE_IP, later, "ilmare", tmp_path).returncode == 0, 30, "the reboot gate to find it exported")
        log = (server.root / "ganesha.log").read_text()
        assert "the Pi image at" in log and "is built now: each Pi gets a root of it, and Ganesha reloads its exports" in log
        assert log.count("NFS SERVER INITIALIZED") == 1 and "SIGHUP" in log, log[-3000:]
        got = nfs_cat(net, ILMARE_IP, "/etc/iluvatar/pi-image")
        assert (got.returncode, got.stdout) == (0, f"{IMAGE}\n"), got.stderr
    finally:
        server.stop()
        shutil.rmtree(server.image, ignore_errors=True)
        for pi in ("eonwe", "ilmare"):
            shutil.rmtree(roots / pi / later_id, ignore_errors=True)
        server.image = old
        server.start()


def _from_image_alone(server: Server, roots: Path, image: Path) -> None:
    """Ganesha stopped, and only IMAGE and each Pi's root of it left: the images and roots the module's earlier tests
    left (their newer image) go first."""
    server.stop()
    for left in image.parent.iterdir():
        if left.is_dir() and left.name != image.name:
            shutil.rmtree(left)
    for pi in ("eonwe", "ilmare"):
        for left in (roots / pi).iterdir():
            if left.is_dir() and left.name != image.name:
                shutil.rmtree(left)


def test_a_third_image_built_while_ganesha_runs_never_takes_the_export_id_of_a_root_it_still_holds(
    served: tuple[Lan, Server], tmp_path: Path
) -> None:
    """Review 41-3 H1: the Pis run image A, roots of the image O before it still on the volume (O's image still on the
    Pi: the builder prunes it after its next build). The stack moves to N, not built yet: pi-nfs starts, exporting O at
    slot 0 and A at slot 1. Then the builder removes O and finishes N, and the watch reloads Ganesha. Had the reload
    pruned O's root and given N its slot, N's EXPORT block would carry the Export_Id Ganesha holds under O's Path, which
    nfs-ganesha V4.3 refuses (src/support/exports.c:1384-1395): N unexported, the roll's gate failing for 300 s. The
    reload frees no slot: N takes slot 2, the real Ganesha exports it at once, A is served throughout by the same
    Ganesha; O keeps its slot (not served), and a start keeps it too: it is the Pis' rollback root (what their pointers
    named before they moved to A), which only a later move frees (review 41-1 H3)."""
    from plans.netboot import pi_image as pi_image_plan

    net, server = served
    roots = server.root.parent / "roots"
    o_image, pointers = server.image, pi_pods.boot_projection(server.stack)
    o_id, a_id, n_id = IMAGE, "ubuntu-24.04.4-a", "ubuntu-24.04.4-n"
    a_image, n_image, parked = o_image.parent / a_id, o_image.parent / n_id, server.root.parent / "parked-o"
    slots = {name: nfs.export_ids(next(n for n in server.stack.nodes if n.name == name)) for name in ("eonwe", "ilmare")}
    try:
        _from_image_alone(server, roots, o_image)
        xz, sha, _ = pi_image.make(tmp_path / "a-src", root={**pi_image.ROOT, "etc/issue": "image A\n"})
        assert pi_image.build(pi_image_plan.build_script(), xz, sha, a_image).returncode == 0
        # Both Pis rolled to A: their pointers name it.
        server.stop()
        server.image, server.pointers = a_image, {**pointers, "ilmare/image": a_id, "eonwe/image": a_id}
        server.start()
        # The stack set to N, not built on this Pi yet: O (its image still here) and A exported, N watched for.
        server.stop()
        server.image = n_image
        server.start()
        assert exports_of(server.conf) == {
            **{export(pi, o_id): slots[pi][0] for pi in ("eonwe", "ilmare")},
            **{export(pi, a_id): slots[pi][1] for pi in ("eonwe", "ilmare")},
        }
        # The builder prunes O (no pointer names it), then N is built.
        shutil.move(o_image, parked)
        xz, sha, _ = pi_image.make(tmp_path / "n-src", root={**pi_image.ROOT, "etc/issue": "image N\n"})
        assert pi_image.build(pi_image_plan.build_script(), xz, sha, n_image).returncode == 0
        wait_for(lambda: export("ilmare", n_id) in exports_of(server.conf), 30, "ilmare's root of N in ganesha.conf")
        assert exports_of(server.conf) == {
            **{export(pi, a_id): slots[pi][1] for pi in ("eonwe", "ilmare")},
            **{export(pi, n_id): slots[pi][2] for pi in ("eonwe", "ilmare")},
        }
        # The real Ganesha serves N's root (reloaded, not restarted) and still A's.
        wait_for(lambda: nfs_cat(net, ILMARE_IP, "/etc/iluvatar/pi-image", image=n_id).stdout == f"{n_id}\n", 30, "N's root exported")
        assert nfs_cat(net, ILMARE_IP, "/etc/issue", image=n_id).stdout == "image N\n"
        assert nfs_cat(net, ILMARE_IP, "/etc/issue", image=a_id).stdout == "image A\n"
        log = (server.root / "ganesha.log").read_text()
        assert log.count("NFS SERVER INITIALIZED") == 1 and "doesn't match" not in log, log[-3000:]
        # O's root stays on the volume with its slot, and through a start: the Pis' rollback root.
        assert (roots / "ilmare" / o_id / "slot").read_text() == "0\n"
        server.stop()
        server.start()
        assert roots_of(roots / "ilmare") == sorted([o_id, a_id, n_id])
        assert (roots / "ilmare" / ".previous").read_text() == f"{o_id}\n"
    finally:
        server.stop()
        if parked.exists():
            shutil.move(parked, o_image)
        for image in (a_image, n_image):
            shutil.rmtree(image, ignore_errors=True)
        for pi in ("eonwe", "ilmare"):
            for image_id in (a_id, n_id):
                shutil.rmtree(roots / pi / image_id, ignore_errors=True)
        server.image, server.pointers = o_image, None
        server.start()


def test_a_reload_with_no_prunable_root_keeps_ganesha_serving_and_says_what_blocks_the_new_image(served: tuple[Lan, Server]) -> None:
    """Review 41-4 N3: every export id of a Pi held by a root whose image is still on this Pi (or that its pointer
    boots), and a new image is built while Ganesha runs. A restart would free no id, so its start would exit with
    "more roots than its export ids" and the kubelet would crash-loop pi-nfs with every Pi's root unexported. The
    reload sends no SIGTERM: the same Ganesha keeps serving the running roots, and the log names the roots that block
    the new one and the fix."""
    net, server = served
    roots = server.root.parent / "roots"
    o_image, o_id = server.image, IMAGE
    held = [f"{IMAGE}-x{i}" for i in (1, 2, 3)]
    n_id = "ubuntu-24.04.4-full"
    n_image = o_image.parent / n_id
    try:
        _from_image_alone(server, roots, o_image)
        # Three more images still on this Pi, each the stack's at one start: each Pi's four slots held, none prunable.
        for image_id in held:
            shutil.copytree(o_image, o_image.parent / image_id)
            server.image = o_image.parent / image_id
            server.start()
            server.stop()
        assert sorted((roots / "ilmare" / image_id / "slot").read_text() for image_id in [o_id, *held]) == ["0\n", "1\n", "2\n", "3\n"]
        # Both Pis still boot O; the stack moves to N, not built yet.
        server.image, server.pointers = n_image, {**pi_pods.boot_projection(server.stack), "ilmare/image": o_id, "eonwe/image": o_id}
        server.start()
        shutil.copytree(o_image, n_image, ignore=shutil.ignore_patterns(".complete"))
        (n_image / ".complete").touch()
        log_path = server.root / "ganesha.log"
        wait_for(lambda: "and a restart would free none" in log_path.read_text(), 30, "the reload's refusal", log_path)
        log = log_path.read_text()
        assert "pi-nfs restarts to prune" not in log, log[-3000:]
        # eonwe comes first, and the reload stops there.
        assert "eonwe has no free export id for its root of ubuntu-24.04.4-full, and a restart would free none" in log, log[-3000:]
        assert "remove a root it does not boot from its volume (pi-root-eonwe), then restart pi-nfs" in log
        # The same Ganesha serves the running roots, once the reload that refused has ended: nothing else in the script
        # acts on Ganesha after it (a restart to prune would have said so above, then stopped it before the reload ended).
        wait_for(lambda: not server.script_copies(), 30, "the refused reload to end", log_path)
        assert all(proc.poll() is None for proc in server.procs)
        assert log_path.read_text().count("NFS SERVER INITIALIZED") == 1
        assert nfs_cat(net, ILMARE_IP, "/etc/iluvatar/pi-image", image=o_id).stdout == f"{o_id}\n"
    finally:
        server.stop()
        for image_id in [*held, n_id]:
            shutil.rmtree(o_image.parent / image_id, ignore_errors=True)
            for pi in ("eonwe", "ilmare"):
                shutil.rmtree(roots / pi / image_id, ignore_errors=True)
        server.image, server.pointers = o_image, None
        server.start()


def test_a_failover_to_a_pi_without_a_pis_image_removes_and_switches_no_root_and_says_which_pi_is_not_served(
    served: tuple[Lan, Server],
) -> None:
    """Review 41-1 H3: mid-roll, eonwe still boots O and ilmare moved to A (its rollback root O). The server moves to a
    Pi that built only A (it joined, or was reflashed, after the image change): its images folder lacks O. The first
    version removed ilmare's rollback root there (its image gone, neither the stack's nor booted). Now: nothing is
    removed or switched; ilmare's root of A is served; eonwe's root of O is kept, unserved, with an error naming eonwe,
    its image and the fix; and back on a Pi that has O, eonwe's root is served as it was, its own writes in it."""
    net, server = served
    roots = server.root.parent / "roots"
    o_image, o_id, a_id = server.image, IMAGE, "ubuntu-24.04.4-rolled"
    a_image = o_image.parent / a_id
    # The Pi the server moves to: its own images folder, holding only A (the images are on each Pi's own disk).
    other_images = server.root.parent / "other-pi-images"
    try:
        _from_image_alone(server, roots, o_image)
        server.start()  # both Pis boot O, the stack's
        assert write(net, EONWE_IP, "/etc/hostname", "eonwe on O\n", pi="eonwe").returncode == 0
        assert write(net, ILMARE_IP, "/etc/hostname", "ilmare on O\n").returncode == 0
        server.stop()
        shutil.copytree(o_image, a_image)
        # The stack moves to A, and ilmare's pointer moves to it (its roll); eonwe's is next.
        server.image = a_image
        server.pointers = {**pi_pods.boot_projection(server.stack), "eonwe/image": o_id, "ilmare/image": a_id}
        server.start()
        assert sorted(exports_of(server.conf)) == sorted(export(pi, image) for pi in ("eonwe", "ilmare") for image in (o_id, a_id))
        server.stop()
        # The failover: the same volume, another Pi's images.
        other_images.mkdir()
        shutil.copytree(a_image, other_images / a_id)
        server.image = other_images / a_id
        server.start()
        log = (server.root / "ganesha.log").read_text()
        assert "goes:" not in log, log[-3000:]
        assert roots_of(roots / "ilmare") == sorted([o_id, a_id])
        assert roots_of(roots / "eonwe") == sorted([o_id, a_id])
        assert (roots / "ilmare" / o_id / "upper" / "etc" / "hostname").read_text() == "ilmare on O\n"
        assert (roots / "eonwe" / o_id / "upper" / "etc" / "hostname").read_text() == "eonwe on O\n"
        error = f"iluvatar: ERROR: eonwe boots {o_id}, which is not built on this Pi: its root is kept on the volume but not served"
        assert error in log, log[-3000:]
        assert "ERROR: ilmare" not in log
        assert exports_of(server.conf).keys() == {export("eonwe", a_id), export("ilmare", a_id)}
        assert nfs_cat(net, ILMARE_IP, "/etc/iluvatar/pi-image", image=a_id).stdout == f"{a_id}\n"
        # Not exported: Ganesha answers an unknown pseudo path as it answers a closed one.
        assert "MNT3ERR_ACCES(13)" in nfs_cat(net, EONWE_IP, "/etc/hostname", "eonwe", o_id).stderr
        # Back on a Pi that built O: eonwe's root as it was, and ilmare's rollback root too.
        server.stop()
        server.image = a_image
        server.start()
        assert nfs_cat(net, EONWE_IP, "/etc/hostname", "eonwe", o_id).stdout == "eonwe on O\n"
        assert nfs_cat(net, ILMARE_IP, "/etc/hostname", image=o_id).stdout == "ilmare on O\n"
    finally:
        server.stop()
        shutil.rmtree(other_images, ignore_errors=True)
        shutil.rmtree(a_image, ignore_errors=True)
        for pi in ("eonwe", "ilmare"):
            shutil.rmtree(roots / pi / a_id, ignore_errors=True)
        server.image, server.pointers = o_image, None
        server.start()


def test_lost_and_found_on_a_pis_volume_is_no_root_and_is_kept(served: tuple[Lan, Server]) -> None:
    """Review 41-6 L1: each Pi's Longhorn volume is a fresh ext4 with lost+found at its top (mounted at ROOTS/<pi>), where
    e2fsck puts what it recovers. The serve script took it for a root of an image that is gone and removed it, with
    what it held, and gave it an export slot first. Now it is no root: kept as it was, given no slot, named in no log
    line, and the Pis' roots are exported with the ids they had."""
    net, server = served
    roots = server.root.parent / "roots"
    ids = exports_of(server.conf)
    server.stop()
    for pi in ("eonwe", "ilmare"):
        (roots / pi / "lost+found").mkdir()
        (roots / pi / "lost+found" / "#4017").write_text(f"what e2fsck found on {pi}'s volume\n")
    try:
        server.start()
        log = (server.root / "ganesha.log").read_text()
        assert "lost+found" not in log, log[-3000:]
        for pi in ("eonwe", "ilmare"):
            assert (roots / pi / "lost+found" / "#4017").read_text() == f"what e2fsck found on {pi}'s volume\n"
            assert not (roots / pi / "lost+found" / "slot").exists()
        assert exports_of(server.conf) == ids
        assert nfs_cat(net, ILMARE_IP, "/etc/iluvatar/pi-image").stdout == f"{IMAGE}\n"
    finally:
        server.stop()
        for pi in ("eonwe", "ilmare"):
            shutil.rmtree(roots / pi / "lost+found", ignore_errors=True)
        server.start()


def test_the_roots_on_the_first_versions_single_volume_are_served_where_they_are_with_the_same_handles(
    served: tuple[Lan, Server], tmp_path: Path
) -> None:
    """Review 41-1 M1, the move of an existing homelab: the first version kept every Pi's roots on one volume (pi-roots,
    ROOTS/<pi>/<image>). The first start with a volume per Pi finds its own volume empty and the old one mounted at
    LEGACY: each Pi's roots are linked in, not copied, so a file the Pi wrote (in its own layer only, whose NFS handle
    is the layer's inode) is read on through the restart by the handle the Pi holds, at the same export id; nothing
    on the old volume is removed or emptied; a root of a new image is made on the Pi's own volume."""
    net, server = served
    module_roots = server.root.parent / "roots"
    o_image, o_id = server.image, IMAGE
    legacy, own = tmp_path / "legacy", tmp_path / "own"
    n_id = "ubuntu-24.04.4-after-move"
    n_image = o_image.parent / n_id
    hold: Hold | None = None
    try:
        _from_image_alone(server, module_roots, o_image)
        # The first version's server: every Pi's roots on the one volume.
        server.roots = legacy
        server.start()
        # A file only in ilmare's own layer: its NFS handle is the layer's inode, which a copy would change.
        (tmp_path / "own-file").write_text("ilmare's own file\n")
        made = in_ns(client_ns(net, ILMARE_IP), require("nfs-cp"), str(tmp_path / "own-file"), url("/etc/written-by-ilmare"), check=False)
        assert made.returncode == 0, made.stderr
        before = exports_of(server.conf)
        hold = Hold(net, ILMARE_IP, "/etc/written-by-ilmare")
        hold.wait_read(0, "read before the restart")
        server.stop()
        # pi-nfs replaced by this version: each Pi's own (empty) volume, and the old one mounted beside them.
        for pi in ("eonwe", "ilmare"):
            (own / pi).mkdir(parents=True)
        server.roots, server.legacy = own, legacy
        server.start()
        hold.wait_read(len(hold.reads), "read by its handle after the restart")
        reads = hold.stop()
        assert [r["data"] for r in reads if "ok" in r][-1:] == ["ilmare's own file\n"], reads
        assert not [r for r in reads if "error" in r], reads
        assert exports_of(server.conf) == before
        assert (own / "ilmare" / o_id).is_symlink() and (own / "ilmare" / o_id).resolve() == legacy / "ilmare" / o_id
        assert "ilmare's roots on the first version's pi-roots volume are served from it" in (server.root / "ganesha.log").read_text()
        # A new image: its roots on each Pi's own volume; the old volume unchanged.
        shutil.copytree(o_image, n_image)
        server.stop()
        server.image = n_image
        server.start()
        assert (own / "ilmare" / n_id / "upper").is_dir() and not (own / "ilmare" / n_id).is_symlink()
        assert roots_of(legacy / "ilmare") == [o_id]
        assert (legacy / "ilmare" / o_id / "upper" / "etc" / "written-by-ilmare").read_text() == "ilmare's own file\n"
        assert nfs_cat(net, ILMARE_IP, "/etc/written-by-ilmare", image=n_id).returncode != 0
        assert nfs_cat(net, ILMARE_IP, "/etc/written-by-ilmare").stdout == "ilmare's own file\n"
    finally:
        if hold is not None:
            hold.kill()
        server.stop()
        shutil.rmtree(n_image, ignore_errors=True)
        server.image, server.roots, server.legacy = o_image, None, None
        server.start()


def test_a_root_the_pi_does_not_boot_keeps_no_k3s_config_and_the_booted_one_keeps_its_own(served: tuple[Lan, Server]) -> None:
    """Review 41-13 M1: before each maia joined with a token of its own, its k3s config held the Ainur's server token; a
    root the Pi no longer boots (its rollback root) kept it on the volume, exported, for as long as it stayed. The
    server's start removes the config from every root the Pi's pointer does not boot, says so, and leaves the booted
    root's own (the Pi runs on it)."""
    net, server = served
    roots = server.root.parent / "roots"
    config = Path("etc/rancher/k3s/config.yaml")
    rollback = roots / "eonwe" / "ubuntu-24.04.2-rollback"
    server.stop()
    booted = roots / "eonwe" / IMAGE / "upper" / config
    booted.parent.mkdir(parents=True, exist_ok=True)
    booted.write_text("token: K10aaaa::abcdef.0123456789abcdef\n")
    (rollback / "upper" / config).parent.mkdir(parents=True)
    (rollback / "upper" / config).write_text("token: the-server-token\n")
    (rollback / "work").mkdir()
    # Its rollback root: what its pointer named before it last moved (the serve script's .previous).
    previous = roots / "eonwe" / ".previous"
    had = previous.read_text() if previous.exists() else None
    previous.write_text("ubuntu-24.04.2-rollback\n")
    try:
        server.start()
        log = (server.root / "ganesha.log").read_text()
        assert (rollback / "upper").is_dir() and not (rollback / "upper" / config).exists(), log[-2000:]
        assert (
            "iluvatar: eonwe's root of ubuntu-24.04.2-rollback, which it does not boot, keeps no k3s config (its join writes one on the root it boots)"
            in log
        )
        assert booted.read_text() == "token: K10aaaa::abcdef.0123456789abcdef\n"
        assert nfs_cat(net, EONWE_IP, "/etc/rancher/k3s/config.yaml", pi="eonwe").stdout == "token: K10aaaa::abcdef.0123456789abcdef\n"
    finally:
        server.stop()
        shutil.rmtree(rollback, ignore_errors=True)
        booted.unlink(missing_ok=True)
        if had is None:
            previous.unlink(missing_ok=True)
        else:
            previous.write_text(had)
        server.start()
