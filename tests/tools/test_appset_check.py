"""Argo CD's own code over the scaffolded repository: exactly one Application per app folder.

The program's ApplicationSets and AppProjects (from the mock run) go to tools/appset-check, built
on github.com/argoproj/argo-cd/v3 at the argo-cd chart's appVersion: its Git client reads the
repository from a real `git daemon` fed by the mirror's own script, its generators and templates
render the Applications, kustomize's library builds each app's folder, and each Application's
project says whether it may sync. The directory listing handed to the Git generator is ours (the
repo-server's walk); the rest is Argo CD's.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from iluvatar import scaffold
from plans import gitops as plan
from stacks import load_stack_file, read_stack_file
from stacks.categories import DEFAULT_CATEGORIES
from tests.edit import HOMELAB, RK1, edit, homelab_doc, write_stack
from tools import appset_check

REGISTRY = [("home-assistant", "home-automation"), ("jellyfin", "media"), ("blog", "selfhosted")]


def _scaffold(path: Path, tmp: Path, apps: list[tuple[str, str]] = REGISTRY) -> Path:
    repo = tmp / "repo"
    scaffold.write(repo, scaffold.files(load_stack_file(path), apps))
    return repo


def _generated(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return sorted(
        (a["metadata"]["name"], a["spec"]["source"]["path"], a["spec"]["destination"]["namespace"], a["spec"]["project"])
        for appset in result["applicationSets"]
        for a in appset["applications"]
    )


def _app_folders(repo: Path, root: str) -> list[str]:
    base = repo / root if root != "." else repo
    return sorted(str(p.parent.relative_to(repo)) for p in base.glob("*/*/kustomization.yaml"))


@pytest.mark.parametrize("path", [HOMELAB, RK1], ids=["homelab", "rk1"])
def test_the_scaffold_yields_one_application_per_app_in_its_categorys_namespace(path: Path, tmp_path: Path) -> None:
    stack = load_stack_file(path)
    assert stack.gitops is not None
    repo = _scaffold(path, tmp_path)
    apps_path = stack.gitops.apps_path
    if stack.ainur is not None:
        # The Ainur's add-ons are the user's own; one, to see the seed's ApplicationSet at work.
        (repo / "ainur" / "headlamp").mkdir(parents=True)
        (repo / "ainur" / "headlamp" / "kustomization.yaml").write_text("resources: []\n")
    results = appset_check.check(read_stack_file(path), repo)
    assert appset_check.problems(results) == []
    assert _generated(results["arda"]) == sorted(
        (f"{category}-{name}", f"{apps_path}/{category}/{name}", category, "arda") for name, category in REGISTRY
    )
    assert [f for f in _app_folders(repo, apps_path)] == sorted(f"{apps_path}/{c}/{n}" for n, c in REGISTRY)
    # Every category has its ApplicationSet, and Argo CD reads every one without an error.
    assert sorted(a["name"] for a in results["arda"]["applicationSets"]) == sorted(DEFAULT_CATEGORIES)

    # The scaffolded apps build with kustomize and their project lets them sync: empty until the user fills them, but
    # for what Pulumi's data layer gives them in the homelab (each app's ExternalSecret; a backed-up volume's claim,
    # its VolSync backup and restore). rk1 has neither app secrets nor backups.
    def data(app: str, backed_up: bool) -> list[str]:
        volume = f"{app}-config"
        backup = [f"ReplicationSource/{volume}", f"PersistentVolumeClaim/{volume}", f"ReplicationDestination/{volume}-restore"]
        return [f"ExternalSecret/{app}", *(backup if backed_up else [])]

    expected = (
        {
            "kubernetes/apps/home-automation/home-assistant": data("home-assistant", True),
            "kubernetes/apps/media/jellyfin": data("jellyfin", True),
            "kubernetes/apps/selfhosted/blog": data("blog", False),
        }
        if path == HOMELAB
        else {f"{apps_path}/{c}/{n}": [] for n, c in REGISTRY}
    )
    assert {b["path"]: (b["kustomize"], b["objects"], b.get("error")) for b in results["arda"]["builds"]} == {
        folder: (True, objects, None) for folder, objects in expected.items()
    }
    assert {(p["project"], p["source"], p["destination"], p["namespaces"]) for p in results["arda"]["permits"]} == {
        ("arda", True, True, False),
        ("platform", True, True, True),
    }
    if stack.ainur is not None:
        assert _generated(results["ainur"]) == [("ainur-headlamp", "ainur/headlamp", "headlamp", "ainur")]
        assert set(results) == {"arda", "ainur"}
    else:
        assert set(results) == {"arda"}
    # Argo CD read the repository at the stack's revision, through the URL the cluster uses.
    [(url, read)] = results["arda"]["repos"].items()
    assert url == plan.repo_url(stack, "arda")
    assert read["revision"] == "main"


def test_an_app_the_user_adds_appears_and_a_hidden_folder_does_not(tmp_path: Path) -> None:
    repo = _scaffold(HOMELAB, tmp_path, apps=[])
    for folder in ("kubernetes/apps/media/sonarr", "kubernetes/apps/media/.template", "kubernetes/apps/system/reloader/overlays"):
        (repo / folder).mkdir(parents=True)
    (repo / "kubernetes/apps/media/sonarr/kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (repo / "kubernetes/apps/media/sonarr/cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: sonarr}\n")
    (repo / "kubernetes/apps/media/.template/kustomization.yaml").write_text("resources: []\n")
    (repo / "kubernetes/apps/system/reloader/overlays/kustomization.yaml").write_text("resources: []\n")
    results = appset_check.check(read_stack_file(HOMELAB), repo)
    assert _generated(results["arda"]) == [
        ("media-sonarr", "kubernetes/apps/media/sonarr", "media", "arda"),
        ("system-reloader", "kubernetes/apps/system/reloader", "system", "arda"),
    ]
    builds = {b["application"]: b for b in results["arda"]["builds"]}
    assert builds["media-sonarr"]["objects"] == ["ConfigMap/sonarr"]
    # A folder with no kustomization at its top is not kustomize's (Argo CD would apply it as plain manifests).
    assert builds["system-reloader"]["kustomize"] is False


def test_a_broken_app_is_reported_in_kustomizes_words(tmp_path: Path) -> None:
    repo = _scaffold(RK1, tmp_path, apps=[("blog", "selfhosted")])
    (repo / "apps/selfhosted/blog/kustomization.yaml").write_text("resources: [deployment.yaml]\n")
    found = appset_check.problems(appset_check.check(read_stack_file(RK1), repo))
    assert len(found) == 1
    assert found[0].startswith("arda: Application selfhosted-blog: kustomize build apps/selfhosted/blog: accumulating resources")
    assert "deployment.yaml" in found[0]


@functools.cache
def _objects(path: Path) -> dict[str, appset_check.ArgoObjects]:
    return appset_check.program_objects(read_stack_file(path))


@contextlib.contextmanager
def _served(tmp_path: Path) -> Iterator[str]:
    repo = _scaffold(HOMELAB, tmp_path)
    with appset_check.served(repo, "main") as url:
        yield url


def test_a_template_typo_is_an_error_not_an_empty_name(tmp_path: Path) -> None:
    arda = _objects(HOMELAB)["arda"]
    media = next(a for a in arda.application_sets if a["metadata"]["name"] == "media")
    broken = {
        **media,
        "spec": {**media["spec"], "template": {**media["spec"]["template"], "metadata": {"name": "media-{{ .path.basenameNormalised }}"}}},
    }
    objects = appset_check.ArgoObjects(arda.projects, [broken], [])
    with _served(tmp_path) as url:
        result = appset_check.run_checker(objects, {plan.repo_url(load_stack_file(HOMELAB), "arda"): url})
    [appset] = result["applicationSets"]
    assert appset["applications"] == []
    assert 'map has no entry for key "basenameNormalised"' in appset["error"]


def test_projects_refuse_what_they_must(tmp_path: Path) -> None:
    stack = load_stack_file(HOMELAB)

    def app(name: str, project: str, namespace: str, repo: str) -> dict[str, Any]:
        manifest = plan.platform_application(name, chart="c", repo_url=repo, version="1", values={}, namespace=namespace, project=project)
        return manifest

    mirror = plan.repo_url(stack, "arda")
    arda = _objects(HOMELAB)["arda"]
    ainur = _objects(HOMELAB)["ainur"]
    checks = [
        (arda, app("into-kube-system", "arda", "kube-system", mirror)),
        (arda, app("from-elsewhere", "arda", "media", "https://github.com/someone/else.git")),
        (arda, app("platform", "platform", "rook-ceph", "https://charts.rook.io/release")),
        (ainur, app("into-netboot", "ainur", "netboot", plan.repo_url(stack, "ainur"))),
        (ainur, app("headlamp", "ainur", "headlamp", plan.repo_url(stack, "ainur"))),
        (arda, app("no-such-project", "media", "media", mirror)),
    ]
    permits = {}
    for objects, manifest in checks:
        result = appset_check.run_checker(appset_check.ArgoObjects(objects.projects, [], [manifest]), {})
        [permit] = result["permits"]
        permits[permit["application"]] = (permit["source"], permit["destination"], permit["namespaces"], permit.get("error", ""))
    assert permits == {
        "into-kube-system": (True, False, False, ""),
        "from-elsewhere": (False, True, False, ""),
        "platform": (True, True, True, ""),
        "into-netboot": (True, False, False, ""),
        "headlamp": (True, True, False, ""),
        "no-such-project": (False, False, False, "application references project media which does not exist"),
    }


def test_argo_cd_decodes_the_objects_strictly() -> None:
    arda = _objects(HOMELAB)["arda"]
    broken = {**arda.projects[0], "spec": {**arda.projects[0]["spec"], "sourceRepo": ["*"]}}
    with pytest.raises(appset_check.AppSetCheckError, match=r'projects\[0\]: json: unknown field "sourceRepo"'):
        appset_check.run_checker(appset_check.ArgoObjects([broken], [], []), {})


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_argo_cds_git_client_cannot_read_the_dumb_http_protocol(tmp_path: Path) -> None:
    # Why the mirror runs `git daemon`: the Ainur's mirror used to be nginx serving a bare repository's
    # files (git update-server-info), which the git CLI clones but Argo CD's ls-remote (go-git) cannot.
    repo = _scaffold(HOMELAB, tmp_path)
    bare = tmp_path / "www" / "repo.git"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "x"], check=True, env=env)
    subprocess.run(["git", "clone", "-q", "--mirror", str(repo), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp_path / "www")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/repo.git"
        assert subprocess.run(["git", "ls-remote", url], capture_output=True, text=True, check=False).returncode == 0  # git itself can
        arda = _objects(HOMELAB)["arda"]
        media = [a for a in arda.application_sets if a["metadata"]["name"] == "media"]
        result = appset_check.run_checker(appset_check.ArgoObjects(arda.projects, media, []), {plan.repo_url(load_stack_file(HOMELAB), "arda"): url})
    finally:
        server.shutdown()
    [appset] = result["applicationSets"]
    assert appset["applications"] == []
    assert "ls-remote" in appset["error"]


def test_the_mirror_keeps_serving_its_last_copy_and_follows_the_upstream(tmp_path: Path) -> None:
    upstream = _scaffold(RK1, tmp_path, apps=[("blog", "selfhosted")])
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(upstream)], check=True)
    subprocess.run(["git", "-C", str(upstream), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(upstream), "commit", "-qm", "one"], check=True, env=env)
    rk1 = _objects(RK1)["arda"]

    def repos(url: str) -> dict[str, str]:
        return {plan.repo_url(load_stack_file(RK1), "arda"): url}

    with appset_check.served(upstream, "main") as url:
        first = appset_check.run_checker(rk1, repos(url))
        (upstream / "apps/media/jellyfin").mkdir(parents=True)
        (upstream / "apps/media/jellyfin/kustomization.yaml").write_text("resources: []\n")
        subprocess.run(["git", "-C", str(upstream), "add", "-A"], check=True)
        subprocess.run(["git", "-C", str(upstream), "commit", "-qm", "two"], check=True, env=env)
        second = _eventually(lambda: appset_check.run_checker(rk1, repos(url)), lambda r: len(_generated(r)) == 2)
        shutil.rmtree(upstream)  # the upstream goes away: the mirror keeps what it has
        third = appset_check.run_checker(rk1, repos(url))
    assert [g[0] for g in _generated(first)] == ["selfhosted-blog"]
    assert [g[0] for g in _generated(second)] == ["media-jellyfin", "selfhosted-blog"]
    assert _generated(third) == _generated(second)


def _eventually(run: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool], tries: int = 30) -> dict[str, Any]:
    for _ in range(tries):
        result = run()
        if done(result):
            return result
        time.sleep(1)
    return result


def test_the_stack_with_a_category_of_its_own(tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"iluvatar:gitops.categories": ["games"]})
    sf = read_stack_file(write_stack(tmp_path, doc, stack="homelab"))
    stack = load_stack_file(sf.path)
    repo = tmp_path / "repo"
    scaffold.write(repo, scaffold.files(stack, [("minecraft", "games")]))
    results = appset_check.check(sf, repo)
    assert appset_check.problems(results) == []
    assert _generated(results["arda"]) == [("games-minecraft", "kubernetes/apps/games/minecraft", "games", "arda")]
