"""The Pis' pinned Debian packages (stacks.pins.DEBS, plans.netboot.debs), review 41-1 M5 and M3.

Each set is proven complete for its pod's image by the real apt, offline: `apt-get install --simulate` of the packages
the pod needs, on a system holding the image's packages, against the kept extract of that release's arm64 index
(Debian 12.15's for the Pi pods' bookworm image, Debian 13.8's for the netboot-cache pod's trixie one), installs exactly
the pinned files (names, versions, pool paths and SHA-256). The fetch script runs as the Pis run
it, with apt's own apt-helper downloading from a loopback server standing in for snapshot.debian.org."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import ClassVar

import pytest

from plans.netboot import cache, debs, pi_image, pi_pods, pods
from stacks import StackConfig, pins
from tests.edit import ROOT
from tools import debian_closure

EXTRACT = ROOT / "tests" / "fixtures" / "debian" / "bookworm-arm64.Packages"
# The netboot-cache pod's image is Debian 13 (plans.netboot.pods.DEBIAN_IMAGE): its set is from trixie's index.
TRIXIE = ROOT / "tests" / "fixtures" / "debian" / "trixie-arm64.Packages"
# What each set is for: what its pod installs (no recommends).
WANTED = {
    "pi-nfs": [f"nfs-ganesha={pi_pods.GANESHA_VERSION}", f"nfs-ganesha-vfs={pi_pods.GANESHA_VERSION}"],
    "pi-image": list(pi_image.BUILDER_PACKAGES),
    "netboot-ipxe": [f"ipxe={cache.IPXE_DEBIAN_VERSION}"],
}
# Each set's release: the extract of its index, and the image its pod runs in.
SUITES = {
    "pi-nfs": (EXTRACT, pi_pods.BOOKWORM_IMAGE),
    "pi-image": (EXTRACT, pi_pods.BOOKWORM_IMAGE),
    "netboot-ipxe": (TRIXIE, pods.DEBIAN_IMAGE),
}


@pytest.fixture(scope="module")
def index() -> dict[str, dict[str, str]]:
    return debian_closure.parse(EXTRACT.read_text())


def _index(name: str) -> dict[str, dict[str, str]]:
    return debian_closure.parse(SUITES[name][0].read_text())


def _pinned(index: dict[str, dict[str, str]], name: str) -> dict[str, str]:
    """The set's packages by name, and their version as the index says (the file name drops the epoch)."""
    by_file = {f["Filename"]: n for n, f in index.items()}
    return {by_file[path]: index[by_file[path]]["Version"] for path in pins.DEBS[name]}


@pytest.mark.parametrize("name", sorted(WANTED))
def test_each_pinned_set_is_exactly_what_apt_installs_on_the_image(name: str) -> None:
    index = _index(name)
    image = debian_closure.image(index)
    # The extract is the image's packages and the pinned ones, nothing else; a pinned file is the index's, byte for byte.
    assert set(index) == image | {n for s in WANTED if SUITES[s][0] == SUITES[name][0] for n in _pinned(index, s)}
    for path, sha256 in pins.DEBS[name].items():
        found = [f for f in index.values() if f["Filename"] == path]
        assert [f["SHA256"] for f in found] == [sha256], path
    got = debian_closure.simulate(index, image, WANTED[name])
    assert sorted(got) == sorted(_pinned(index, name).items())
    assert not set(_pinned(index, name)) & image


def test_ganesha_is_the_pinned_release_and_the_image_what_the_tests_modelled(index: dict[str, dict[str, str]]) -> None:
    assert _pinned(index, "pi-nfs")["nfs-ganesha"] == _pinned(index, "pi-nfs")["nfs-ganesha-vfs"] == pins.APPS["nfs-ganesha"] == "4.3-2"
    image = debian_closure.image(index)
    # Debian 12's minbase: mawk is its awk (gawk, whose readline the image then would have, is not), apt and dpkg are in,
    # e2fsprogs too (Priority required in Debian 12): the builder's e2fsck, e2label and debugfs need no download.
    assert {"mawk", "apt", "dpkg", "e2fsprogs", "libc6"} <= image
    assert not {"gawk", "libreadline8", "curl", "python3"} & image
    assert (pi_pods.BOOKWORM_IMAGE, pins.DEBIAN_SNAPSHOT) == ("docker.io/library/debian:bookworm-20250908-slim", "20260801T000000Z")


