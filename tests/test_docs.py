"""The documentation: the site under docs/ builds strictly with no network, its stack reference holds
every key of the config model, and the README stays short and runs exactly what CI runs."""

from __future__ import annotations

import ast
import html
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from iluvatar import recover, reference, render
from iluvatar.graph import Graph
from stacks import day2, load_stack_file, rules
from stacks.load import NAMESPACE, SECRETS, SECTIONS
from stacks.schema import DISABLE_DEFAULT_PROVIDERS, LISTS
from tests import runbook
from tests.edit import HOMELAB, homelab_doc, without, write_stack
from tests.sims import simulated

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"
# Flags that only quiet a command: CI passes them, the README leaves them out for a reader.
QUIET = {"--quiet", "-q", "--disable-pip-version-check"}
# The README's install goes on to render the homelab, the main job a user runs it for; CI's tests render it.
RENDER = ".venv/bin/iluvatar render homelab --out render/homelab --force"
# A proxy nothing listens on: a fetch through any library that honours the usual variables fails.
NO_NETWORK = {k: "http://127.0.0.1:9" for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy")}


def _offline() -> list[str]:
    """A command prefix with no network at all: a new network namespace (root, as CI runs), else nothing."""
    unshare = shutil.which("unshare")
    if unshare is not None and os.geteuid() == 0 and subprocess.run([unshare, "--net", "true"], capture_output=True, check=False).returncode == 0:
        return [unshare, "--net"]
    return []


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, **NO_NETWORK, "NO_MKDOCS_2_WARNING": "1", "no_proxy": "", "NO_PROXY": ""}
    mkdocs = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)]
    built = subprocess.run([*_offline(), *mkdocs], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stderr}"
    return out


