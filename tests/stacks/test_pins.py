"""stacks.pins is the one place this project's pins are made (issue #42, item 5): every Python place reads it, and the
files an import cannot reach (go.mod files, tools/upstream/modules.sum, the shipped stacks, the kept chart schemas)
say the same version, so a bump that forgets one fails here, naming the file."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from plans import certificates, gateways, remote_access, storage
from plans.netboot import cache as netboot_cache
from stacks import chart_values, pins, releases
from stacks.model import ArgoCd, Cilium
from tests.edit import ROOT
from tools import debian, talos_check
from tools.upstream import CHARTS
from tools.upstream import pins as module_pins


def _requires(go_mod: Path, module: str) -> str:
    found = re.findall(rf"^\s*{re.escape(module)} (v\S+)", go_mod.read_text(), re.MULTILINE)
    assert len(found) == 1, f"{go_mod.relative_to(ROOT)}: {module} required {len(found)} times"
    return str(found[0])


def test_the_python_places_read_the_pins() -> None:
    assert (releases.TALOS, releases.KUBERNETES, releases.K3S) == (pins.TALOS, pins.KUBERNETES, pins.K3S)
    assert releases.TALOS_MINORS[-1].newest == pins.TALOS
    assert (Cilium().version, ArgoCd().version) == (pins.CHARTS["cilium"], pins.CHARTS["argo-cd"])
    assert (pins.CHARTS["cert-manager"], pins.CHARTS["trust-manager"]) == (certificates.CERT_MANAGER_VERSION, certificates.TRUST_MANAGER_VERSION)
    assert pins.CHARTS["gateway-helm"] == gateways.VERSION
    assert (pins.CHARTS["rook-ceph"], pins.CHARTS["local-path-provisioner"]) == (storage.ROOK_VERSION, storage.LOCAL_PATH_VERSION)
    assert (talos_check.NODE_VERSION, talos_check.PROVIDER_VERSION) == (pins.TALOS, pins.TALOS_CLIENT_MACHINERY)
    assert ("cilium", pins.CHARTS["cilium"]) in chart_values.KEPT
    assert (pins.APPS["tailscale"], pins.APPS["headscale"]) == (remote_access.TAILSCALE_VERSION, remote_access.HEADSCALE_VERSION)
    assert f"tailscale/tailscale:v{pins.APPS['tailscale']}" == remote_access.TAILSCALE_IMAGE
    assert f"ghcr.io/juanfont/headscale:{pins.APPS['headscale']}" == remote_access.HEADSCALE_IMAGE
    assert netboot_cache.IPXE_DEBIAN_VERSION == debian.PACKAGES["ipxe"][0] == pins.APPS["ipxe"]


PINNED = {pins.TALOS, pins.KUBERNETES, pins.K3S, *pins.CHARTS.values(), *pins.MANIFESTS.values(), *pins.APPS.values(), *pins.IMAGES.values()}
SOURCES = ["stacks", "plans", "components", "iluvatar", "tools", "__main__.py"]


def test_no_second_copy_of_a_pin_in_the_programs_python() -> None:
    """A pin written again as a string literal would not follow a bump; comments and docstrings may name it."""
    found = []
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")) if (ROOT / top).is_dir() else [ROOT / top]:
            if path == ROOT / "stacks" / "pins.py":
                continue
            tree = ast.parse(path.read_text())
            docstrings = {
                id(n.body[0].value)
                for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                and n.body
                and isinstance(n.body[0], ast.Expr)
                and isinstance(n.body[0].value, ast.Constant)
            }
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and node.value in PINNED and id(node) not in docstrings:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value}")
    # Where a chart's version is not its module's, tools/upstream/charts.py maps one to the other, an entry per release:
    # argo-helm is no Go module (chart 10.8.0 at a commit), Headlamp's v0.44.0 tag holds chart 0.43.0.
    assert found == ["tools/upstream/charts.py:196: 10.8.0", "tools/upstream/charts.py:212: v0.44.0"]
    assert pins.CHARTS["argo-cd"] in CHARTS["argo-cd"].versions
    assert pins.CHARTS["headlamp"] in CHARTS["headlamp"].versions.values()


# A release written in plans/ (a string shaped like 1.2.3, v1.2.3, 1.2.3-rc.1 or 1.2.3+build) that pins.py does not
# hold: a pin made outside the one place. Each of these is not Iluvatar's pin but an upstream fact, read where it is.
VERSION = re.compile(r"^v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+~-]+)?$")
NOT_PINS = {
    ("plans/coredns.py", "v1.13.2"),  # Talos 1.12's CoreDNS (machinery constants, tests/plans/test_coredns.py reads them)
    ("plans/coredns.py", "v1.14.2"),  # Talos 1.13's
    ("plans/coredns.py", "v1.14.7"),  # Talos 1.14's
    ("plans/imagefactory.py", "15.0.0"),  # the Unicode version of the Go that builds Image Factory
}


def test_no_release_is_pinned_in_plans_outside_the_pins() -> None:
    """Review 2 N9: Tailscale 1.102.3 and Headscale 0.27.1 were pinned in plans/remote_access.py, and the test above
    only flags a literal equal to a known pin, so it could not see them."""
    found = set()
    for path in sorted((ROOT / "plans").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and VERSION.match(node.value) and node.value not in PINNED:
                found.add((str(path.relative_to(ROOT)), node.value))
    assert found == NOT_PINS


@pytest.mark.parametrize(
    ("go_mod", "module", "pin"),
    [
        ("tools/kube-control-plane/go.mod", "k8s.io/kubernetes", pins.KUBERNETES),
        ("tools/talos-check/node.go.mod", "github.com/siderolabs/talos/pkg/machinery", pins.TALOS),
        ("tools/talos-check/go.mod", "github.com/siderolabs/talos/pkg/machinery", pins.TALOS_CLIENT_MACHINERY),
        ("tools/talos-api/go.mod", "github.com/siderolabs/talos/pkg/machinery", pins.TALOS_CLIENT_MACHINERY),
        ("upgrader/go.mod", "github.com/siderolabs/talos/pkg/machinery", pins.TALOS_CLIENT_MACHINERY),
        # The programs the logs and the drill run, built at the release their images are (plans.logs, plans.drill).
        ("tools/victorialogs/go.mod", "github.com/VictoriaMetrics/VictoriaLogs", pins.APPS["victoria-logs"]),
        ("tools/vmalert/go.mod", "github.com/VictoriaMetrics/VictoriaMetrics", pins.APPS["vmalert"]),
        (
            "tools/otelcol/go.mod",
            "github.com/open-telemetry/opentelemetry-collector-contrib/processor/resourceprocessor",
            "v" + pins.APPS["otel-collector"],
        ),
        ("tools/age/go.mod", "filippo.io/age", pins.APPS["age"]),
        # The etcdutl of each etcd minor the drill restores with (stacks.data.ETCDUTL), and the etcd the tests start on
        # what it restored: Kubernetes' image 3.6.5-0 is etcd v3.6.5.
        ("tools/kube-control-plane/go.mod", "go.etcd.io/etcd/etcdutl/v3", "v" + pins.IMAGES["etcd-3.6"].rsplit(":", 1)[1].removesuffix("-0")),
        ("tools/kube-control-plane/go.mod", "go.etcd.io/etcd/server/v3", "v" + pins.IMAGES["etcd-3.6"].rsplit(":", 1)[1].removesuffix("-0")),
        ("tools/etcd-3.7/go.mod", "go.etcd.io/etcd/etcdutl/v3", "v" + pins.IMAGES["etcd-3.7"].rsplit(":", 1)[1]),
        ("tools/etcd-3.7/go.mod", "go.etcd.io/etcd/server/v3", "v" + pins.IMAGES["etcd-3.7"].rsplit(":", 1)[1]),
        # The subnet router and Headscale the remote-access tests run, at the release their images are (plans.remote_access).
        ("tools/tailscale/go.mod", "tailscale.com", "v" + pins.APPS["tailscale"]),
        ("tools/headscale/go.mod", "github.com/juanfont/headscale", "v" + pins.APPS["headscale"]),
    ],
)
def test_each_go_module_requires_the_pinned_release(go_mod: str, module: str, pin: str) -> None:
    assert _requires(ROOT / go_mod, module) == pin


def test_the_schemas_and_charts_are_pinned_at_the_pinned_releases() -> None:
    pinned = module_pins()
    wanted = [("github.com/siderolabs/talos/pkg/machinery", pins.TALOS)]
    wanted += [(module, pins.go_version(pins.CHARTS[chart])) for chart, module in pins.CHART_MODULES.items()]
    wanted += [(module, pins.MANIFESTS[source]) for source, module in pins.MANIFEST_MODULES.items()]
    assert [w for w in wanted if w not in pinned] == []
    assert {CHARTS[c].module for c in pins.CHART_MODULES} == set(pins.CHART_MODULES.values())


def test_renovates_lock_installs_the_pinned_release() -> None:
    lock = json.loads((ROOT / "tools" / "renovate" / "package-lock.json").read_text())
    assert lock["packages"][""]["dependencies"]["renovate"] == pins.APPS["renovate"]
    assert lock["packages"]["node_modules/renovate"]["version"] == pins.APPS["renovate"]


def test_the_kept_chart_schema_is_the_pinned_charts() -> None:
    folder = ROOT / "stacks" / "chart_schemas"
    cilium = pins.CHARTS["cilium"]
    assert sorted(p.name for p in folder.iterdir()) == [f"cilium-{cilium}.template-values.txt", f"cilium-{cilium}.values.schema.json"]


def test_the_kept_chart_images_are_the_pinned_charts() -> None:
    folder = ROOT / "stacks" / "chart_images"
    assert sorted(p.name for p in folder.iterdir()) == [f"argo-cd-{pins.CHARTS['argo-cd']}.json", f"cilium-{pins.CHARTS['cilium']}.json"]
    # Argo CD's appVersion is Iluvatar's pin of Argo CD itself.
    assert json.loads((folder / f"argo-cd-{pins.CHARTS['argo-cd']}.json").read_text())["appVersion"] == pins.APPS["argocd"]


def test_the_ainurs_k3s_runs_the_test_control_planes_minor() -> None:
    """One control plane build serves both clusters' checks (tools/kube-control-plane): k3s's Kubernetes minor is Arda's."""
    assert releases.minor_of(pins.K3S) == releases.minor_of(pins.KUBERNETES)


