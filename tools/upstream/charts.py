"""Helm charts from upstream Go modules, prepared as each project's release packages them, and real Helm.

A chart's folder in a module is not always the chart its Helm repository serves: some releases
fill a values template, set the version, or pull subcharts in first. Each `ChartSource` names
the folder and, in `release`, repeats what the upstream release recipe does (the recipe named in
each function), so `helm template` runs on the chart users install.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tools import gotools
from tools.upstream.modules import LOADER, UpstreamError, copy_tree, derived, go_version, module_dir, pinned_sum


class HelmError(UpstreamError):
    """Helm refused to render a chart (bad values, a values-schema violation, a template error)."""


def _set_chart_versions(chart_dir: Path, version: str, annotations: Mapping[str, str] | None = None) -> None:
    """What `helm package --version V --app-version V` (and the release's yq edits) do to Chart.yaml."""
    path = chart_dir / "Chart.yaml"
    meta = yaml.safe_load(path.read_text())
    meta["version"] = version
    meta["appVersion"] = version
    if annotations:
        meta.setdefault("annotations", {}).update(annotations)
    path.write_text(yaml.safe_dump(meta, sort_keys=False))


def _replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if text.count(old) != 1:
        raise UpstreamError(f"{path}: expected exactly one {old!r} to replace, found {text.count(old)}: the upstream release layout changed")
    path.write_text(text.replace(old, new))


def _release_envoy_gateway(chart_dir: Path, module: Path, version: str) -> None:
    # tools/make/helm.mk (helm-generate, helm-package): envsubst the values template with the
    # release image, then `helm package --version TAG --app-version TAG`.
    template = (chart_dir / "values.tmpl.yaml").read_text()
    values = template.replace("${GatewayImage}", f"docker.io/envoyproxy/gateway:{version}").replace("${GatewayImagePullPolicy}", "IfNotPresent")
    if "${" in values:
        raise UpstreamError(
            f"gateway-helm {version}: values.tmpl.yaml has a placeholder the release recipe does not fill: {re.findall(r'[$][{][^}]*[}]', values)}"
        )
    (chart_dir / "values.yaml").write_text(values)
    _set_chart_versions(chart_dir, version)


def _release_cert_manager(chart_dir: Path, module: Path, version: str) -> None:
    # make/manifests.mk: the packaged chart is Chart.template.yaml with version, appVersion, the
    # prerelease flag and the signing-key annotation set, plus templates, values and the schema.
    (chart_dir / "Chart.template.yaml").rename(chart_dir / "Chart.yaml")
    signkey = (chart_dir / "signkey_annotation.txt").read_text()
    prerelease = "true" if "-" in version else "false"
    _set_chart_versions(chart_dir, version, {"artifacthub.io/signKey": signkey, "artifacthub.io/prerelease": prerelease})
    (chart_dir / "README.template.md").rename(chart_dir / "README.md")
    for name in ("signkey_annotation.txt", "values.linter.exceptions"):
        (chart_dir / name).unlink()


def _release_trust_manager(chart_dir: Path, module: Path, version: str) -> None:
    # make/00_mod.mk's helm_values_mutation_function and make/_shared/helm/helm.mk: the default
    # trust package image tag is the Debian bundle version, then `helm package` sets both versions.
    mk = (module / "make" / "00_debian_trixie_version.mk").read_text()
    found = re.search(r"^DEBIAN_TRIXIE_BUNDLE_VERSION\s*:=\s*(\S+)", mk, re.M)
    if found is None:
        raise UpstreamError(f"trust-manager {version}: no DEBIAN_TRIXIE_BUNDLE_VERSION in make/00_debian_trixie_version.mk")
    tag = re.sub(r"[+~]", "-", found.group(1))
    _replace_once(chart_dir / "values.yaml", "_defaultReference: :v0.0.0", f"_defaultReference: :{tag}")
    _set_chart_versions(chart_dir, version, {"artifacthub.io/prerelease": "true" if "-" in version else "false"})


def _release_rook(chart_dir: Path, module: Path, version: str) -> None:
    # build/makelib/helm.mk (helm.chart): `sed s|master|VERSION|g values.yaml`, then package.
    values = chart_dir / "values.yaml"
    values.write_text(values.read_text().replace("master", version))
    _set_chart_versions(chart_dir, version)


def _release_external_secrets(chart_dir: Path, module: Path, version: str) -> None:
    # The published chart is the tag's folder with Chart.yaml's version and appVersion bumped (the tag
    # v1.3.2 still says 1.3.1; the commit the helm-chart-1.3.2 tag names changes only those two lines,
    # its README and test snapshots), plus `make helm.generate` (hack/helm.generate.sh): the CRD bundle
    # split into templates/crds, one file per CRD behind installCRDs (and crds.create<Kind> for the
    # cluster-scoped stores, secrets and generators and for PushSecret). The script also wraps the
    # v1alpha1 versions in crds.conversion.enabled and serves v1beta1 only with crds.unsafeServeV1Beta1;
    # both are off by default and in Iluvatar's values (plans.secrets, a test holds them), so their
    # versions are written as those values render them: v1alpha1 absent, v1beta1 not served.
    meta = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    meta["version"], meta["appVersion"] = version, f"v{version}"
    (chart_dir / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    crds = [d for d in yaml.load_all((module / "deploy" / "crds" / "bundle.yaml").read_text(), Loader=LOADER) if d]
    target = chart_dir / "templates" / "crds"
    for crd in crds:
        kind = crd["spec"]["names"]["kind"]
        if "ExternalSecret" in kind or "SecretStore" in kind:
            crd["spec"]["versions"] = [v for v in crd["spec"]["versions"] if v["name"] != "v1alpha1"]
            for v in crd["spec"]["versions"]:
                if v["name"] == "v1beta1":
                    v["served"] = False
        flag = f"create{kind}"
        guard = (
            f"{{{{- if and (.Values.installCRDs) (.Values.crds.{flag}) }}}}"
            if "Cluster" in kind or "PushSecret" in kind
            else "{{- if .Values.installCRDs }}"
        )
        body = yaml.safe_dump(crd, sort_keys=False, width=1_000_000)
        body = body.replace("name: kubernetes\n", 'name: {{ include "external-secrets.fullname" . }}-webhook\n')
        body = body.replace("namespace: default\n", "namespace: {{ .Release.Namespace | quote }}\n")
        (target / f"{crd['spec']['names']['singular']}.yaml").write_text(f"{guard}\n---\n{body}{{{{- end }}}}\n")


# The CRDs Tailscale's release inserts into the operator chart's templates (cmd/k8s-operator/generate/main.go:156-165 at
# v1.102.3, `generate helmcrd`), each as templates/<name>.yaml behind `installCRDs` (its helmConditionalStart/End).
TAILSCALE_CRDS = {
    "tailscale.com_connectors.yaml": "connector.yaml",
    "tailscale.com_proxyclasses.yaml": "proxyclass.yaml",
    "tailscale.com_dnsconfigs.yaml": "dnsconfig.yaml",
    "tailscale.com_recorders.yaml": "recorder.yaml",
    "tailscale.com_proxygroups.yaml": "proxygroup.yaml",
    "tailscale.com_tailnets.yaml": "tailnet.yaml",
    "tailscale.com_proxygrouppolicies.yaml": "proxygrouppolicy.yaml",
    "tailscale.com_peerrelays.yaml": "peerrelay.yaml",
}


def _release_tailscale_operator(chart_dir: Path, module: Path, version: str) -> None:
    # `go run ./cmd/k8s-operator/generate helmcrd` (operator.go:77's go:generate) writes each CRD into the chart's
    # templates between "{{ if .Values.installCRDs -}}\n" and "{{- end -}}"; then `helm package --app-version V
    # --version V` (.github/workflows/kubemanifests.yaml:24).
    crds = module / "cmd" / "k8s-operator" / "deploy" / "crds"
    found = sorted(p.name for p in crds.glob("*.yaml"))
    if found != sorted(TAILSCALE_CRDS):
        raise UpstreamError(f"tailscale-operator {version}: the CRDs are {found}, not the {sorted(TAILSCALE_CRDS)} the release recipe inserts")
    for source, template in TAILSCALE_CRDS.items():
        (chart_dir / "templates" / template).write_text("{{ if .Values.installCRDs -}}\n" + (crds / source).read_text() + "{{- end -}}")
    _set_chart_versions(chart_dir, version)


@dataclass(frozen=True)
class ChartSource:
    """Where a chart lives in a Go module, and what its upstream release does before packaging.

    `versions` maps a chart version to the module version holding it, for charts whose
    repository tags are not Go versions (they are served at commit pseudo-versions); otherwise
    the module version is the chart version with a `v`.
    """

    name: str
    module: str
    path: str
    release: Callable[[Path, Path, str], None] | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    # Dependencies no Go module serves whose condition is off by default: always rendered without
    # (Helm refuses a chart whose declared dependency is missing, even a disabled one).
    absent: tuple[str, ...] = ()

    def module_version(self, version: str) -> str:
        if self.versions:
            if version not in self.versions:
                raise UpstreamError(
                    f"chart {self.name} {version} is not pinned (pinned: {', '.join(sorted(self.versions))}): add its commit to CHARTS in tools/upstream/charts.py"
                )
            return self.versions[version]
        return go_version(version)


CHARTS: dict[str, ChartSource] = {
    c.name: c
    for c in (
        ChartSource("cilium", "github.com/cilium/cilium", "install/kubernetes/cilium"),
        ChartSource("gateway-helm", "github.com/envoyproxy/gateway", "charts/gateway-helm", _release_envoy_gateway),
        ChartSource("cert-manager", "github.com/cert-manager/cert-manager", "deploy/charts/cert-manager", _release_cert_manager),
        ChartSource("trust-manager", "github.com/cert-manager/trust-manager", "deploy/charts/trust-manager", _release_trust_manager),
        ChartSource("rook-ceph", "github.com/rook/rook", "deploy/charts/rook-ceph", _release_rook),
        ChartSource("rook-ceph-cluster", "github.com/rook/rook", "deploy/charts/rook-ceph-cluster", _release_rook),
        # local-path-provisioner publishes its chart only in Git (no Helm repository); the chart is
        # the folder as tagged, version and all.
        ChartSource("local-path-provisioner", "github.com/rancher/local-path-provisioner", "deploy/chart/local-path-provisioner"),
        # argo-helm is not a Go module and its tags (argo-cd-10.8.0) are not Go versions: the proxy
        # serves its commits as pseudo-versions. 10.4.1's commit is not among those it serves.
        ChartSource("argo-cd", "github.com/argoproj/argo-helm", "charts/argo-cd", versions={"10.8.0": "v0.0.0-20260904222229-3bbb4305eea9"}),
        # argo-cd's redis-ha subchart (dandydeveloper.github.io/charts), same way.
        ChartSource("redis-ha", "github.com/DandyDeveloper/charts", "charts/redis-ha", versions={"4.38.0": "v0.0.0-20260615041936-2e2539a8960e"}),
        # External Secrets Operator; its bitwarden-sdk-server subchart (off unless bitwarden-sdk-server.enabled)
        # is in no module the proxy serves (github.com/external-secrets/bitwarden-sdk-server answers 403).
        ChartSource(
            "external-secrets",
            "github.com/external-secrets/external-secrets",
            "deploy/charts/external-secrets",
            _release_external_secrets,
            absent=("bitwarden-sdk-server",),
        ),
        # VolSync: its chart carries its two CRDs as templates (manageCRDs).
        ChartSource("volsync", "github.com/backube/volsync", "helm/volsync"),
        # Headlamp publishes its chart in Git; the v0.44.0 tag holds chart 0.43.0 (bumped after the release), which
        # is what Argo CD renders from that tag.
        ChartSource("headlamp", "github.com/kubernetes-sigs/headlamp", "charts/headlamp", versions={"0.43.0": "v0.44.0"}),
        # The Tailscale operator (remote access, flavour tailscale): its chart, with the CRDs its release inserts.
        ChartSource("tailscale-operator", "tailscale.com", "cmd/k8s-operator/deploy/chart", _release_tailscale_operator),
    )
}


def _stage_chart(target: Path, source: ChartSource, version: str, omit: frozenset[str]) -> None:
    module = module_dir(source.module, source.module_version(version))
    origin = module / source.path
    if not (origin / "Chart.yaml").exists() and not (origin / "Chart.template.yaml").exists():
        raise UpstreamError(f"{source.module}@{source.module_version(version)} has no chart at {source.path}")
    copy_tree(origin, target)
    if source.release is not None:
        source.release(target, module, version)
    meta = yaml.safe_load((target / "Chart.yaml").read_text())
    if (meta.get("name"), str(meta.get("version"))) != (source.name, version):
        raise UpstreamError(
            f"{source.module}@{source.module_version(version)}/{source.path} is chart {meta.get('name')} {meta.get('version')}, not {source.name} {version}"
        )
    kept = []
    for dep in meta.get("dependencies") or []:
        name, repo = dep.get("alias") or dep["name"], str(dep.get("repository") or "")
        into = target / "charts" / name
        if name in omit:
            continue
        kept.append(dep)
        if into.is_dir():
            continue  # shipped inside the chart (e.g. Envoy Gateway's crds subchart)
        if repo.startswith("file://"):
            # What `helm dependency build` does for a local dependency (module zips drop symlinks).
            local = (origin / repo.removeprefix("file://")).resolve()
            if not local.is_relative_to(module):
                raise UpstreamError(f"chart {source.name} {version}: dependency {name} at {repo} is outside its module")
            copy_tree(local, into)
        elif dep["name"] in CHARTS:
            _stage_chart(into, CHARTS[dep["name"]], str(dep["version"]), frozenset())
        else:
            raise UpstreamError(
                f"chart {source.name} {version} depends on {dep['name']} {dep.get('version')} from {repo or 'nowhere'}, which no pinned Go module provides; "
                f"render it with omit={{'{name}'}} only if its condition ({dep.get('condition', 'none')}) is off"
            )
    if omit:
        meta["dependencies"] = kept
        (target / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))


def chart(name: str, version: str, omit: Iterable[str] = ()) -> Path:
    """A chart folder as its upstream release packages it, with its subcharts, ready for `helm template`.

    `omit` drops dependencies no Go module provides (their templates are then not rendered).
    """
    if name not in CHARTS:
        raise UpstreamError(f"no chart named {name!r} (known: {', '.join(sorted(CHARTS))})")
    source = CHARTS[name]
    dropped = frozenset(omit) | frozenset(source.absent)
    sums = [pinned_sum(source.module, source.module_version(version)), *sorted(dropped)]
    folder = derived("charts", f"{name}-{version}", sums, lambda staging: _stage_chart(staging / name, source, version, dropped))
    return folder / name


def values_schema(chart_dir: Path) -> dict[str, Any] | None:
    path = chart_dir / "values.schema.json"
    return json.loads(path.read_text()) if path.exists() else None


def _closed(schema: Any) -> Any:
    """The schema with every object that lists its properties closed to other keys."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _closed(value) for key, value in schema.items()}
    if "properties" in out and "additionalProperties" not in out and "patternProperties" not in out:
        out["additionalProperties"] = False
    return out


_VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def template_value_paths(chart_dir: Path) -> set[tuple[str, ...]]:
    """Every `.Values.a.b.c` path the chart's own templates read."""
    found: set[tuple[str, ...]] = set()
    for path in (chart_dir / "templates").rglob("*"):
        if path.is_file():
            found |= {tuple(m.group(1)[1:].split(".")) for m in _VALUES_REF.finditer(path.read_text(errors="replace"))}
    return found


def _declare(schema: dict[str, Any], path: tuple[str, ...]) -> None:
    """Add a template-read key to the schema where it lists keys and leaves this one out."""
    node = schema
    for key in path:
        if not isinstance(node.get("properties"), dict):
            return
        node = node["properties"].setdefault(key, {})


def values_errors(chart_dir: Path, values: Mapping[str, Any]) -> list[str]:
    """Values checked against the chart's values.schema.json, closed, so a misspelled key is an error.

    Helm itself checks the schema as written, which for some charts (Cilium) accepts any key. Here
    a key is known if the schema declares it or one of the chart's templates reads it
    (`.Values.loadBalancer.algorithm` is read but only commented in Cilium's values.yaml, so its
    generated schema omits it); any other key where the schema lists keys is reported. A chart
    without a values schema cannot be checked this way (UpstreamError).
    """
    schema = values_schema(chart_dir)
    if schema is None:
        raise UpstreamError(f"{chart_dir.name} ships no values.schema.json: its values are checked only by rendering")
    for path in sorted(template_value_paths(chart_dir)):
        _declare(schema, path)
    closed = _closed(schema)
    validator = jsonschema.validators.validator_for(closed)(closed)
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(dict(values)))