def test_the_site_builds_strictly_and_needs_nothing_from_the_internet(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert (site / "index.html") in pages and (site / "homelab.svg").is_file()
    fetched = re.compile(r"<(?:script|img|link|iframe|source)\b[^>]*\b(?:src|href)=\"(?:https?:)?//[^\"]*\"")
    outside = {str(p.relative_to(site)): fetched.findall(p.read_text()) for p in pages}
    assert {p: found for p, found in outside.items() if found} == {}
    assert not any("fonts.googleapis" in p.read_text() for p in site.rglob("*.css"))


def _models(annotation: object) -> Iterator[tuple[type[BaseModel], bool]]:
    """The models a field's type holds, each with whether it sits in a list (a tuple of items)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, False
        return
    origin = typing.get_origin(annotation)
    for arg in typing.get_args(annotation):
        for model, listed in _models(arg):
            yield model, listed or origin is tuple


def _keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every key below a model as the stack file spells it (`dhcpRange.start`, `vlans[].id`), walked from pydantic."""
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        yield key
        for inner, listed in _models(field.annotation):
            yield from _keys(inner, key + ("[]." if listed else "."))


def model_keys() -> set[str]:
    """Every config key of the model, `section.key`, from the sections the stack reader knows."""
    keys = {DISABLE_DEFAULT_PROVIDERS, *(f"{NAMESPACE}:{s}" for s in SECRETS)}
    for name, section in SECTIONS.items():
        model = section.model if section.model is not None else LISTS[name][0]
        keys |= {f"{NAMESPACE}:{name}.{k}" for k in _keys(model)}
    return keys


def documented_keys(page: str) -> set[str]:
    """The keys the reference's tables list, each under its section's heading (a secret or Pulumi key whole)."""
    keys: set[str] = set()
    for chunk in page.split("<h2 ")[1:]:
        heading = html.unescape(re.sub(r"<[^>]+>", "", chunk.split("</h2>", 1)[0].split(">", 1)[1])).strip().rstrip("¶")
        for cell in re.findall(r"<tr>\s*<td><code>(.*?)</code></td>", chunk):
            key = html.unescape(cell)
            keys.add(key if ":" in key else f"{heading}.{key}")
    return keys


def test_the_stack_reference_has_every_key_of_the_model(site: Path) -> None:
    documented = documented_keys((site / "reference" / "stack" / "index.html").read_text())
    expected = model_keys()
    assert len(expected) > 100  # the walk reached the nested models
    assert {"iluvatar:nodes.installDisk.size", "iluvatar:network.vlans[].gateway", "iluvatar:storage.arda.ceph.replicas"} <= expected
    assert sorted(expected - documented) == []
    assert sorted(documented - expected) == []


def test_the_committed_stack_reference_is_what_the_generator_writes() -> None:
    """docs/reference/stack.md is read on GitHub as committed: it must be the model's, not a build's."""
    assert reference.PAGE.read_text() == reference.page(), f"docs/reference/stack.md is stale; regenerate it: .venv/bin/{reference.REGENERATE}"
    assert '<!-- stack-reference iluvatar:network -->\n\n<a id="network"></a>\n\n## `iluvatar:network`\n' in reference.PAGE.read_text()


def test_a_host_network_port_s_target_port_is_described_as_the_host_network_takes_it() -> None:
    """On the host network the container's port is the machine's: the row says only `port` is taken, not what an app's
    Service port's targetPort does (stacks.apps.host_network_problems refuses another, stacks.warn warns of that one)."""
    rows = {line.split(" | ")[0]: line for line in reference.page().splitlines() if line.startswith("| `")}
    assert rows["| `hostNetwork.ports[].targetPort`"] == (
        "| `hostNetwork.ports[].targetPort` | whole number or RFC 1123 label, e.g. `tirion` | unset | best unset: the container's "
        "port is the machine's `port` itself, with no Service in front to translate it, so only `port` is taken (and warned "
        "of as unused); another number or a name is refused |"
    )
    assert rows["| `ports[].targetPort`"].endswith(
        "| the container's port, a number unquoted or its name (at most 15 characters, a letter among them, no `--`, as Kubernetes names ports); unset, `port` |"
    )


def test_the_reference_command_checks_and_writes(tmp_path: Path) -> None:
    out = tmp_path / "stack.md"

    def iluvatar(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "iluvatar", "reference", "--out", str(out), *args], capture_output=True, text=True, timeout=60)

    stale = reference.PAGE.read_text().replace("| `lan` | IPv4 network", "| `lan` | an IPv4 network", 1)
    out.write_text(stale)
    checked = iluvatar("--check")
    assert (checked.returncode, checked.stderr) == (2, f"error: {out} is stale; regenerate it with `iluvatar reference --out {out}`\n")
    assert (iluvatar().returncode, out.read_text()) == (0, reference.PAGE.read_text())
    assert iluvatar("--check").stdout == f"{out} is current\n"
    out.write_text("# A page\n\n<!-- stack-reference iluvatar:network -->\n")
    assert (
        iluvatar().stderr
        == "error: stack.md: every <!-- stack-reference KEY --> needs its <!-- /stack-reference -->, on a line of its own below it\n"
    )


def test_the_version_ranges_the_reference_gives_are_the_tables_validation_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Docs and validator from one source: a release the table adds is one the page says, in both of its tables."""
    page = reference.versions()
    assert "| Talos | `iluvatar:arda.talosVersion` | `v1.14.1` | 1.12, 1.13, 1.14 |" in page
    assert "on Talos 1.12: 1.30 to 1.35; on Talos 1.13: 1.31 to 1.36; on Talos 1.14: 1.32 to 1.37; 1.31 or later with Ceph" in page
    assert "| 1.14 | 1.12.0 or later | 1.16 or later |" in page and "Raspberry Pi 5 (`rpi5`) from v1.12.3." in page
    monkeypatch.setitem(rules.TALOS_KUBERNETES, (1, 15), (33, 38))
    monkeypatch.setitem(day2.TALOS_UPGRADES, (1, 15), ((1, 13, 0), (1, 17, 0)))
    page = reference.versions()
    assert "| Talos | `iluvatar:arda.talosVersion` | `v1.14.1` | 1.12, 1.13, 1.14, 1.15 |" in page
    assert "on Talos 1.15: 1.33 to 1.38" in page and "| 1.15 | 1.13.0 or later | 1.17 or later |" in page
    # What the page used to say by hand, and validation no longer meant.
    assert "1.12 only" not in (ROOT / "docs" / "reference" / "keys.yaml").read_text() + reference.PAGE.read_text()


CODE = ("stacks", "plans", "components", "iluvatar", "__main__.py")
DOCS_LINK = re.compile(r"\bdocs/([a-z0-9/_-]+\.md)(?:#([a-z0-9-]+))?")


def _strings(path: Path) -> Iterator[str]:
    """Every string the code can print or raise: its string constants, docstrings aside (a reader of the code sees those)."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.value


