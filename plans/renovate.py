"""Renovate for the user's GitOps repository: the configuration `iluvatar scaffold` writes at its root.

Argo CD deploys what the repository holds (plans.gitops); the versions in it (container images in manifests, Helm
charts in a kustomization's `helmCharts` or an app's `Chart.yaml`, Argo CD Applications' chart sources) go stale unless
something raises them. Renovate does, opening a pull request per update, as onedr0p/cluster-template's repositories
are set up to (its `.renovaterc.json5`). Its managers read these files by path: the `kubernetes` and `argocd` managers
have no default file patterns (Renovate's docs, "Automated Dependency Updates for Kubernetes" and "... for Argo CD":
"you must configure managerFilePatterns"), `kustomize` and `helmv3` find `kustomization.yaml` and `Chart.yaml` by their
names. So the patterns name the stack's own folders (`gitops.appsPath`, `gitops.ainurPath`).

Checked by Renovate's own validator, `renovate-config-validator` from the npm package `renovate` at RENOVATE_VERSION
(tools.renovate_check, run by tests/plans/test_renovate.py), with `--strict`: no deprecated or migrated option.
"""

from __future__ import annotations

import json
import re
from typing import Any

from plans import gitops as gitops_plan
from stacks import pins
from stacks.model import StackConfig

FILE = "renovate.json"  # one of the names Renovate looks for at a repository's root
# The renovate release whose validator checks this configuration (tools/renovate/package.json installs it; the test holds
# the two equal).
RENOVATE_VERSION = pins.APPS["renovate"]


def _under(folder: str) -> str:
    """A manager file pattern for every YAML file under `folder` (the repository's root when it is `.`)."""
    root = "" if folder in ("", ".") else re.escape(folder.strip("/")) + "/"
    return f"/^{root}.+\\.ya?ml$/"


def _base_branch(revision: str) -> dict[str, list[str]]:
    """The branch Renovate opens pull requests against: the one Argo CD reads. Renovate 44.121.2 keeps a plain pattern as
    a branch name and skips one that is no branch ("Base branch does not exist - skipping",
    dist/workers/repository/process/index.js:95-100), so `HEAD`, Argo CD's default, is Renovate's `$default` keyword
    (:71-73: the repository's default branch, which HEAD names), and a commit SHA, no branch at all, leaves the key out
    (the default branch). A tag is not told apart from a branch by its name: it is written as it is, and Renovate
    skips it."""
    if revision == "HEAD":
        return {"baseBranchPatterns": ["$default"]}
    if re.fullmatch(r"[0-9a-f]{40}", revision):
        return {}
    return {"baseBranchPatterns": [revision]}


def config(stack: StackConfig) -> dict[str, Any]:
    """The configuration, as Renovate reads it."""
    gitops = gitops_plan.gitops_of(stack)
    folders = [gitops.apps_path, *([gitops.ainur_path] if stack.ainur is not None else [])]
    patterns = [_under(f) for f in folders]
    return {
        "$schema": "https://docs.renovatebot.com/renovate-schema.json",
        "extends": ["config:recommended"],
        # Argo CD deploys the branch it reads: updates come as pull requests against it, never pushed.
        **_base_branch(gitops.revision),
        "dependencyDashboard": True,
        "kubernetes": {"managerFilePatterns": patterns},
        "argocd": {"managerFilePatterns": patterns},
        "packageRules": [
            {
                # A major version changes what an app's values mean: held on the dashboard until asked for.
                "description": "Major updates wait for approval on the dependency dashboard",
                "matchUpdateTypes": ["major"],
                "dependencyDashboardApproval": True,
            },
            {
                "description": "One pull request per app folder's images and charts",
                "matchManagers": ["kubernetes", "kustomize", "helmv3", "argocd"],
                "commitMessageTopic": "{{depName}}",
            },
        ],
    }


def text(stack: StackConfig) -> str:
    return json.dumps(config(stack), indent=2) + "\n"
