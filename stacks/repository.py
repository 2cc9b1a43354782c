"""The GitOps repository's fields, checked the way Argo CD itself will read them.

A repository URL (https, or SSH with a user), a revision git accepts, a folder inside the
repository and a known_hosts line: what `stacks.model.GitOps` checks field by field. The rules
that relate `iluvatar:gitops` to the rest of the stack (its secrets, categories, the Ainur's
mirror) are `stacks.gitops`'s, which reads the model; this module reads nothing of it, so the
model can use these checks without an import circle.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from dataclasses import dataclass

from stacks.errors import show
from stacks.fields import BRACKETED, bracketed_ipv4

# Argo CD's own test for an SSH repository URL (util/git.IsSSHURL): a user before an `@`.
_ARGO_SSH = re.compile(r"^(ssh://)?([^/:]*?)@[^@]+$")
_SCP = re.compile(r"^(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/\s].*)$")
_SSH = re.compile(r"^ssh://(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+)(:(?P<port>\d{1,5}))?/(?P<path>\S+)$")
_HTTPS = re.compile(r"^https://(?P<host>[A-Za-z0-9.-]+)(:(?P<port>\d{1,5}))?/(?P<path>\S+)$")
# A branch, tag or commit as git accepts it in a refspec (git check-ref-format, simplified to what a user types).
_REVISION = re.compile(r"^(?!/)(?!.*(\.\.|//|@\{|\.lock$|/\.|\.$|/$))[A-Za-z0-9._/+-]+$")


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class RepoUrl:
    """A repository URL as Argo CD will use it: https, or SSH (scp-like `git@host:path` or `ssh://`)."""

    url: str
    scheme: str  # "https" or "ssh"
    host: str
    port: int | None

    @property
    def known_hosts_name(self) -> str:
        """The host as a known_hosts line names it (`[host]:port` off port 22)."""
        return self.host if self.port in (None, 22) else f"[{self.host}]:{self.port}"


def parse_repo_url(value: object) -> RepoUrl:
    """The repository URL, or ValueError saying why Argo CD could not use it."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{show(value)} is not a repository URL (e.g. https://github.com/you/homelab.git or git@github.com:you/homelab.git)")
    url = value.strip()
    https = _HTTPS.match(url)
    if https:
        port = int(https["port"]) if https["port"] else None
        return RepoUrl(url, "https", https["host"].lower(), port)
    ssh = _SSH.match(url) or _SCP.match(url)
    if ssh and _ARGO_SSH.match(url):
        port = int(ssh["port"]) if "port" in ssh.groupdict() and ssh["port"] else None
        return RepoUrl(url, "ssh", ssh["host"].lower(), port)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    literal = BRACKETED.match(url)
    if literal is not None and scheme in ("", "ssh", "https") and _is_ipv6(literal["ip"]):
        # An IPv6 literal is a host the forms above never take: said before the user rule, which it would fool.
        raise ValueError(
            f"{url}: {literal['ip']} is an IPv6 address, and the clusters' pods have IPv4 alone, so Argo CD could never reach "
            "the repository; write the Git server's IPv4 address, or a name that resolves to one"
        )
    if literal is not None and scheme in ("", "ssh", "https") and _is_ipv4(literal["ip"]):
        # Said before the user rule, which the brackets would fool, with the URL as the forms above read it.
        raise ValueError(bracketed_ipv4(url))
    if scheme == "ssh":
        raise ValueError(f"{url} has no user: Argo CD reads an SSH URL only with one (e.g. ssh://git@github.com/you/homelab.git)")
    if scheme in ("http", "git", "file"):
        raise ValueError(
            f"{url} uses {scheme}://; Argo CD is given only https:// or SSH repositories here "
            "(e.g. https://github.com/you/homelab.git or git@github.com:you/homelab.git)"
        )
    user = re.match(r"^https://(?P<user>[^@/:]+)@(?P<rest>[A-Za-z0-9.-]+(:\d{1,5})?/\S+)$", url)
    if user is not None:
        # Argo CD reads a URL with a user as SSH only without a scheme or with ssh:// (util/git.IsSSHURL, _ARGO_SSH
        # above); an https URL signs in with the secret's username and gitopsToken, never a user written in it. Two
        # habits write one: `git@` from SSH, or an account, as Bitbucket Cloud's HTTPS clone URL holds one
        # (https://<account>@bitbucket.org/...), which is the user its app password signs in as and so belongs in
        # gitops.username. The SSH form's user is the forge's `git` for every account (GitHub, GitLab, Bitbucket,
        # Codeberg: the key tells the account), never the account's name.
        rest, name = user["rest"], user["user"]
        ssh_form = _ssh_form(rest)
        if name == "git":
            raise ValueError(
                f"{url}: an https URL takes no user (git@ is the SSH form's); write https://{rest} (with gitops.private: true and "
                f"iluvatar:gitopsToken if the repository is private)" + (f", or the SSH form {ssh_form}" if ssh_form else "")
            )
        raise ValueError(
            f"{url}: an https URL takes no user (the account {name} belongs in gitops.username); write https://{rest} with "
            f"gitops.username: {name} (and gitops.private: true and iluvatar:gitopsToken, the account's token or app password, if "
            f"the repository is private)"
            + (f", or the SSH form {ssh_form} (SSH's user is the forge's git whichever account's key signs in, not {name})" if ssh_form else "")
        )
    raise ValueError(f"{url} is not an https:// or SSH repository URL (e.g. https://github.com/you/homelab.git or git@github.com:you/homelab.git)")