def code_strings() -> dict[str, list[str]]:
    files = [p for name in CODE for p in ((ROOT / name).rglob("*.py") if (ROOT / name).is_dir() else [ROOT / name])]
    return {str(p.relative_to(ROOT)): list(_strings(p)) for p in sorted(files)}


def test_messages_link_the_docs_page_that_says_more_never_a_readme_section(site: Path) -> None:
    """The README is a newcomer's page, not a manual: a message sends its reader to the docs page, by a path that is
    the page's in the repository (GitHub) and an anchor the site's page has."""
    strings = code_strings()
    said = {path: [s for s in found if re.search(r"README(?!\.md)", s)] for path, found in strings.items()}
    assert {path: found for path, found in said.items() if found} == {}
    links = {(page, anchor) for found in strings.values() for s in found for page, anchor in DOCS_LINK.findall(s)}
    assert ("day2.md", "across-talos-minors") in links and ("day2.md", "retiring-a-disk-or-a-machine") in links
    for page, anchor in sorted(links):
        assert (ROOT / "docs" / page).is_file(), page
        if anchor:
            built = site / page.removesuffix(".md") / "index.html"
            assert f'id="{anchor}"' in built.read_text(), f"docs/{page}#{anchor}: the page has no such anchor"


GETTING_STARTED = ROOT / "docs" / "getting-started.md"
ILUVATAR = Path(sys.executable).parent / "iluvatar"


def session(page: str) -> list[tuple[str, list[str]]]:
    """The first console block of Getting started's "Your own homelab": each command (`$ ...`) with the lines it printed."""
    section = page.split("\n## Your own homelab\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```console\n(.*?)```", section, re.DOTALL)
    assert found is not None
    steps: list[tuple[str, list[str]]] = []
    for line in found.group(1).splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


