"""Pinned upstream modules: every version the program installs is pinned and fetched; sums are enforced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.edit import ROOT
from tests.schemas import program_versions
from tools import upstream
from tools.upstream import modules

TRUST_MANAGER = ("github.com/cert-manager/trust-manager", "v0.25.0")  # the smallest pinned module (2 MB)


def test_the_pins_file_pins_exact_versions_with_sums() -> None:
    pins = upstream.pins()
    assert pins[("github.com/cilium/cilium", "v1.18.4")] == "h1:/HrbeMmk46UDkJs4uJemIqxB7wuZ+QRMNVscNYua5C8="
    assert pins[(upstream.TALOS_MACHINERY, "v1.14.1")] == "h1:dh2PkMNUkndQWSY+iUy9d9rGDKpAD9TuHylzVhY544Y="
    # Talos 1.12 is a target again (dec5120, #42 review 1 H3: a stack that keeps main's v1.12.4 is not refused), so its
    # schema is pinned beside 1.14's.
    assert pins[(upstream.TALOS_MACHINERY, "v1.12.4")] == "h1:4Zh47gUnK8y155dUWJKpSRnFgAozvFjs7XlGMaKGhM0="
    # 13, the data layer's ESO, VolSync and external-snapshotter (its controller's module and its CRDs' client module),
    # and monitoring's and sign-in's: the Prometheus Operator, kube-prometheus and Headlamp; remote access's Tailscale operator.
    # The Ainur's kube-router as k3s embeds it: read for what it admits past every policy (tests/tools/test_netpol_check.py).
    assert len(pins) == 23
    assert pins[("github.com/k3s-io/kube-router/v2", "v2.6.3-k3s1")] == "h1:RZjUBIuitXCuYoCzm1aM6p5EgQFC5k3N72j4pBIc2j4="
    assert pins[("tailscale.com", "v1.102.3")] == "h1:M1czCAtMuIcg+2Z+FBPbJyAk3ZEQGEFKnvHthtE1c6M="
    assert all(version.startswith("v") and sum_.startswith("h1:") for (_, version), sum_ in pins.items())


def test_a_malformed_or_repeated_pin_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "modules.sum"
    path.write_text("# comment\ngithub.com/a/b v1.0.0\n")
    with pytest.raises(upstream.UpstreamError, match=r"^modules.sum:2: expected `module version h1:sum`, got 'github.com/a/b v1.0.0'$"):
        upstream.pins(path)
    path.write_text("github.com/a/b v1.0.0 h1:x=\ngithub.com/a/b v1.0.0 h1:y=  # again\n")
    with pytest.raises(upstream.UpstreamError, match=r"^modules.sum:2: github.com/a/b@v1.0.0 is pinned twice$"):
        upstream.pins(path)


def test_an_unpinned_version_is_refused_before_any_fetch() -> None:
    with pytest.raises(upstream.UpstreamError) as error:
        upstream.module_dir("github.com/cilium/cilium", "v1.18.3")
    assert str(error.value) == (
        "github.com/cilium/cilium@v1.18.3 is not pinned in tools/upstream/modules.sum; add it with "
        "`python -m tools.upstream pin github.com/cilium/cilium@v1.18.3` (the sum is verified by the checksum database)"
    )


def test_every_version_the_program_installs_is_pinned_and_fetched() -> None:
    versions = program_versions()
    assert versions == {"talos": {"v1.14.1"}, "cilium": {"1.18.4"}, "argo-cd": {"10.8.0"}}
    for chart_version in versions["argo-cd"]:
        assert yaml.safe_load((upstream.chart("argo-cd", chart_version) / "Chart.yaml").read_text())["version"] == chart_version
    for talos in versions["talos"]:
        schema = json.loads(upstream.talos_schema(talos).read_text())
        assert schema["$id"] == f"https://talos.dev/{talos.rsplit('.', 1)[0]}/schemas/config.schema.json"
    for chart_version in versions["cilium"]:
        meta = yaml.safe_load((upstream.chart("cilium", chart_version) / "Chart.yaml").read_text())
        assert (meta["name"], meta["version"], meta["appVersion"]) == ("cilium", chart_version, chart_version)
        assert (upstream.crd_schema_dir("cilium", chart_version) / "cilium.io" / "ciliumloadbalancerippool_v2.json").is_file()


def test_pin_records_the_sum_the_checksum_database_verified(tmp_path: Path) -> None:
    path = tmp_path / "modules.sum"
    path.write_text("# pins\n")
    assert modules.pin(*TRUST_MANAGER, path=path) == upstream.pins()[TRUST_MANAGER]
    assert path.read_text() == f"# pins\n{TRUST_MANAGER[0]} {TRUST_MANAGER[1]} {upstream.pins()[TRUST_MANAGER]}\n"


def test_escape_path_spells_upper_case_as_the_proxy_does() -> None:
    assert modules.escape_path("github.com/DandyDeveloper/charts") == "github.com/!dandy!developer/charts"


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    """A mirror of one pinned module, made from the ordinary cache (or the proxy)."""
    target = tmp_path / "mirror"
    assert modules.mirror(target, [TRUST_MANAGER]) == ["github.com/cert-manager/trust-manager@v0.25.0"]
    return target


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mirror: Path) -> Iterator[Path]:
    """An empty $ILUVATAR_CACHE and no route to any proxy: only a mirror can serve modules."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ILUVATAR_CACHE", str(cache))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    yield cache
    # The Go module cache is read-only by design; let pytest clean it up.
    for root, dirs, _ in os.walk(cache):
        for name in dirs:
            (Path(root) / name).chmod(0o755)