# Azure DevOps serves Git over SSH on another host and path than its https URL's: https://dev.azure.com/<org>/<project>/
# _git/<repo> is git@ssh.dev.azure.com:v3/<org>/<project>/<repo> (MicrosoftDocs/azure-devops-docs
# docs/repos/git/use-ssh-keys-to-authenticate.md at 03fdcb3, "Step 3: Clone the Git repository with SSH": `git clone
# git@ssh.dev.azure.com:v3/fabrikam-fiber/FabrikamFiber/FabrikamFiber`). Any other Azure URL (one without the project,
# the older <org>.visualstudio.com) is offered its https form alone, the SSH form being none this module can derive.
_AZURE_HTTPS = re.compile(r"^dev\.azure\.com/(?P<org>[^/]+)/(?P<project>[^/]+)/_git/(?P<repo>[^/?#]+?)/?$", re.IGNORECASE)


def _ssh_form(rest: str) -> str | None:
    """The SSH form of an https repository URL without its scheme and user (`rest`): the forge's `git@host:path`, Azure
    DevOps's v3 form, or None for another Azure URL."""
    host = rest.split("/", 1)[0].split(":", 1)[0].lower()
    if host == "dev.azure.com":
        azure = _AZURE_HTTPS.match(rest)
        if azure is None:
            return None
        return f"git@ssh.dev.azure.com:v3/{azure['org']}/{azure['project']}/{azure['repo']}"
    if host.endswith(".visualstudio.com"):
        return None
    return "git@" + re.sub(r"^([^/:]+)(:\d+)?/", r"\1:", rest)


def check_repo_url(value: object) -> object:
    parse_repo_url(value)
    return value.strip() if isinstance(value, str) else value


# A remote-tracking name of the user's own clone (`git branch -a` prints remotes/origin/main): its remote's branch, as
# that clone last fetched it. Argo CD resolves a revision against the server's own refs, which `git ls-remote` lists:
# a ref whose full name is the revision, or, for a short one, a branch or tag whose short name is (argo-cd v3.5.1
# util/git/client.go:942-1007, lsRemote: `ref.Name().Short() == revision || refName == revision` over refs/heads/*,
# refs/tags/* and HEAD, else "unable to resolve ... to a commit SHA"). A server has no refs/remotes/, so no such
# revision ever resolves and nothing syncs on either cluster. A short name is read as a remote's when its first part is
# `origin`, the name `git clone` gives the remote a clone came from, or `upstream`, the one GitHub's and GitLab's fork
# guides have you add: `git branch -a` shows nearly every clone's remote-tracking names under these two. Any other first
# part is a branch-naming convention (release/1.2, feature/x, a user's name) and stays a branch. A server's branch that
# really is named origin/... or upstream/... (Debian's DEP-14 upstream/latest) is still reached by its full name,
# refs/heads/upstream/latest, which lsRemote matches as `refName == revision`.
_REMOTE_TRACKING = re.compile(r"^(?:refs/remotes/|remotes/)(?P<remote>[^/]+)/(?P<branch>.+)$|^(?P<origin>origin|upstream)/(?P<short>.+)$")


def check_revision(value: object) -> object:
    if not isinstance(value, str) or not _REVISION.match(value):
        raise ValueError(f"{show(value)} is not a branch, tag or commit git accepts (e.g. main, v1.2.0 or HEAD)")
    tracking = _REMOTE_TRACKING.match(value)
    if tracking is not None:
        branch = tracking["branch"] or tracking["short"]
        remote = tracking["remote"] or tracking["origin"]
        raise ValueError(
            f"{value} is your clone's copy of the branch {branch} of the remote {remote} (a remote-tracking name), which the "
            f"server does not have: Argo CD resolves the revision among the server's own branches and tags, so nothing would "
            f"sync; write {branch}" + (f" (or refs/heads/{value} if the server has a branch of that name)" if tracking["origin"] else "")
        )
    return value


def normalise_repo_path(value: object) -> object:
    """A folder inside the repository, as a clean relative path (`.` is the repository's root).

    It may not leave the repository, be absolute, hold glob characters (the generator's path is a
    glob) or pass through a hidden folder (Argo CD's repo-server never lists those).
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{show(value)} is not a folder of the repository (e.g. apps, or kubernetes/apps)")
    raw = value.strip()
    if raw.startswith("/"):
        raise ValueError(f"{raw} is absolute; give a folder relative to the repository's root (e.g. apps)")
    clean = posixpath.normpath(raw)
    if clean == ".." or clean.startswith("../"):
        raise ValueError(f"{raw} leaves the repository (it resolves to {clean})")
    if re.search(r"[*?\[\]{}\\]", clean):
        raise ValueError(f"{raw} has a glob character; Argo CD's Git generator would read it as a pattern")
    hidden = next((part for part in clean.split("/") if part.startswith(".") and part != "."), None)
    if hidden is not None:
        raise ValueError(f"{raw} goes through the hidden folder {hidden}, which Argo CD's repo-server never lists")
    return clean


def check_known_host(value: object) -> object:
    if not isinstance(value, str) or len(value.split()) < 3 or value.lstrip().startswith("#"):
        raise ValueError(f"{show(value)} is not a known_hosts line (host key-type key, e.g. the output of `ssh-keyscan git.example.com`)")
    return value.strip()