def test_a_set_missing_a_dependency_is_refused_by_apt(index: dict[str, dict[str, str]]) -> None:
    """The check's deliberate break: Ganesha's RPC library gone from the index, apt cannot install the set."""
    broken = {n: f for n, f in index.items() if n != "libntirpc4.3"}
    with pytest.raises(RuntimeError, match=r"(?s)apt cannot install nfs-ganesha=4.3-2 .*Depends: libntirpc4.3"):
        debian_closure.simulate(broken, debian_closure.image(broken), WANTED["pi-nfs"])
    # And an image that had one of the set (libkeyutils1, which needs only libc6): apt no longer installs it, and the
    # set would be one file too many for that image, which the equality above tells.
    got = debian_closure.simulate(index, debian_closure.image(index) | {"libkeyutils1"}, WANTED["pi-nfs"])
    assert sorted(_pinned(index, "pi-nfs").items()) == sorted([*got, ("libkeyutils1", "1.6.3-2")])


def test_the_fetch_script_downloads_from_the_live_archive_then_the_snapshot_by_pool_path() -> None:
    """Review 41-5 M2: the live archive first (the same file while the point release keeps it), then the snapshot."""
    script = debs.fetch_script("pi-nfs", "NFS-Ganesha")
    assert debs.SNAPSHOT == "http://snapshot.debian.org/archive/debian/20260801T000000Z"
    assert 'bases=${MIRRORS:-"http://deb.debian.org/debian http://snapshot.debian.org/archive/debian/20260801T000000Z"}' in script
    line = "2880142cd6493d3267bbab284afac5ef2d88b4a17ac631d87340e35317315740 nfs-ganesha_4.3-2_arm64.deb pool/main/n/nfs-ganesha/nfs-ganesha_4.3-2_arm64.deb"
    assert line in script.splitlines()
    assert "apt-get" not in script


