"""`iluvatar scaffold STACK --out DIR`: the GitOps repository layout, added to and never overwritten.

That the layout is exactly what the ApplicationSets read is tests/tools/test_appset_check.py
(Argo CD's own generators over a scaffolded repository).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from iluvatar import scaffold
from stacks import load_stack_file
from stacks.categories import DEFAULT_CATEGORIES
from tests.edit import GOES_WITH_GITOPS, RK1, ROOT, edit, homelab_doc, write_stack


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "iluvatar", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_the_homelab_layout(tmp_path: Path) -> None:
    out = tmp_path / "gitops"
    result = run("scaffold", "homelab", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"scaffolded the GitOps repository of Pulumi.homelab.yaml in {out}: 37 files written, 0 kept as they were"
    # No folder for Grafana or Headlamp: their platform Applications deploy them (an ApplicationSet would add a second).
    assert not (out / "kubernetes/apps/monitoring/grafana").exists() and not (out / "kubernetes/apps/system/headlamp").exists()
    # One example app per app of the stack's registry (home-assistant, jellyfin, blog, and the raw-port apps minecraft
    # and mosquitto), in its category.
    examples = [
        f"kubernetes/apps/{c}/{a}/{f}"
        for c, a in (
            ("home-automation", "home-assistant"),
            ("media", "jellyfin"),
            ("selfhosted", "blog"),
            ("selfhosted", "minecraft"),
            ("home-automation", "mosquitto"),
        )
        for f in ("README.md", "kustomization.yaml")
    ]
    # Each app's ExternalSecret (all three have app secrets), and for a backed-up volume its claim, backup and restore.
    secrets = [
        f"kubernetes/apps/{c}/{a}/externalsecret.yaml"
        for c, a in (("home-automation", "home-assistant"), ("media", "jellyfin"), ("selfhosted", "blog"))
    ]
    backups = [
        f"kubernetes/apps/{c}/{a}/{claim}-{what}.yaml"
        for c, a, claim in (
            ("home-automation", "home-assistant", "home-assistant-config"),
            ("media", "jellyfin", "jellyfin-config"),
            # The broker's state, and the Minecraft world's archives (the claim of the StatefulSet's `backups` template).
            ("home-automation", "mosquitto", "mosquitto-data"),
            ("selfhosted", "minecraft", "backups-minecraft-0"),
        )
        for what in ("backup", "pvc", "restore")
    ]
    assert tree(out) == sorted(
        [
            "renovate.json",  # plans.renovate: updates that reach the repository
            "ainur/README.md",
            "kubernetes/apps/README.md",
            *(f"kubernetes/apps/{c}/README.md" for c in DEFAULT_CATEGORIES),
            *examples,
            *secrets,
            *backups,
        ]
    )
    readme = (out / "kubernetes/apps/README.md").read_text()
    assert "- `kubernetes/apps/media/` → namespace `media`" in readme
    assert "Argo CD undoes hand edits (self-heal) in\n`system`;" in readme
    assert "Self-heal is on." in (out / "kubernetes/apps/system/README.md").read_text()
    assert "Self-heal is off." in (out / "kubernetes/apps/media/README.md").read_text()
    # A raw-port app's folder says where its ports are served and which pods its Service sends to.
    mosquitto = (out / "kubernetes/apps/home-automation/mosquitto/README.md").read_text()
    assert "raw ports (1883/tcp, 8883/tcp): the edge already serves them at\n192.168.0.221" in mosquitto
    assert "`app.kubernetes.io/name: mosquitto`" in mosquitto


def test_rk1_has_no_ainur_folder(tmp_path: Path) -> None:
    assert run("scaffold", "rk1", "--out", str(tmp_path / "r")).returncode == 0
    # rk1's Grafana is an app of its registry, but kube-prometheus's platform Application deploys it: no folder of its own.
    examples = [f"apps/home-automation/home-assistant/{f}" for f in ("README.md", "kustomization.yaml")]
    assert tree(tmp_path / "r") == sorted(["renovate.json", "apps/README.md", *(f"apps/{c}/README.md" for c in DEFAULT_CATEGORIES), *examples])


def test_an_example_app_per_app_the_registry_names() -> None:
    files = scaffold.files(load_stack_file(RK1), [("home-assistant", "home-automation"), ("minecraft", "games")])
    assert sorted(f for f in files if f.count("/") == 3) == [
        "apps/games/minecraft/README.md",
        "apps/games/minecraft/kustomization.yaml",
        "apps/home-automation/home-assistant/README.md",
        "apps/home-automation/home-assistant/kustomization.yaml",
    ]
    # A category the registry uses is a category: its folder, README and (elsewhere) its ApplicationSet.
    assert "a category of this stack" in files["apps/games/README.md"]
    assert "- `home-assistant/`: the registry's app `home-assistant`" in files["apps/home-automation/README.md"]
    assert yaml.safe_load(files["apps/home-automation/home-assistant/kustomization.yaml"]) == {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [],
    }
    assert "home-automation-home-assistant" in files["apps/home-automation/home-assistant/kustomization.yaml"]


def test_a_second_run_keeps_every_file_it_finds(tmp_path: Path) -> None:
    out = tmp_path / "gitops"
    assert run("scaffold", "Pulumi.rk1.yaml", "--out", str(out)).returncode == 0
    mine = out / "apps/media/README.md"
    mine.write_text("my notes\n")
    (out / "apps/system/README.md").unlink()
    result = run("scaffold", "rk1", "--out", str(out))
    assert result.returncode == 0
    assert result.stdout.strip() == f"scaffolded the GitOps repository of Pulumi.rk1.yaml in {out}: 1 file written, 12 kept as they were"
    assert mine.read_text() == "my notes\n"
    assert (out / "apps/system/README.md").exists()
    assert not [p for p in out.rglob(".*")], "no temporary file left behind"


def test_errors_exit_with_one_line(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    result = run("scaffold", "rk1", "--out", str(afile))
    assert (result.returncode, result.stderr.strip()) == (2, f"error: {afile} exists and is not a folder")
    result = run("scaffold", "nope", "--out", str(tmp_path / "x"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: no stack 'nope': Pulumi.nope.yaml does not exist")
    no_gitops = write_stack(
        tmp_path,
        edit(
            homelab_doc(),
            {"iluvatar:ainur.gitMirror.url": "https://github.com/example/homelab.git"},
            delete=list(GOES_WITH_GITOPS),
        ),
        stack="plain",
    )
    result = run("scaffold", str(no_gitops), "--out", str(tmp_path / "x"))
    assert (result.returncode, result.stderr.strip()) == (2, f"error: {no_gitops}: the stack has no iluvatar:gitops; set its repoUrl first")
    broken = write_stack(tmp_path, edit(homelab_doc(), {"iluvatar:gitops.appsPath": "../up"}), stack="broken")
    result = run("scaffold", "broken", "--project", str(broken.parent), "--out", str(tmp_path / "x"))
    assert result.returncode == 1
    assert "iluvatar:gitops.appsPath: ../up leaves the repository (it resolves to ../up)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()