@pytest.mark.parametrize("stack", ["Pulumi.homelab.yaml", "Pulumi.rk1.yaml"])
def test_the_shipped_stacks_name_the_pins(stack: str) -> None:
    config = yaml.safe_load((ROOT / stack).read_text())["config"]
    assert config["iluvatar:arda"]["talosVersion"] == pins.TALOS
    assert config["iluvatar:arda"]["kubernetesVersion"] == pins.KUBERNETES
    if "iluvatar:ainur" in config:
        assert config["iluvatar:ainur"]["k3sVersion"] == pins.K3S


def test_the_pis_debian_packages_are_files_pinned_by_checksum_at_a_snapshot() -> None:
    """Review 41-1 M5: `nfs-ganesha=4.3-2` named against the live archive stops installing at its next point release.
    Each package the Pis' pods install is a pool path at DEBIAN_SNAPSHOT with its SHA-256, read by plans.netboot.debs,
    and Ganesha's files are the pinned release's (tests/plans/test_netboot_debs.py proves each set complete with apt)."""
    from pathlib import PurePosixPath

    from plans.netboot import debs, pi_pods

    assert pins.APPS["nfs-ganesha"] == pi_pods.GANESHA_VERSION
    version = pins.APPS["nfs-ganesha"]
    assert {f"nfs-ganesha_{version}_arm64.deb", f"nfs-ganesha-vfs_{version}_arm64.deb"} <= {PurePosixPath(p).name for p in pins.DEBS["pi-nfs"]}
    assert re.fullmatch(r"\d{8}T\d{6}Z", pins.DEBIAN_SNAPSHOT)
    assert debs.SNAPSHOT.endswith(f"/archive/debian/{pins.DEBIAN_SNAPSHOT}")
    assert sorted(pins.DEBS) == ["netboot-ipxe", "pi-image", "pi-nfs"]
    for files in pins.DEBS.values():
        for path, sha256 in files.items():
            assert re.fullmatch(r"pool/main/[a-z0-9]+/[a-z0-9.+-]+/[A-Za-z0-9.+~-]+_[A-Za-z0-9.+~-]+_(arm64|all)\.deb", path), path
            assert re.fullmatch(r"[0-9a-f]{64}", sha256), path
        # One file a package: two versions of one would both be installed by the pods' `dpkg -i`.
        names = [PurePosixPath(p).name.split("_")[0] for p in files]
        assert len(names) == len(set(names))


def test_the_ipxe_the_pis_serve_is_the_very_file_the_firmware_tests_boot() -> None:
    """tests/netns/test_firmware.py and lan.py boot the binaries tools.debian unpacks (Debian 13's ipxe, from the host's
    archive, checked by its SHA-256); the Pis unpack stacks.pins.DEBS["netboot-ipxe"]: the same version and the same
    bytes, so what QEMU's firmware boots in the tests is what every Arda machine is served. A bump of one alone fails."""
    from plans.netboot import cache
    from tools import debian

    version, sha256 = debian.PACKAGES["ipxe"]
    assert version == pins.APPS["ipxe"] == cache.IPXE_DEBIAN_VERSION == "1.21.1+git20250501.dad20602+dfsg-1"
    assert pins.DEBS["netboot-ipxe"] == {f"pool/main/i/ipxe/ipxe_{version}_all.deb": sha256}
    assert debian.SUITE == "trixie"