def test_the_getting_started_session_is_what_the_commands_print(tmp_path: Path) -> None:
    """A newcomer's whole session, as the page writes it down: run again here, in a clone's layout, it prints the same."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q you@laptop\n")
    clone = tmp_path / "clone"
    (clone / ".venv" / "bin").mkdir(parents=True)
    (clone / ".venv" / "bin" / "iluvatar").symlink_to(ILUVATAR)
    (clone / "Pulumi.yaml").write_text("name: iluvatar\nruntime: python\n")
    # The clone's editor schema, which the stack file's header names from the clone's root.
    (clone / "stacks").mkdir()
    (clone / "stacks" / "stack.schema.json").write_bytes((ROOT / "stacks" / "stack.schema.json").read_bytes())
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p).resolve() != ILUVATAR.parent.resolve())
    steps = session(GETTING_STARTED.read_text())
    assert [command.split()[:2] for command, _ in steps] == [[".venv/bin/iluvatar", c] for c in ("init", "validate", "render")]
    for command, printed in steps:
        done = subprocess.run(
            ["bash", "-c", command], cwd=clone, env={**os.environ, "HOME": str(home), "PATH": path}, capture_output=True, text=True, timeout=120
        )
        assert (done.returncode, done.stderr) == (0, ""), command
        assert done.stdout.splitlines() == printed, command
    assert (clone / "render" / "mylab" / "ainur" / "pi-1.user-data").is_file()


def _commands(lines: list[str]) -> list[list[str]]:
    """Each command line as its steps (split on &&), with the flags that only quiet it dropped."""
    out = []
    for line in lines:
        steps = [" ".join(t for t in shlex.split(step) if t not in QUIET) for step in line.split("&&")]
        out.append(steps)
    return out


def ci_commands() -> list[list[str]]:
    lines = [line.strip() for line in CI.read_text().splitlines()]
    setup = ("#", "set ", "cd ", "export ")
    return _commands([line for line in lines if line and not line.startswith(setup)])


def readme_commands() -> list[list[str]]:
    """The commands in the README's Quickstart, block by block."""
    quickstart = README.read_text().split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", quickstart, re.DOTALL)
    return _commands([line.strip() for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")])


def test_the_readme_fits_on_a_few_screens() -> None:
    assert len(README.read_text().splitlines()) < 300


def test_the_readme_runs_exactly_what_ci_runs() -> None:
    # `.ci/run` runs the README's commands; when it changes, this section must follow.
    readme, ci = readme_commands(), ci_commands()
    assert ci, ".ci/run runs nothing?"
    assert [step for command in readme for step in command].count(RENDER) == 1
    assert [[step for step in command if step != RENDER] for command in readme] == ci


def test_the_readme_links_lead_somewhere(site: Path) -> None:
    text = README.read_text()
    links = re.findall(r"\]\(((?!https?:)[^)\s]+)\)", text)
    assert links
    for link in links:
        path, _, anchor = link.partition("#")
        assert (ROOT / path).exists(), f"README links to {path}, which does not exist"
        if anchor:
            assert path.startswith("docs/") and path.endswith(".md"), link
            page = path.removeprefix("docs/").removesuffix(".md")
            built = site / (page.removesuffix("index") if page.endswith("index") else page + "/") / "index.html"
            assert f'id="{anchor}"' in built.read_text(), f"README links to {link}, but the page has no such anchor"


def test_the_key_walk_reads_lists_and_unions() -> None:
    class Inner(BaseModel):
        leaf: int

    class Outer(BaseModel):
        one: Inner
        many: tuple[Inner, ...]
        either: str | Inner | None = None

    assert list(_keys(Outer)) == ["one", "one.leaf", "many", "many[].leaf", "either", "either.leaf"]
    assert isinstance(Outer.model_fields["either"].annotation, types.UnionType)


# The recovery of a stopped run's Helm upgrade (docs/bring-up.md, "When a `pulumi up` stops half-way"): its `pulumi stack
# export` line, run with real jq on a state as Pulumi v3.259.0 serialises it. A secret is written as an object carrying
# the secret signature and, with --show-secrets, `plaintext`: the value as JSON (pkg/resource/stack/deployment.go:844-866,
# sdk/go/common/apitype/core.go:603-606 SecretV1, resource.SecretSig).
SECRET_SIG = "4dabf18193072939515e22adb298388d"
KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://192.168.0.5:6443\n  name: arda\n"


def _exported(releases: dict[str, str]) -> str:
    """`pulumi stack export --show-secrets` of a stack with Arda's kubeconfig and these releases (name -> namespace)."""
    secret = {SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270", "plaintext": json.dumps(KUBECONFIG)}
    resources: list[dict[str, object]] = [
        {
            "urn": "urn:pulumi:lab::iluvatar::talos:cluster/kubeconfig:Kubeconfig::arda-kubeconfig",
            "type": "talos:cluster/kubeconfig:Kubeconfig",
            "outputs": {"kubeconfigRaw": secret, "node": "192.168.0.11"},
        },
        *(
            dict[str, object](
                {
                    "urn": f"urn:pulumi:lab::iluvatar::kubernetes:helm.sh/v3:Release::{n}",
                    "type": "kubernetes:helm.sh/v3:Release",
                    "outputs": {"name": n, "namespace": ns},
                }
            )
            for n, ns in releases.items()
        ),
    ]
    return json.dumps({"version": 3, "deployment": {"resources": resources}})


def _recovery_lines() -> list[str]:
    page = (ROOT / "docs" / "bring-up.md").read_text()
    return [line.strip() for line in page.splitlines() if line.strip().startswith("pulumi stack export")]


def test_the_stopped_release_recovery_reads_the_state_as_the_engine_writes_it(tmp_path: Path) -> None:
    lines = _recovery_lines()
    assert len(lines) == 1, lines  # a stopped install's release: `iluvatar recover` reads the state (tests/kube/test_stopped_release.py)
    (kubeconfig,) = lines
    assert kubeconfig.endswith("> arda.kubeconfig)"), kubeconfig

    def run(line: str, export: str) -> str:
        (tmp_path / "export.json").write_text(export)
        # The same pipeline, the export read from a file instead of the engine (`pulumi` is not installed here).
        pipeline = line.replace("pulumi stack export --show-secrets", "cat export.json").replace("pulumi stack export", "cat export.json")
        # Under the usual umask: the line itself keeps the file to its owner.
        done = subprocess.run(
            ["sh", "-c", "umask 022; " + pipeline.replace("<release>", "cert-manager")], cwd=tmp_path, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    # The kubeconfig written is the kubeconfig, not the secret's envelope; a cluster-admin key, readable by its owner alone.
    run(kubeconfig, _exported({}))
    assert (tmp_path / "arda.kubeconfig").read_text() == KUBECONFIG + "\n"
    assert (tmp_path / "arda.kubeconfig").stat().st_mode & 0o777 == 0o600


def test_the_plan_names_each_helm_release_as_helm_knows_it(tmp_path: Path) -> None:
    # Helm's refusal names no release; the recovery finds the Helm namespace and name of the resource Pulumi names.
    out = tmp_path / "render"
    subprocess.run([sys.executable, "-m", "iluvatar", "render", "rk1", "--out", str(out), "--force"], cwd=ROOT, check=True, capture_output=True)
    entries = [e.strip() for e in render.plan_entries((out / "plan.txt").read_text()) if "(kubernetes:helm.sh/v3:Release)" in e]
    assert entries and all("[helm release: " in e for e in entries), entries
    assert any(e.startswith("edge-certificates-cert-manager ") and "[helm release: cert-manager/cert-manager]" in e for e in entries), entries


def test_the_log_store_runbook_frees_the_old_volume_before_logs_come_back() -> None:
    """A new claim of the same name on `nfs` mounts the old folder (subDir `<namespace>/<claim>`), and every class here
    is Retain: the runbook must make the class delete the old volume (PV to Delete before its claim goes) and wait for
    the PV to be gone before the `up` that brings logs back, for every class alike; no by-hand removal on a node
    (`kubectl debug node` is refused by baseline Pod Security), nor `rbd rm` (it leaves ceph-csi's journal)."""
    heading = "### The log store's size or class"
    said = runbook.commands("docs/day2.md", heading)
    patch = next(i for i, c in enumerate(said) if c.startswith("kubectl patch pv ") and '"persistentVolumeReclaimPolicy":"Delete"' in c)
    claim = said.index("kubectl -n monitoring delete pvc data-victoria-logs-0")
    wait = next(i for i, c in enumerate(said) if c.startswith("kubectl wait --for=delete ") and '"pv/$pv"' in c and "--timeout=" in c)
    assert patch < claim < wait
    assert said[patch - 1] == "pv=$(kubectl -n monitoring get pvc data-victoria-logs-0 -o jsonpath='{.spec.volumeName}')"
    text = (runbook.ROOT / "docs/day2.md").read_text()
    section = text[text.index(heading) :]
    section = section[: re.search(r"\n#{1,3} ", section[1:]).start() + 1]  # type: ignore[union-attr]
    smaller = section[section.index("A smaller store, or another class") :]
    assert smaller.index("kubectl wait --for=delete") < smaller.index("`logs.claimChanged: true`, remove `enabled: false`")
    for gone in ("rbd rm", "kubectl debug node", "rm -rf", "ceph fs subvolume rm"):
        assert gone not in section, gone


def _first_step_of_up() -> str:
    """docs/bring-up.md's first item under "3. `pulumi up`", its lines joined."""
    page = (ROOT / "docs" / "bring-up.md").read_text()
    section = page.split("## 3. `pulumi up`\n", 1)[1]
    first = section.split("\n1. ", 1)[1].split("\n2. ", 1)[0]
    return " ".join(line.strip() for line in first.splitlines())


def test_the_bring_up_names_the_commands_the_engine_runs_first_on_a_pi_in_the_plans_order() -> None:
    """The page's first step names each Pi's steps up to its join in the order the engine runs them (the dependency
    order of the program's own graph, as plan.txt shows it): on the homelab the engine's first command on a Pi is the
    first valar's `-oidc`, then its `-join`; a Pi without sign-in's step starts with its join."""
    item = _first_step_of_up()
    named = re.findall(r"`ainur-<pi>-([a-z-]+)`", item.split(")", 1)[0])
    assert named == ["oidc", "join"], item
    stack = load_stack_file(HOMELAB)
    assert stack.identity is not None  # the homelab signs in: its valar has the `-oidc` step
    graph = Graph.of(simulated(HOMELAB))
    remote = [r for r in graph.order() if r.type == "command:remote:Command"]
    for pi in stack.ainur_nodes:
        join = graph.named(f"ainur-{pi.name}-join")
        own = [
            r.name.removeprefix(f"ainur-{pi.name}-") for r in remote if r.name.startswith(f"ainur-{pi.name}-") and (r is join or graph.after(join, r))
        ]
        assert own == (named if pi.role == "valar" else named[1:]), (pi.name, pi.role)
    # The engine's first command on any Pi: the one no other Pi command comes before.
    first = [r.name for r in remote if not any(graph.registrations[a].type == "command:remote:Command" for a in graph.ancestors(r.urn))]
    assert first == [f"ainur-{stack.by_role('valar')[0].name}-{named[0]}"]


def test_the_bring_up_says_a_pi_without_sign_in_has_no_oidc_step_and_the_graph_agrees(tmp_path: Path) -> None:
    """The page's first step says that without `identity` there is no `-oidc` step: the homelab without sign-in has
    none, and the engine's first command on a Pi is the first valar's `-join`."""
    item = _first_step_of_up()
    assert "(without `identity`, and on a maia, there is no such step)" in item, item
    doc = homelab_doc()
    doc["config"] = without(doc["config"], ("iluvatar:identity", "iluvatar:identityConnectorSecret"))
    path = write_stack(tmp_path, doc, "homelab")
    stack = load_stack_file(path)
    assert stack.identity is None
    graph = Graph.of(simulated(path))
    remote = [r for r in graph.order() if r.type == "command:remote:Command"]
    assert not [r.name for r in remote if r.name.endswith("-oidc")]
    first = [r.name for r in remote if not any(graph.registrations[a].type == "command:remote:Command" for a in graph.ancestors(r.urn))]
    assert first == [f"ainur-{stack.by_role('valar')[0].name}-join"]


# The condition docs/bring-up.md gives for a killed run's steps being over: the running children of its providers.
def _steps_left_line() -> str:
    found: set[str] = {m for p in ("docs/bring-up.md", "docs/troubleshooting.md") for m in re.findall(r"`(pgrep [^`]*)`", (ROOT / p).read_text())}
    assert len(found) == 1, found
    (line,) = found
    assert f"`{line}`" in recover.NEXT
    return line


def test_the_steps_left_line_lists_a_providers_running_step_and_not_its_own_wrapper(tmp_path: Path) -> None:
    """Run as `sh -c` (as `watch`, `ssh host '...'` run it), the line lists exactly the step a provider runs: it
    matches the providers by process name (the kernel's 15-character `comm`, `pulumi-resource`), not by command line,
    which the wrapper's own holds too."""
    line = _steps_left_line()
    provider = tmp_path / "pulumi-resource-command"  # a provider process by name, as the plugin's binary is named
    shutil.copy(shutil.which("sh") or "/bin/sh", provider)
    running = subprocess.Popen([str(provider), "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    step = None
    try:
        assert running.stdout is not None
        step = int(running.stdout.readline())  # the step started: its pid
        listed = subprocess.run(["sh", "-c", line], capture_output=True, text=True, timeout=60)
        assert (listed.returncode, listed.stdout) == (0, f"{step} sleep 300\n")
    finally:
        running.kill()
        running.wait()
        if step is not None:
            os.kill(step, signal.SIGKILL)
