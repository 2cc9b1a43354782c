"""kustomize sources from upstream Go modules, built as Argo CD's repo-server builds an Application's.

An Application whose source is a kustomization (kube-prometheus's, for the monitoring platform
Application) is built by Argo CD v3.5.2 (util/kustomize/kustomize.go, `Build`) in a checkout of its
repository at the revision: `kustomize edit set image` for `kustomize.images`, the Application's
`kustomize.patches` appended to the kustomization's own `patches` (the file rewritten: kustomize has
no edit command for patches), then `kustomize build <path>` with the `kustomize.buildOptions` of
argocd-cm, and `--helm-kube-version`/`--helm-api-versions` when they enable Helm (kustomize 5.3 and
newer). Here the checkout is the pinned Go module at that tag, and kustomize is the very release
Argo CD's image runs (v5.8.1, `tools/kustomize`).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tools import gotools
from tools.upstream.modules import LOADER, UpstreamError, copy_tree, go_version, module_dir


class KustomizeError(UpstreamError):
    """kustomize refused to edit or build a source (a bad patch, a missing resource)."""


@dataclass(frozen=True)
class KustomizeSource:
    """A Git repository an Application may name for a kustomize source, and the Go module holding it."""

    repo_url: str
    module: str


SOURCES: dict[str, KustomizeSource] = {
    s.repo_url: s
    for s in (KustomizeSource("https://github.com/prometheus-operator/kube-prometheus.git", "github.com/prometheus-operator/kube-prometheus"),)
}
# Argo CD's findKustomizeFile: the names a kustomization may have, in the order it looks.
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def _run(args: Sequence[str], cwd: Path) -> str:
    result = subprocess.run([str(gotools.build("kustomize")), *args], cwd=cwd, capture_output=True, text=True, timeout=600)  # noqa: S603 - a pinned tool
    if result.returncode != 0:
        raise KustomizeError(f"kustomize {' '.join(args[:3])} failed: {result.stderr.strip()}")
    return result.stdout


def build(
    repo_url: str,
    revision: str,
    path: str,
    options: Mapping[str, Any],
    *,
    build_options: str = "",
    kube_version: str = "",
    api_versions: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The objects Argo CD renders from a kustomize source (`options`: the Application's `spec.source.kustomize`)."""
    if repo_url not in SOURCES:
        raise UpstreamError(f"no pinned module for the kustomize source {repo_url} (known: {', '.join(sorted(SOURCES))})")
    root = module_dir(SOURCES[repo_url].module, go_version(revision))
    with tempfile.TemporaryDirectory(prefix="iluvatar-kustomize-") as tmp:
        checkout = Path(tmp) / "repo"
        copy_tree(root, checkout)
        where = (checkout / path).resolve()
        if not where.is_relative_to(checkout):
            raise UpstreamError(f"{path} is outside the repository")
        if options.get("images"):
            _run(["edit", "set", "image", *options["images"]], where)
        if options.get("patches"):
            found = next((where / name for name in KUSTOMIZATION_NAMES if (where / name).exists()), None)
            if found is None:
                raise KustomizeError("kustomization file not found in the path")
            kustomization = yaml.load(found.read_text(), Loader=LOADER)  # noqa: S506 - a SafeLoader
            kustomization["patches"] = [*(kustomization.get("patches") or []), *options["patches"]]
            found.write_text(json.dumps(kustomization))
        args = ["build", str(where), *build_options.split()]
        if "--enable-helm" in build_options:
            args += ["--helm-kube-version", kube_version] if kube_version else []
            args += [arg for version in api_versions for arg in ("--helm-api-versions", version)]
        rendered = _run(args, checkout)
    return [doc for doc in yaml.load_all(rendered, Loader=LOADER) if doc]