class _Mirror(http.server.SimpleHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:
        """Quiet; a 404 logs twice (send_error's log_error, then log_request)."""

    def log_request(self, *args: object) -> None:
        type(self).requests.append(self.path)


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path, list[str]]]:
    """A loopback stand-in for snapshot.debian.org serving a small set `test` of three files, pinned by their SHA-256."""
    root = tmp_path / "mirror"
    files = {f"pool/main/t/test/{n}_1.0-1_arm64.deb": f"{n} contents\n".encode() for n in ("alpha", "beta", "gamma")}
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    monkeypatch.setitem(pins.DEBS, "test", {p: hashlib.sha256(d).hexdigest() for p, d in files.items()})
    requests: list[str] = []
    handler = type("Handler", (_Mirror,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, requests
    finally:
        server.shutdown()
        server.server_close()


def _fetch(tmp_path: Path, base: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "fetch.sh"
    script.write_text(debs.fetch_script("test", "the test set"))
    env = {**os.environ, "DIR": str(tmp_path / "debs"), "MIRRORS": base}
    return subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, timeout=120, check=False)


def test_the_set_is_downloaded_once_and_then_kept_with_no_network(tmp_path: Path, mirror: tuple[str, Path, list[str]]) -> None:
    base, _, requests = mirror
    first = _fetch(tmp_path, base)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "".join(f"iluvatar: the test set: downloaded {n}_1.0-1_arm64.deb from {base}\n" for n in ("alpha", "beta", "gamma"))
    assert sorted(requests) == [f"/pool/main/t/test/{n}_1.0-1_arm64.deb" for n in ("alpha", "beta", "gamma")]
    assert sorted(p.name for p in (tmp_path / "debs").glob("*.deb")) == [f"{n}_1.0-1_arm64.deb" for n in ("alpha", "beta", "gamma")]
    assert (tmp_path / "debs" / "beta_1.0-1_arm64.deb").read_text() == "beta contents\n"
    # After a power cut with no internet: nothing is asked of any server (a closed port would fail it), and it says so.
    requests.clear()
    again = _fetch(tmp_path, "http://127.0.0.1:9")
    assert (again.returncode, again.stdout, again.stderr) == (
        0, "iluvatar: the test set: the 3 pinned Debian packages are on this Pi, each with its SHA-256: nothing to download\n", "")  # fmt: skip
    assert requests == []


def test_a_file_that_is_not_the_pinned_one_is_refused_and_not_kept(tmp_path: Path, mirror: tuple[str, Path, list[str]]) -> None:
    base, root, _ = mirror
    (root / "pool/main/t/test/beta_1.0-1_arm64.deb").write_bytes(b"beta, another build\n")
    done = _fetch(tmp_path, base)
    assert done.returncode == 1
    pinned = pins.DEBS["test"]["pool/main/t/test/beta_1.0-1_arm64.deb"]
    assert done.stderr.startswith(
        f"iluvatar: the test set: beta_1.0-1_arm64.deb was not downloaded with its pinned SHA-256 {pinned} "
        f'(stacks/pins.py DEBS["test"]) from any of {base}; the set this Pi had is kept: {base}/pool/main/t/test/beta_1.0-1_arm64.deb: '
    )
    assert "Hash Sum mismatch" in done.stderr
    # Nothing of it is kept (the dpkg -i of the set would install what is there); the one before it stays, checked.
    assert sorted(p.name for p in (tmp_path / "debs").iterdir()) == [".pinned", "alpha_1.0-1_arm64.deb"]


def test_a_broken_file_is_fetched_again_and_what_is_not_pinned_goes(tmp_path: Path, mirror: tuple[str, Path, list[str]]) -> None:
    base, _, requests = mirror
    assert _fetch(tmp_path, base).returncode == 0
    folder = tmp_path / "debs"
    (folder / "gamma_1.0-1_arm64.deb").write_text("cut short")
    # What the first version of the step left (apt's download folder and lock) and an older release's file.
    (folder / "partial").mkdir()
    (folder / "lock").write_text("")
    (folder / "nfs-ganesha_4.3-1_arm64.deb").write_text("old")
    requests.clear()
    done = _fetch(tmp_path, base)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"iluvatar: the test set: downloaded gamma_1.0-1_arm64.deb from {base}",
        "iluvatar: the test set: lock is not pinned: removed",
        "iluvatar: the test set: nfs-ganesha_4.3-1_arm64.deb is not pinned: removed",
        "iluvatar: the test set: partial is not pinned: removed",
    ]
    assert requests == ["/pool/main/t/test/gamma_1.0-1_arm64.deb"]
    assert sorted(p.name for p in folder.iterdir()) == [".complete", ".pinned", *(f"{n}_1.0-1_arm64.deb" for n in ("alpha", "beta", "gamma"))]
    # The last complete set, for the pod to fall back on (review 41-9 M1): the pinned list as it was when complete.
    assert (folder / ".complete").read_text() == (folder / ".pinned").read_text()


def test_the_cache_steps_ask_nothing_of_apts_indexes() -> None:
    """Review 41-1 M3: the steps ran `apt-get update` at every start, which fails with no internet after a power cut."""
    from tests.plans.test_netboot_pis import netbooting

    steps = {s["name"]: s for s in pi_pods.cache_steps(netbooting())}
    assert "apt-get" not in repr(steps)
    assert steps["pi-image"]["command"] == ["sh", "/etc/iluvatar-pi/build-pi-image.sh"]
    assert steps["pi-image"]["image"] == pi_pods.BOOKWORM_IMAGE
    env = {e["name"]: e["value"] for e in steps["pi-image"]["env"]}
    assert env["TOOLS"] == "sh /etc/iluvatar-pi/pi-image-debs.sh && dpkg -i /var/lib/iluvatar/netboot/pi-image-debs/*.deb >/dev/null"
    assert env["DIR"] == "/var/lib/iluvatar/netboot/pi-image-debs"
    assert steps["pi-nfs-packages"]["command"] == ["sh", "/etc/iluvatar-pi/pi-nfs-debs.sh"]
    assert steps["pi-nfs-packages"]["env"] == [{"name": "DIR", "value": "/var/lib/iluvatar/netboot/pi-nfs-debs"}]
    data = pi_pods.pi_config(netbooting())
    assert data["pi-nfs-debs.sh"] == debs.fetch_script("pi-nfs", "NFS-Ganesha")
    assert data["pi-image-debs.sh"] == debs.fetch_script("pi-image", "the Pi image builder's tools")
    items = next(v for v in pi_pods.cache_volumes(netbooting()) if v["name"] == "pi-netboot")["configMap"]["items"]
    assert [i["key"] for i in items] == ["build-pi-image.sh", "pi-tftp.sh", "pi-image-debs.sh", "pi-nfs-debs.sh"]
    # pi-nfs installs the set its step keeps, where it keeps it, by apt (review 41-5 C1), before it serves.
    container = pi_pods.nfs_pod(netbooting())["containers"][0]
    assert container["command"] == ["sh", "-c", "sh /etc/iluvatar/pi-nfs-install.sh && exec sh /etc/iluvatar/serve-pis.sh"]
    assert {"name": "DIR", "value": "/var/lib/iluvatar/netboot/pi-nfs-debs"} in container["env"]
    assert data["pi-nfs-install.sh"] == debs.install_script("pi-nfs", "NFS-Ganesha", "netboot-cache's pi-nfs-packages step")
    config = next(v for v in pi_pods.nfs_pod(netbooting())["volumes"] if v["name"] == "config")["configMap"]["items"]
    assert {"key": "pi-nfs-install.sh", "path": "pi-nfs-install.sh"} in config
    # A file not on the Pi yet is waited for 10 minutes at most (docs/layers/ainur.md says so), then pi-nfs fails naming it.
    assert debs.WAIT_SECONDS == 600
    assert "bound=${WAIT_SECONDS:-600}\n" in data["pi-nfs-install.sh"]
    assert PurePosixPath(pi_pods.GANESHA_DEBS).name == "pi-nfs-debs"


def test_the_bump_tool_writes_the_pins_and_the_extract_the_repository_keeps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m tools.debian_closure` run on the index (here its kept extract, which holds every stanza it reads) prints
    each set's pins.DEBS lines in apt's order and writes the extract back unchanged: a bump is this, on a newer index."""
    for extract in (EXTRACT, TRIXIE):
        out = tmp_path / extract.name
        for name in sorted(n for n in WANTED if SUITES[n][0] == extract):
            assert debian_closure.main([str(extract), str(out), *WANTED[name]]) == 0
            printed = capsys.readouterr().out.splitlines()
            assert sorted(printed) == sorted(f'        "{path}": "{sha256}",' for path, sha256 in pins.DEBS[name].items())
        assert out.read_text() == extract.read_text()


def test_the_netboot_cache_set_is_trixies_ipxe_alone_for_the_pods_image() -> None:
    """iPXE's set is for the netboot-cache pod, whose image is Debian 13, not the Pi pods' Debian 12: proven against
    trixie's index. The package needs nothing (grub-ipxe is only recommended), so the set is its one file, which the
    pod unpacks with dpkg-deb."""
    assert (pods.DEBIAN_IMAGE, SUITES["netboot-ipxe"][1]) == ("docker.io/library/debian:trixie-20250908-slim",) * 2
    index = _index("netboot-ipxe")
    assert index["ipxe"]["Architecture"] == "all"
    assert "Depends" not in index["ipxe"] and "Pre-Depends" not in index["ipxe"]
    # Debian 13's minbase, as the image is: apt and dpkg (dpkg-deb, which unpacks it; apt-helper, which downloads it).
    assert {"apt", "dpkg", "libc6"} <= debian_closure.image(index)
    # The deliberate break: a Depends on a package trixie's image lacks, and the one-file set is no longer what apt installs.
    broken = {**index, "ipxe": {**index["ipxe"], "Depends": "grub-ipxe"}, "grub-ipxe": {**index["ipxe"], "Package": "grub-ipxe"}}
    got = debian_closure.simulate(broken, debian_closure.image(broken), WANTED["netboot-ipxe"])
    assert sorted(got) != sorted(_pinned(index, "netboot-ipxe").items())
    assert ("grub-ipxe", index["ipxe"]["Version"]) in got


def test_a_failed_download_leaves_the_set_the_pi_had_whole(
    tmp_path: Path, mirror: tuple[str, Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review 41-5 M1: a new set (beta gone, delta in) whose delta the mirror does not have: the previous set stays, every
    file of it, until the new one is complete; then what is not pinned goes."""
    base, root, _ = mirror
    assert _fetch(tmp_path, base).returncode == 0
    old = dict(pins.DEBS["test"])
    delta = b"delta contents\n"
    new = {p: h for p, h in old.items() if "beta" not in p} | {"pool/main/t/test/delta_1.0-1_arm64.deb": hashlib.sha256(delta).hexdigest()}
    monkeypatch.setitem(pins.DEBS, "test", new)
    failed = _fetch(tmp_path, base)
    assert failed.returncode == 1
    assert "delta_1.0-1_arm64.deb was not downloaded" in failed.stderr
    assert "the set this Pi had is kept" in failed.stderr
    folder = tmp_path / "debs"
    assert sorted(p.name for p in folder.glob("*.deb")) == [f"{n}_1.0-1_arm64.deb" for n in ("alpha", "beta", "gamma")]
    assert (folder / "beta_1.0-1_arm64.deb").read_text() == "beta contents\n"
    assert "beta_1.0-1_arm64.deb" in (folder / ".complete").read_text(), "the last complete set is still the old one"
    (root / "pool/main/t/test/delta_1.0-1_arm64.deb").write_bytes(delta)
    done = _fetch(tmp_path, base)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"iluvatar: the test set: downloaded delta_1.0-1_arm64.deb from {base}",
        "iluvatar: the test set: beta_1.0-1_arm64.deb is not pinned: removed",
    ]
    assert sorted(p.name for p in folder.glob("*.deb")) == [f"{n}_1.0-1_arm64.deb" for n in ("alpha", "delta", "gamma")]
    assert "delta_1.0-1_arm64.deb" in (folder / ".complete").read_text() and "beta" not in (folder / ".complete").read_text()


def test_each_file_is_asked_of_the_live_archive_first_then_the_snapshot(tmp_path: Path, mirror: tuple[str, Path, list[str]]) -> None:
    """Review 41-5 M2: the first base answers 404 (the point release dropped the version): the second serves the file."""
    base, _, requests = mirror
    done = _fetch(tmp_path, f"{base}/gone {base}")
    assert done.returncode == 0, done.stderr
    assert requests == [
        x for n in ("alpha", "beta", "gamma") for x in (f"/gone/pool/main/t/test/{n}_1.0-1_arm64.deb", f"/pool/main/t/test/{n}_1.0-1_arm64.deb")
    ]
    assert done.stdout.splitlines() == [f"iluvatar: the test set: downloaded {n}_1.0-1_arm64.deb from {base}" for n in ("alpha", "beta", "gamma")]
    assert not (tmp_path / "debs" / ".log").exists()


# Ganesha's set, installed as pi-nfs installs it, by the real apt and dpkg of this host (Debian 12: apt 2.6.1, dpkg
# 1.21), into a root whose dpkg database is the image model's (tools.debian_closure.image). Each package is a
# control-only .deb carrying its real control fields from the kept index (the relations dpkg and apt order by), its
# Architecture the host's where it is not `all`. The script runs unchanged; only its environment points apt and dpkg at
# the root: APT_CONFIG with Dir and Dir::Bin::dpkg, a dpkg that adds --root and --admindir, as apt's own test framework
# runs them (apt 2.6.1 test/integration/framework:524-537), and DPKG_ADMINDIR for dpkg-query (dpkg 1.21 dpkg-query(1)).
STAND_IN_FIELDS = ("Package", "Version", "Architecture", "Multi-Arch", "Essential", "Pre-Depends", "Depends", "Provides", "Breaks", "Conflicts", "Replaces")  # fmt: skip


def _control(fields: dict[str, str], arch: str, installed: bool = False) -> str:
    lines = [f"{k}: {arch if k == 'Architecture' and fields[k] != 'all' else fields[k]}" for k in STAND_IN_FIELDS if k in fields]
    if installed:
        lines.insert(1, "Status: install ok installed")
    return "\n".join([*lines, "Maintainer: Iluvatar <iluvatar@example.org>", "Description: control fields of the Debian package"]) + "\n"


@pytest.fixture(scope="module")
def stand_ins(index: dict[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in .debs of each set, in a folder per set, under their pinned file names."""
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    out = tmp_path_factory.mktemp("stand-ins")
    by_file = {f["Filename"]: n for n, f in index.items()}
    for name in ("pi-nfs", "pi-image"):  # the Pi pods' Debian 12 sets (the extract's)
        for path in pins.DEBS[name]:
            package = by_file[path]
            (out / "build" / package / "DEBIAN").mkdir(parents=True, exist_ok=True)
            (out / "build" / package / "DEBIAN" / "control").write_text(_control(index[package], arch))
            deb = out / name / PurePosixPath(path).name
            deb.parent.mkdir(exist_ok=True)
            subprocess.run(["dpkg-deb", "-Zgzip", "--build", str(out / "build" / package), str(deb)], check=True, capture_output=True)
    return out


@pytest.fixture
def stand_in_root(
    index: dict[str, dict[str, str]], stand_ins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], dict[str, str]]]:
    """A root holding the image model's packages, a set's files in DIR (pinned by their SHA-256, as the stand-ins' are
    not the archive's), and the environment that points apt and dpkg at the root.

    In memory where the machine has /dev/shm: dpkg syncs each file it writes (~940 fsync calls for Ganesha's set), which
    took 7.5 s of waiting per install on this shared disk and 1.7 s on tmpfs, for the same ~1 s of CPU."""
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    base = Path(tempfile.mkdtemp(dir="/dev/shm")) if os.access("/dev/shm", os.W_OK) else tmp_path  # noqa: S108 - tmpfs, by design

    def make(name: str) -> dict[str, str]:
        root = base / "root"
        for sub in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/log/apt", "var/cache/apt/archives/partial",
                    "var/lib/apt/lists/partial", "etc/apt/apt.conf.d", "etc/apt/preferences.d", "tmp", "bin"):  # fmt: skip
            (root / sub).mkdir(parents=True)
        (root / "var/lib/dpkg/status").write_text("\n".join(_control(index[n], arch, installed=True) for n in sorted(debian_closure.image(index))))
        (root / "var/lib/dpkg/available").write_text("")
        dpkg = root / "bin" / "dpkg"
        dpkg.write_text(
            f'#!/bin/sh\nexec /usr/bin/dpkg --root={root} --admindir={root}/var/lib/dpkg --log={root}/var/log/dpkg.log --force-bad-path "$@"\n'
        )
        dpkg.chmod(0o755)
        (root / "apt.conf").write_text(f'Dir "{root}/";\nDir::State::status "{root}/var/lib/dpkg/status";\nDir::Bin::dpkg "{dpkg}";\n')
        folder = base / f"{name}-debs"
        folder.mkdir()
        hashes = {}
        for path in pins.DEBS[name]:
            data = (stand_ins / name / PurePosixPath(path).name).read_bytes()
            (folder / PurePosixPath(path).name).write_bytes(data)
            hashes[path] = hashlib.sha256(data).hexdigest()
        monkeypatch.setitem(pins.DEBS, name, hashes)
        (base / "tmp").mkdir()
        return {**os.environ, "DIR": str(folder), "APT_CONFIG": f"{root}/apt.conf", "DPKG_ADMINDIR": f"{root}/var/lib/dpkg",
                "PATH": f"{root}/bin:{os.environ['PATH']}", "TMPDIR": str(base / "tmp")}  # fmt: skip

    yield make
    if base != tmp_path:
        shutil.rmtree(base)


@pytest.fixture
def image_root(stand_in_root: Callable[[str], dict[str, str]]) -> dict[str, str]:
    """The root, with Ganesha's set in DIR."""
    return stand_in_root("pi-nfs")


def _statuses(env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\\n"], capture_output=True, text=True, env=env, check=True)
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.stdout.splitlines()}


def _set_names() -> list[str]:
    return sorted(PurePosixPath(p).name.split("_")[0] for p in pins.DEBS["pi-nfs"])


def _install(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "pi-nfs-install.sh"
    script.write_text(pi_pods.pi_config(_netbooting())["pi-nfs-install.sh"])
    return subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, timeout=300, check=False)


def _netbooting() -> StackConfig:
    from tests.plans.test_netboot_pis import netbooting

    return netbooting()


def test_pi_nfs_installs_every_package_of_ganesha_s_set_in_the_order_dpkg_needs(tmp_path: Path, image_root: dict[str, str]) -> None:
    """Review 41-5 C1: the set has Pre-Depends chains (python3 -> python3-minimal -> python3.11-minimal): apt unpacks and
    configures in stages, and every package ends installed and configured."""
    done = _install(tmp_path, image_root)
    assert (done.returncode, done.stdout, done.stderr) == (0, "iluvatar: NFS-Ganesha: the 48 pinned Debian packages are installed\n", "")
    statuses = _statuses(image_root)
    assert {n: statuses.get(n) for n in _set_names()} == dict.fromkeys(_set_names(), "ii ")
    assert not list(Path(image_root["TMPDIR"]).iterdir())  # its checked copies are gone


def test_one_dpkg_i_of_ganesha_s_set_leaves_it_unconfigured(image_root: dict[str, str]) -> None:
    """The deliberate break: pi-nfs's former command, on the same root, fails as review 41-5 saw in a Debian 12 chroot."""
    done = subprocess.run(["sh", "-c", f"dpkg -i {image_root['DIR']}/*.deb >/dev/null"], capture_output=True, text=True, env=image_root, check=False)
    assert done.returncode == 1
    assert "pre-dependency problem - not installing python3-minimal" in done.stderr
    assert "pre-dependency problem - not installing python3\n" in done.stderr
    statuses = _statuses(image_root)
    assert (statuses["nfs-ganesha"], statuses["nfs-ganesha-vfs"], statuses.get("python3", "not installed")) == ("iU ", "iU ", "not installed")


def test_pi_nfs_refuses_a_file_that_is_not_the_pinned_one_before_installing_anything(tmp_path: Path, image_root: dict[str, str]) -> None:
    before = _statuses(image_root)
    folder = Path(image_root["DIR"])
    (folder / "libntirpc4.3_4.3-2_arm64.deb").write_bytes(b"another build\n")
    done = _install(tmp_path, image_root)
    pinned = pins.DEBS["pi-nfs"]["pool/main/n/ntirpc/libntirpc4.3_4.3-2_arm64.deb"]
    assert (done.returncode, done.stderr) == (
        1, f'iluvatar: NFS-Ganesha: {folder}/libntirpc4.3_4.3-2_arm64.deb is not the pinned file (SHA-256 {pinned}, stacks/pins.py DEBS["pi-nfs"]); nothing installed\n')  # fmt: skip
    assert _statuses(image_root) == before


def test_pi_nfs_waits_a_bounded_time_for_a_missing_file_then_names_it(tmp_path: Path, image_root: dict[str, str]) -> None:
    before = _statuses(image_root)
    missing = Path(image_root["DIR"]) / "nfs-ganesha_4.3-2_arm64.deb"
    data = missing.read_bytes()
    missing.unlink()
    gave_up = _install(tmp_path, {**image_root, "WAIT_SECONDS": "2"})
    assert gave_up.returncode == 1
    assert gave_up.stdout == f"iluvatar: NFS-Ganesha: waiting up to 2s for {missing}, which netboot-cache's pi-nfs-packages step downloads\n"
    assert gave_up.stderr == (f"iluvatar: NFS-Ganesha: {missing} is still not on this Pi after 2s: netboot-cache's pi-nfs-packages step "
                              "downloads it (see its log); nothing installed\n")  # fmt: skip
    assert _statuses(image_root) == before
    # The step puts it there while pi-nfs waits: pi-nfs goes on and installs the set.
    timer = threading.Timer(1.5, missing.write_bytes, args=(data,))
    timer.start()
    done = _install(tmp_path, {**image_root, "WAIT_SECONDS": "60"})
    timer.join()
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("iluvatar: NFS-Ganesha: the 48 pinned Debian packages are installed\n")
    assert _statuses(image_root)["nfs-ganesha-vfs"] == "ii "


def test_pi_nfs_installs_the_last_complete_set_when_the_pinned_one_never_arrives(tmp_path: Path, image_root: dict[str, str]) -> None:
    """Review 41-9 M1: a new pin whose file cannot be downloaded (the step failed, the previous set kept whole) must not
    keep every root down when pi-nfs restarts: after its bound it installs the last complete set the step recorded, and
    says so as an error. Here the pinned set names one file the Pi does not have (another build of nfs-ganesha), and
    .complete lists what the Pi has."""
    folder = Path(image_root["DIR"])
    (folder / ".complete").write_text(
        "".join(f"{sha256} {PurePosixPath(path).name} {path}\n" for path, sha256 in sorted(pins.DEBS["pi-nfs"].items()))
    )
    wanted = dict(pins.DEBS["pi-nfs"])
    gone = "pool/main/n/nfs-ganesha/nfs-ganesha_4.3-2_arm64.deb"
    pins.DEBS["pi-nfs"] = {("pool/main/n/nfs-ganesha/nfs-ganesha_4.3-3_arm64.deb" if p == gone else p): h for p, h in wanted.items()}
    try:
        done = _install(tmp_path, {**image_root, "WAIT_SECONDS": "1"})
    finally:
        pins.DEBS["pi-nfs"] = wanted
    assert done.returncode == 0, done.stderr
    assert done.stderr == ("iluvatar: ERROR: NFS-Ganesha: the pinned set is still not on this Pi after 1s (netboot-cache's pi-nfs-packages step "
                           "downloads it: see its log); installing the last complete set it downloaded instead, so the roots are served; the "
                           "pinned set is installed at this pod's next start once it is here\n")  # fmt: skip
    assert done.stdout.splitlines() == [
        f"iluvatar: NFS-Ganesha: waiting up to 1s for {folder}/nfs-ganesha_4.3-3_arm64.deb, which netboot-cache's pi-nfs-packages step downloads",
        "iluvatar: NFS-Ganesha: the last complete set is installed, not the pinned one",
    ]
    assert _statuses(image_root)["nfs-ganesha"] == "ii "
    # The deliberate break's twin: with no .complete (or one naming a file the Pi lost), nothing is installed.
    (folder / ".complete").unlink()
    pins.DEBS["pi-nfs"] = {("pool/main/n/nfs-ganesha/nfs-ganesha_4.3-3_arm64.deb" if p == gone else p): h for p, h in wanted.items()}
    try:
        refused = _install(tmp_path, {**image_root, "WAIT_SECONDS": "1"})
    finally:
        pins.DEBS["pi-nfs"] = wanted
    assert refused.returncode == 1
    assert refused.stderr.endswith("nothing installed\n")


def test_pi_nfs_fails_naming_a_package_of_the_set_that_apt_did_not_install(
    tmp_path: Path, image_root: dict[str, str], index: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """apt's exit status is not the last word: a file whose package is not the one its pinned name says (here the VFS
    backend's file holding another package) installs, and the script fails naming nfs-ganesha-vfs rather than serving
    with no backend for the roots."""
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    build = tmp_path / "other"
    (build / "DEBIAN").mkdir(parents=True)
    (build / "DEBIAN" / "control").write_text(_control({**index["nfs-ganesha-vfs"], "Package": "nfs-ganesha-other"}, arch))
    deb = Path(image_root["DIR"]) / "nfs-ganesha-vfs_4.3-2_arm64.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "--build", str(build), str(deb)], check=True, capture_output=True)
    monkeypatch.setitem(pins.DEBS["pi-nfs"], "pool/main/n/nfs-ganesha/nfs-ganesha-vfs_4.3-2_arm64.deb", hashlib.sha256(deb.read_bytes()).hexdigest())
    done = _install(tmp_path, image_root)
    assert done.returncode == 1
    assert done.stderr.startswith("iluvatar: NFS-Ganesha: nfs-ganesha-vfs is not installed after apt ran (dpkg status ''): ")
    assert _statuses(image_root)["nfs-ganesha-other"] == "ii "


def test_the_builders_dpkg_i_installs_every_package_of_its_set(stand_in_root: Callable[[str], dict[str, str]]) -> None:
    """The image builder's set has no Pre-Depends that the image does not meet: its step's one `dpkg -i` (TOOLS, after
    the fetch) installs every package. A bump that brings a chain like Ganesha's fails here, not on a Pi."""
    from tests.plans.test_netboot_pis import netbooting

    env = stand_in_root("pi-image")
    step = next(s for s in pi_pods.cache_steps(netbooting()) if s["name"] == "pi-image")
    tools = next(e["value"] for e in step["env"] if e["name"] == "TOOLS")
    fetch, install = tools.split(" && ")
    assert (fetch, install) == ("sh /etc/iluvatar-pi/pi-image-debs.sh", f"dpkg -i {pi_pods.BUILDER_DEBS}/*.deb >/dev/null")
    done = subprocess.run(["sh", "-c", install.replace(pi_pods.BUILDER_DEBS, env["DIR"])], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    names = sorted(PurePosixPath(p).name.split("_")[0] for p in pins.DEBS["pi-image"])
    statuses = _statuses(env)
    assert {n: statuses.get(n) for n in names} == dict.fromkeys(names, "ii ")
