"""The ApplicationSet check: Argo CD's own code renders the program's ApplicationSets over a GitOps repository.

1. The program runs under the mock runtime (iluvatar.simulate); every AppProject, ApplicationSet
   and Application it would create is taken from its registrations, by cluster.
2. The repository folder is served the way the Ainur serve it: the mirror's own script
   (plans.gitops.mirror_script) clones it into a bare mirror, and `git daemon` with the mirror's
   own arguments (plans.gitops.mirror_daemon_command) serves it, on 127.0.0.1 only. A folder that
   is not a Git repository (a fresh scaffold) is first committed on the stack's revision.
3. `tools/appset-check` (github.com/argoproj/argo-cd/v3 at the argo-cd chart's appVersion) reads it
   with Argo CD's Git client, renders each cluster's ApplicationSets with Argo CD's generators and
   template code, builds each generated Application's folder with kustomize's own library, and asks
   each Application's AppProject what it permits. The repository listing the Git generator is
   handed is ours (the repo-server's walk, in process); everything else is Argo CD's.

    python -m tools.appset_check STACK_FILE REPO_DIR   # the Applications Argo CD would make; exit 1 on any error
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plans import gitops as plan
from stacks.errors import StackConfigError
from stacks.load import StackFile, StackFileError, read_stack_file, validate_stack_file
from tools import gotools

ARGO_TYPE = "kubernetes:argoproj.io/v1alpha1:"
# A fixed identity and date for the commit of a folder that is not a repository: same folder, same commit.
_COMMIT_ENV = {
    "GIT_AUTHOR_NAME": "iluvatar",
    "GIT_AUTHOR_EMAIL": "iluvatar@localhost",
    "GIT_COMMITTER_NAME": "iluvatar",
    "GIT_COMMITTER_EMAIL": "iluvatar@localhost",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_SYSTEM": os.devnull,
}


class AppSetCheckError(Exception):
    """The check could not run (no git, the mirror never came up, the checker failed)."""


@dataclass
class ArgoObjects:
    """The Argo CD objects the program creates on one cluster, as manifests."""

    projects: list[dict[str, Any]] = field(default_factory=list)
    application_sets: list[dict[str, Any]] = field(default_factory=list)
    applications: list[dict[str, Any]] = field(default_factory=list)


def _as_sent(value: Any) -> Any:
    """A value as the Kubernetes provider sends it: Pulumi carries numbers as floats, and Go's JSON
    encoder writes a whole float64 without a fraction (2.0 as 2)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _as_sent(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_sent(v) for v in value]
    return value