def helm_template(
    chart_dir: Path,
    values: Mapping[str, Any],
    *,
    release: str,
    namespace: str,
    kube_version: str,
    api_versions: Sequence[str] = (),
    include_crds: bool = True,
) -> list[dict[str, Any]]:
    """The objects real Helm renders from the chart with these values (offline: a local chart)."""
    helm = gotools.build("helm")
    with tempfile.TemporaryDirectory(prefix="iluvatar-helm-") as tmp:
        values_file = Path(tmp) / "values.json"
        values_file.write_text(json.dumps(values))
        command = [
            str(helm),
            "template",
            release,
            str(chart_dir),
            "--namespace",
            namespace,
            "--kube-version",
            kube_version,
            "--values",
            str(values_file),
        ]
        command += [arg for version in api_versions for arg in ("--api-versions", version)]
        if include_crds:
            command.append("--include-crds")
        # Helm's own config, cache and data stay in the temporary folder: no repositories, no network.
        env = {**os.environ, **{f"HELM_{kind}_HOME": str(Path(tmp) / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}}
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)  # noqa: S603
    if result.returncode != 0:
        raise HelmError(f"helm template {chart_dir.name} failed: {result.stderr.strip()}")
    return [doc for doc in yaml.load_all(result.stdout, Loader=LOADER) if doc]
