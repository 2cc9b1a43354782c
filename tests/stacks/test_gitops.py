"""iluvatar:gitops: repository URLs, repository folders, categories and credentials, as Argo CD reads them.

The broken stacks (and their exact messages) are in tests/fixtures/invalid_stacks.yaml; these
pin what is accepted and how it is normalised.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from stacks import gitops, load_stack_file, parse_stack, read_stack_file
from stacks.categories import DEFAULT_CATEGORIES
from stacks.model import GitOps
from tests.edit import HOMELAB, RK1
from tools import upstream


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "known_as"),
    [
        ("https://github.com/example/homelab.git", "https", "github.com", None, "github.com"),
        ("https://git.example.com:8443/me/homelab", "https", "git.example.com", 8443, "[git.example.com]:8443"),
        ("git@github.com:example/homelab.git", "ssh", "github.com", None, "github.com"),
        ("ssh://git@ssh.github.com:443/example/homelab.git", "ssh", "ssh.github.com", 443, "[ssh.github.com]:443"),
        ("ssh://git@GitLab.com/example/homelab.git", "ssh", "gitlab.com", None, "gitlab.com"),
        ("ssh://forgejo@git.example.com:22/me/homelab.git", "ssh", "git.example.com", 22, "git.example.com"),
    ],
)
def test_urls_argo_cd_can_use(url: str, scheme: str, host: str, port: int | None, known_as: str) -> None:
    repo = gitops.parse_repo_url(url)
    assert (repo.scheme, repo.host, repo.port, repo.known_hosts_name) == (scheme, host, port, known_as)


def test_the_ssh_test_is_argo_cds_own() -> None:
    # util/git.IsSSHURL at the argo-cd appVersion the chart installs: a URL is SSH for Argo CD only
    # with a user before an `@`, which is why ssh://host/path is refused.
    source = (upstream.module_dir("github.com/argoproj/argo-cd/v3", "v3.5.2") / "util" / "git" / "git.go").read_text()
    found = re.search(r'sshURLRegex\s*=\s*regexp\.MustCompile\("([^"]+)"\)', source)
    assert found is not None
    assert gitops._ARGO_SSH.pattern == found.group(1)


@pytest.mark.parametrize(
    ("written", "clean"), [("apps", "apps"), ("./kubernetes/apps/", "kubernetes/apps"), ("a//b/./c", "a/b/c"), (".", "."), ("a/../b", "b")]
)
def test_repository_folders_are_normalised(written: str, clean: str) -> None:
    assert gitops.normalise_repo_path(written) == clean


def _gitops(**settings: Any) -> GitOps:
    return GitOps.model_validate({"repoUrl": "https://github.com/example/homelab.git", **settings})


def test_categories_are_the_defaults_the_stacks_and_the_registrys_in_that_order() -> None:
    assert gitops.category_names(None) == DEFAULT_CATEGORIES
    assert gitops.category_names(_gitops(categories=["games", "kids"]), ["media", "printing", "games"]) == (
        *DEFAULT_CATEGORIES,
        "games",
        "kids",
        "printing",
    )


def test_self_heal_for_all_none_or_some_categories() -> None:
    assert [gitops.self_healed(_gitops(selfHeal=True), c) for c in ("media", "system")] == [True, True]
    assert [gitops.self_healed(_gitops(), c) for c in ("media", "system")] == [False, False]
    assert [gitops.self_healed(_gitops(selfHeal=["system"]), c) for c in ("media", "system")] == [False, True]


def test_defaults() -> None:
    settings = _gitops()
    assert (settings.revision, settings.apps_path, settings.ainur_path, settings.private, settings.username, settings.self_heal) == (
        "HEAD",
        "apps",
        "ainur",
        False,
        "git",
        False,
    )
    assert (settings.argocd.version, settings.argocd.values) == ("10.8.0", {})


def _with(path: Any, secrets: dict[str, str] | None = None, **settings: Any) -> Any:
    raw: dict[str, Any] = dict(read_stack_file(path).config)
    raw["iluvatar:gitops"] = {**raw["iluvatar:gitops"], **settings}
    keys = set()
    for key, value in (secrets or {}).items():
        raw[f"iluvatar:{key}"] = value
        keys.add(f"iluvatar:{key}")
    return parse_stack(raw, frozenset(keys))


def test_an_ssh_host_argo_cd_knows_needs_no_known_hosts() -> None:
    stack = _with(RK1, {"gitopsSshPrivateKey": "k"}, repoUrl="git@github.com:example/turing-pi.git")
    assert stack.gitops.repo_url == "git@github.com:example/turing-pi.git"


def test_an_ssh_host_in_known_hosts_is_accepted_under_any_of_its_names() -> None:
    line = "git.example.com,10.10.0.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q"
    stack = _with(RK1, {"gitopsSshPrivateKey": "k"}, repoUrl="ssh://git@10.10.0.5/me/homelab.git", sshKnownHosts=[line])
    assert stack.gitops.ssh_known_hosts == (line,)


def test_a_private_https_repository_with_its_token() -> None:
    stack = _with(RK1, {"gitopsToken": "t"}, private=True, username="me")
    assert (stack.gitops.private, stack.gitops.username) == (True, "me")


def _offered_forms(url: str) -> tuple[str, ...]:
    """The https URL, the username and the SSH form the refusal of an account in `url` offers."""
    with pytest.raises(ValueError, match="an https URL takes no user") as refused:
        gitops.parse_repo_url(url)
    found = re.search(r"write (https://\S+) with gitops.username: (\S+) .*or the SSH form (\S+) ", str(refused.value))
    assert found is not None
    return found.groups()


def test_both_forms_the_refusal_of_an_account_in_an_https_url_offers_are_accepted() -> None:
    https, username, ssh = _offered_forms("https://mara@bitbucket.org/example/homelab.git")
    stack = _with(RK1, {"gitopsToken": "t"}, repoUrl=https, username=username, private=True)
    assert (stack.gitops.repo_url, stack.gitops.username) == ("https://bitbucket.org/example/homelab.git", "mara")
    stack = _with(RK1, {"gitopsSshPrivateKey": "k"}, repoUrl=ssh)
    assert stack.gitops.repo_url == "git@bitbucket.org:example/homelab.git"


def test_both_forms_the_refusal_of_an_account_in_an_azure_devops_https_url_offers_are_accepted() -> None:
    # Azure DevOps's SSH form is its own host and v3 path, not the https URL's host with a colon.
    https, username, ssh = _offered_forms("https://fabrikam@dev.azure.com/fabrikam/homelab/_git/ops")
    assert ssh == "git@ssh.dev.azure.com:v3/fabrikam/homelab/ops"
    stack = _with(RK1, {"gitopsToken": "t"}, repoUrl=https, username=username, private=True)
    assert (stack.gitops.repo_url, stack.gitops.username) == ("https://dev.azure.com/fabrikam/homelab/_git/ops", "fabrikam")
    stack = _with(RK1, {"gitopsSshPrivateKey": "k"}, repoUrl=ssh)  # ssh.dev.azure.com's key ships with the argo-cd chart
    assert stack.gitops.repo_url == ssh


@pytest.mark.parametrize(
    ("url", "https"),
    [
        ("https://fabrikam@fabrikam.visualstudio.com/homelab/_git/ops", "https://fabrikam.visualstudio.com/homelab/_git/ops"),
        ("https://git@dev.azure.com/fabrikam/_git/ops", "https://dev.azure.com/fabrikam/_git/ops"),
    ],
)
def test_an_azure_url_whose_ssh_form_is_not_derived_is_offered_its_https_form_alone(url: str, https: str) -> None:
    with pytest.raises(ValueError, match="an https URL takes no user") as refused:
        gitops.parse_repo_url(url)
    assert "or the SSH form" not in str(refused.value)
    assert f"write {https} " in str(refused.value)
    assert gitops.parse_repo_url(https).scheme == "https"


def test_the_mirror_defaults_to_the_gitops_repository() -> None:
    stack = load_stack_file(HOMELAB)
    assert stack.ainur is not None and stack.ainur.git_mirror is not None
    assert stack.ainur.git_mirror.url is None
    assert stack.gitops is not None and stack.gitops.repo_url == "https://github.com/example/homelab.git"


def test_the_ainur_folder_may_sit_beside_categories_at_the_root() -> None:
    stack = _with(RK1, appsPath=".", ainurPath="pis")
    assert (stack.gitops.apps_path, stack.gitops.ainur_path) == (".", "pis")
    with pytest.raises(Exception, match=r"ainurPath: media/pis is inside the category folder media"):
        _with(RK1, appsPath=".", ainurPath="media/pis")


@pytest.mark.parametrize("revision", ["release/1.2", "feature/origin-ui", "upstreams/main", "refs/heads/upstream/main", "refs/heads/origin/main"])
def test_branches_named_with_a_slash_are_revisions(revision: str) -> None:
    # Only origin/ and upstream/, the remotes a clone nearly always has, are read as a remote's; a server's branch of
    # such a name is written in full (refs/heads/...), which Argo CD's lsRemote matches too.
    assert _gitops(revision=revision).revision == revision