def program_objects(sf: StackFile) -> dict[str, ArgoObjects]:
    """Every AppProject, ApplicationSet and Application the program registers, by cluster."""
    from iluvatar.render import cluster_of
    from iluvatar.simulate import simulate

    found: dict[str, ArgoObjects] = {}
    for reg in simulate(sf).registrations:
        if not reg.type.startswith(ARGO_TYPE):
            continue
        kind = reg.type.removeprefix(ARGO_TYPE)
        manifest = {"apiVersion": plan.API_VERSION, "kind": kind, "metadata": _as_sent(reg.inputs["metadata"]), "spec": _as_sent(reg.inputs["spec"])}
        objects = found.setdefault(cluster_of(reg), ArgoObjects())
        {"AppProject": objects.projects, "ApplicationSet": objects.application_sets, "Application": objects.applications}[kind].append(manifest)
    return found


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, **_COMMIT_ENV}
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)  # noqa: S603, S607
    if result.returncode != 0:
        raise AppSetCheckError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, ready: Any, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise AppSetCheckError(f"{what} did not come up: {output.strip() or 'no output'}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def served(repo_dir: Path, revision: str) -> Iterator[str]:
    """The folder's repository, mirrored and served as the Ainur do, at a git:// URL on 127.0.0.1."""
    if shutil.which("git") is None:
        raise AppSetCheckError("git is not installed (apt-get install git)")
    with tempfile.TemporaryDirectory(prefix="iluvatar-appset-") as tmp:
        upstream = Path(repo_dir).resolve()
        if not (upstream / ".git").exists():
            upstream = Path(tmp) / "upstream"
            shutil.copytree(repo_dir, upstream)
            _git("init", "-q", "-b", "main" if revision == "HEAD" else revision, cwd=upstream)
            _git("add", "-A", cwd=upstream)
            _git("commit", "-q", "--allow-empty", "-m", "GitOps repository", cwd=upstream)
        base = Path(tmp) / "srv"
        base.mkdir()
        port = _free_port()
        mirror = subprocess.Popen(  # noqa: S603 - the plan's own script, with a local upstream
            ["sh", "-c", plan.mirror_script(str(upstream), str(base), 1, None)],  # noqa: S607
            env={**os.environ, **_COMMIT_ENV},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        daemon_args = plan.mirror_daemon_command(str(base), port)
        # Only this machine: the daemon's own arguments, with a listen address before the paths.
        daemon_args.insert(2, "--listen=127.0.0.1")
        daemon = None
        try:
            _wait("the mirror's clone", lambda: (base / plan.MIRROR_REPO / "HEAD").exists(), mirror)
            daemon = subprocess.Popen(daemon_args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # noqa: S603
            _wait("git daemon", lambda: _listening(port), daemon)
            yield f"git://127.0.0.1:{port}/{plan.MIRROR_REPO}"
        finally:
            for process in (daemon, mirror):
                if process is not None:
                    _stop(process)


def run_checker(objects: ArgoObjects, repos: dict[str, str]) -> dict[str, Any]:
    """tools/appset-check on one cluster's objects; `repos` maps each repository URL to where it is served."""
    request = {
        "namespace": plan.NAMESPACE,
        "repos": repos,
        "projects": objects.projects,
        "applicationSets": objects.application_sets,
        "applications": objects.applications,
    }
    binary = gotools.build("appset-check")
    result = subprocess.run([str(binary)], input=json.dumps(request), capture_output=True, text=True, timeout=600)  # noqa: S603
    if result.returncode != 0:
        raise AppSetCheckError(f"appset-check failed: {result.stderr.strip()}")
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def repo_urls(objects: ArgoObjects) -> set[str]:
    return {g["git"]["repoURL"] for a in objects.application_sets for g in a["spec"]["generators"]}


def check(sf: StackFile, repo_dir: Path) -> dict[str, dict[str, Any]]:
    """What Argo CD makes of `repo_dir` on each cluster of the stack: the checker's output, by cluster."""
    stack = validate_stack_file(sf)
    if stack.gitops is None:
        raise AppSetCheckError(f"{sf.path}: the stack has no iluvatar:gitops")
    objects = program_objects(sf)
    results = {}
    with served(repo_dir, stack.gitops.revision) as url:
        for cluster, found in sorted(objects.items()):
            results[cluster] = run_checker(found, dict.fromkeys(sorted(repo_urls(found)), url))
    return results


def problems(results: dict[str, dict[str, Any]]) -> list[str]:
    """Everything Argo CD would refuse: generator errors, apps a project forbids, folders kustomize cannot build."""
    out = []
    for cluster, result in sorted(results.items()):
        out += [f"{cluster}: ApplicationSet {a['name']}: {a['error']}" for a in result["applicationSets"] if a.get("error")]
        for p in result["permits"]:
            if p.get("error") or not (p["source"] and p["destination"]):
                out.append(f"{cluster}: Application {p['application']}: project {p['project']} refuses it ({p})")
        out += [f"{cluster}: Application {b['application']}: kustomize build {b['path']}: {b['error']}" for b in result["builds"] if b.get("error")]
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    results = check(read_stack_file(argv[0]), Path(argv[1]))
    for cluster, result in sorted(results.items()):
        for appset in result["applicationSets"]:
            for app in appset["applications"]:
                spec = app["spec"]
                print(
                    f"{cluster}: {app['metadata']['name']}  {spec['source']['path']} -> namespace {spec['destination']['namespace']} (project {spec['project']})"
                )
    found = problems(results)
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (AppSetCheckError, gotools.GoToolError, StackFileError, StackConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