def test_the_offline_mirror_serves_pinned_modules(mirror: Path, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sorted(p.name for p in (mirror / "github.com/cert-manager/trust-manager/@v").iterdir()) == [
        "list",
        "v0.25.0.info",
        "v0.25.0.mod",
        "v0.25.0.zip",
    ]
    assert json.loads((mirror / "github.com/cert-manager/trust-manager/@v/v0.25.0.info").read_text())["Version"] == "v0.25.0"
    monkeypatch.setenv(upstream.MIRROR_ENV, str(mirror))
    folder = upstream.module_dir(*TRUST_MANAGER)
    assert folder == fresh_cache / "go/mod/github.com/cert-manager/trust-manager@v0.25.0"
    chart = upstream.chart("trust-manager", "v0.25.0")
    assert chart.is_relative_to(fresh_cache / "upstream" / "charts")


def test_a_mirror_cannot_change_what_is_validated(mirror: Path, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = mirror / "github.com/cert-manager/trust-manager/@v/v0.25.0.zip"
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("github.com/cert-manager/trust-manager@v0.25.0/deploy/crds/extra.yaml", "kind: CustomResourceDefinition\n")
    monkeypatch.setenv(upstream.MIRROR_ENV, str(mirror))
    with pytest.raises(upstream.UpstreamError) as error:
        upstream.module_dir(*TRUST_MANAGER)
    assert str(error.value).startswith(f"github.com/cert-manager/trust-manager@v0.25.0 from the mirror {mirror} has checksum h1:")
    assert str(error.value).endswith(f", but tools/upstream/modules.sum pins {upstream.pins()[TRUST_MANAGER]}")


def test_a_mirror_without_the_module_fails_offline(tmp_path: Path, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(upstream.MIRROR_ENV, str(empty))
    with pytest.raises(
        upstream.UpstreamError,
        match=rf"^fetching github.com/cert-manager/trust-manager@v0.25.0 from the mirror {empty} failed: .*/@v/v0.25.0.info: no such file or directory$",
    ):
        upstream.module_dir(*TRUST_MANAGER)
    monkeypatch.setenv(upstream.MIRROR_ENV, str(tmp_path / "missing"))
    with pytest.raises(upstream.UpstreamError, match="is not a folder"):
        upstream.module_dir(*TRUST_MANAGER)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.upstream", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_the_command_line() -> None:
    found = _cli("chart", "cilium", "1.18.4")
    assert found.returncode == 0 and found.stdout.strip() == str(upstream.chart("cilium", "1.18.4"))
    unknown = _cli("chart", "cilium-ng", "1.0.0")
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr.startswith("error: no chart named 'cilium-ng' (known: argo-cd, cert-manager, cilium,") and "Traceback" not in unknown.stderr
    usage = _cli("frobnicate")
    assert usage.returncode == 2 and "python -m tools.upstream fetch" in usage.stderr
