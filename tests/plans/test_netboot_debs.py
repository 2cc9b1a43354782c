"""The Pis' pinned Debian packages (stacks.pins.DEBS, plans.netboot.debs), review 41-1 M5 and M3.

Each set is proven complete for the pods' Debian 12 image by the real apt, offline: `apt-get install --simulate` of the
packages the pods need, on a system holding the image's packages, against the kept extract of Debian 12.15's arm64
index, installs exactly the pinned files (names, versions, pool paths and SHA-256). The fetch script runs as the Pis run
it, with apt's own apt-helper downloading from a loopback server standing in for snapshot.debian.org."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import ClassVar

import pytest

from plans.netboot import debs, pi_image, pi_pods
from stacks import pins
from tests.edit import ROOT
from tools import debian_closure

EXTRACT = ROOT / "tests" / "fixtures" / "debian" / "bookworm-arm64.Packages"
# What each set is for: what its pod installs (no recommends).
WANTED = {
    "pi-nfs": [f"nfs-ganesha={pi_pods.GANESHA_VERSION}", f"nfs-ganesha-vfs={pi_pods.GANESHA_VERSION}"],
    "pi-image": list(pi_image.BUILDER_PACKAGES),
}


@pytest.fixture(scope="module")
def index() -> dict[str, dict[str, str]]:
    return debian_closure.parse(EXTRACT.read_text())


def _pinned(index: dict[str, dict[str, str]], name: str) -> dict[str, str]:
    """The set's packages by name, and their version as the index says (the file name drops the epoch)."""
    by_file = {f["Filename"]: n for n, f in index.items()}
    return {by_file[path]: index[by_file[path]]["Version"] for path in pins.DEBS[name]}


@pytest.mark.parametrize("name", sorted(WANTED))
def test_each_pinned_set_is_exactly_what_apt_installs_on_the_image(index: dict[str, dict[str, str]], name: str) -> None:
    image = debian_closure.image(index)
    # The extract is the image's packages and the pinned ones, nothing else; a pinned file is the index's, byte for byte.
    assert set(index) == image | {n for s in WANTED for n in _pinned(index, s)}
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


def test_the_fetch_script_downloads_from_the_snapshot_by_pool_path() -> None:
    script = debs.fetch_script("pi-nfs", "NFS-Ganesha")
    assert debs.SNAPSHOT == "http://snapshot.debian.org/archive/debian/20260801T000000Z"
    assert f"base=${{MIRROR:-{debs.SNAPSHOT}}}" in script
    line = "2880142cd6493d3267bbab284afac5ef2d88b4a17ac631d87340e35317315740 nfs-ganesha_4.3-2_arm64.deb pool/main/n/nfs-ganesha/nfs-ganesha_4.3-2_arm64.deb"
    assert line in script.splitlines()
    assert "apt-get" not in script


class _Mirror(http.server.SimpleHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:
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
    env = {**os.environ, "DIR": str(tmp_path / "debs"), "MIRROR": base}
    return subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, timeout=120, check=False)


def test_the_set_is_downloaded_once_and_then_kept_with_no_network(tmp_path: Path, mirror: tuple[str, Path, list[str]]) -> None:
    base, _, requests = mirror
    first = _fetch(tmp_path, base)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "".join(f"iluvatar: the test set: downloaded {n}_1.0-1_arm64.deb\n" for n in ("alpha", "beta", "gamma"))
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
        f"iluvatar: the test set: {base}/pool/main/t/test/beta_1.0-1_arm64.deb was not downloaded with its pinned SHA-256 {pinned} "
        '(stacks/pins.py DEBS["test"]): '
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
        "iluvatar: the test set: lock is not pinned: removed",
        "iluvatar: the test set: nfs-ganesha_4.3-1_arm64.deb is not pinned: removed",
        "iluvatar: the test set: partial is not pinned: removed",
        "iluvatar: the test set: downloaded gamma_1.0-1_arm64.deb",
    ]
    assert requests == ["/pool/main/t/test/gamma_1.0-1_arm64.deb"]
    assert sorted(p.name for p in folder.iterdir()) == [".pinned", *(f"{n}_1.0-1_arm64.deb" for n in ("alpha", "beta", "gamma"))]


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
    # pi-nfs installs the set its step keeps, where it keeps it.
    container = pi_pods.nfs_pod(netbooting())["containers"][0]
    assert container["command"][2].startswith("dpkg -i /var/lib/iluvatar/netboot/pi-nfs-debs/*.deb >/dev/null && ")
    assert PurePosixPath(pi_pods.GANESHA_DEBS).name == "pi-nfs-debs"


def test_the_bump_tool_writes_the_pins_and_the_extract_the_repository_keeps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m tools.debian_closure` run on the index (here its kept extract, which holds every stanza it reads) prints
    each set's pins.DEBS lines in apt's order and writes the extract back unchanged: a bump is this, on a newer index."""
    out = tmp_path / "extract.Packages"
    for name in ("pi-nfs", "pi-image"):
        assert debian_closure.main([str(EXTRACT), str(out), *WANTED[name]]) == 0
        printed = capsys.readouterr().out.splitlines()
        assert sorted(printed) == sorted(f'        "{path}": "{sha256}",' for path, sha256 in pins.DEBS[name].items())
    assert out.read_text() == EXTRACT.read_text()
