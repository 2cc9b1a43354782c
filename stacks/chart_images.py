"""The images chart values pin (`arda.cilium.values`, `gitops.argocd.values`), against the release the chart ships.

A chart's manifests, its CRDs and the values Iluvatar gives it are written for the release of its own components the
chart ships (its appVersion): an image key that pins one of them to another release runs a binary none of them were
written for, gets round the rules on the chart's version (`arda.cilium.version` 1.18 or later, a minor at a time), and
leaves `iluvatar versions` and the summary naming the chart's release, not what runs. So such a tag is refused, at the
key that sets it; a mirror (another repository with the chart's own tag) is accepted, as the Talos rule on
Kubernetes' component images accepts one (stacks.rules._component_images). An image the chart pins of another
project's release (Cilium's Envoy, Hubble UI, certgen; Argo CD's Dex, Redis, redis-ha's) at another tag, or by another
digest, is warned of: a newer one may be a security fix of its line. A digest on the chart's own image, in any form (a
tag's `@sha256:`, an override or a repository that carries one, a digest key), decides what runs whatever the tag
says, since a container runtime pulls by the digest: where the kept data has the release's digest of that image,
exactly that one is accepted and another refused; where it has none, every form is warned of, naming what validate
cannot check, and writing the chart's tag beside it does not silence it. A new tag beside the chart's own digest is
warned of too (the tag is a label only). An Argo CD image written as text, where the chart reads a mapping, and a
Cilium operator repository that names the image in full (the chart appends the cloud) are refused.

What each chart ships is kept here as data (`chart_images/<chart>-<version>.json`: its appVersion, and each image's
defaults from its values.yaml), which tests/stacks/test_chart_images.py holds equal to the pinned chart's own files,
and which holds the tables below to every image the chart's templates read. The files are read from the charts as
Iluvatar's tools stage them (tools/upstream/charts.py), not from the charts Helm installs:
- Cilium's chart is staged from the Go module github.com/cilium/cilium at the release's tag, install/kubernetes/cilium.
  There, install/kubernetes/Makefile.digests leaves the digests of Cilium's own images (the agent, the operator, Hubble
  Relay, clustermesh-apiserver) empty, so Makefile.values sets USE_DIGESTS false and the kept data has `digest: ""`,
  `useDigest: false` for them. The chart Iluvatar installs comes from helm.cilium.io (plans.cilium.REPOSITORY), which
  Cilium's release workflow builds after filling Makefile.digests in: it may pin each own image by the release's
  digest with `useDigest: true`. That chart cannot be fetched here, so what it pins is unchecked: no message claims a
  digest of Cilium's own images, and a digest written for one without useDigest is read as that chart would read it.
  The other projects' images carry their digests in the tree itself (values.yaml, as kept).
- Argo CD's chart pins its own image by tag alone (no digest key), and no digest of the release is kept.
For a chart version with no data kept, Cilium's rule still holds (its own images are tagged `v<chart version>`,
values.yaml `image.tag` at each release); Argo CD's appVersion cannot be told from its chart's version, so a tag of its
own image is warned of there.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacks import chart_values, pins
from stacks.errors import Problem, show
from stacks.model import Arda, GitOps
from stacks.rules import CILIUM_OLDEST

DATA = Path(__file__).resolve().parent / "chart_images"
# The charts whose images are kept here, by chart and version (`<chart>-<version>.json`).
KEPT = {("cilium", pins.CHARTS["cilium"]), ("argo-cd", pins.CHARTS["argo-cd"])}


@dataclass(frozen=True)
class ChartImages:
    """A chart's appVersion and each image's defaults in its values.yaml, by the image's key path (`operator.image`)."""

    chart: str
    version: str
    app_version: str
    images: Mapping[str, Mapping[str, Any]]


@functools.cache
def chart_images(chart: str, version: str) -> ChartImages | None:
    """The chart's images kept here at that version, or None."""
    if (chart, version) not in KEPT:
        return None
    data = json.loads((DATA / f"{chart}-{version}.json").read_text())
    return ChartImages(chart, version, data["appVersion"], data["images"])


# Cilium 1.18.4's images, by the key the chart reads each from. Its own components are built from Cilium's tree at the
# chart's release and tagged with it (values.yaml:216-226 image, 1504-1513 hubble.relay.image, 2842-2856
# operator.image, 3151-3160 preflight.image, 3320-3329 clustermesh.apiserver.image, each tag "v1.18.4"): the agent,
# the operator (templates/cilium-operator/_helpers.tpl:28-37), Hubble Relay, the preflight check and the clustermesh
# API server, whose image runs its etcd and kvstoremesh too (templates/clustermesh-apiserver/deployment.yaml:66,120-121,
# 187, 287).
CILIUM_OWN: dict[str, str] = {
    "image": "the agent",
    "operator.image": "the operator",
    "hubble.relay.image": "Hubble Relay",
    "preflight.image": "the preflight check",
    "clustermesh.apiserver.image": "the clustermesh API server (its etcd and kvstoremesh with it)",
}
# The images Cilium 1.18.4 pins of releases of their own: cilium-envoy's line (values.yaml:2466-2475, 3164-3173, tag
# v1.34.10-...), certgen's (1166-1174, v0.2.4), Hubble UI's (1763-1771, 1798-1806, v0.13.3), the node init's
# startup-script (3065-3073), and SPIRE's with busybox (3866-3874, 3921-3929 and initImage beside them).
CILIUM_OTHERS: dict[str, str] = {
    "envoy.image": "the Envoy proxy (cilium-envoy)",
    "preflight.envoy.image": "the preflight check's Envoy (cilium-envoy)",
    "certgen.image": "certgen",
    "hubble.ui.backend.image": "Hubble UI's backend",
    "hubble.ui.frontend.image": "Hubble UI's frontend",
    "nodeinit.image": "the node init (startup-script)",
    "authentication.mutual.spire.install.initImage": "SPIRE's init container (busybox)",
    "authentication.mutual.spire.install.agent.image": "the SPIRE agent",
    "authentication.mutual.spire.install.server.image": "the SPIRE server",
}
# SPIRE's two images may be a whole reference as text (templates/spire/server/statefulset.yaml:68-69,
# spire/agent/daemonset.yaml:64-65); every other is a mapping the chart's cilium.image helper composes.
CILIUM_TEXT = {"authentication.mutual.spire.install.agent.image", "authentication.mutual.spire.install.server.image"}
# The keys of an image's mapping that make its reference (templates/_helpers.tpl:30-38; the operator's digest is its
# cloud's, templates/cilium-operator/_helpers.tpl:13-23, and its name takes the cloud and the suffix, :28-37).
CILIUM_KEYS = ("override", "repository", "tag", "digest", "genericDigest", "awsDigest", "azureDigest", "alibabacloudDigest", "useDigest", "suffix")

# Argo CD 10.8.0's images, by the key the chart reads each from. Its own components all run Argo CD's one image,
# `<repository or global.image.repository>:<tag or global.image.tag or the chart's appVersion>` (templates/_common.tpl:
# 37-39 argo-cd.defaultTag; argocd-server/deployment.yaml:72, argocd-application-controller/statefulset.yaml:79 and
# deployment.yaml:78, argocd-repo-server/deployment.yaml:78,438, argocd-applicationset/deployment.yaml:67,
# argocd-notifications/deployment.yaml:68, argocd-commit-server/deployment.yaml:66, redis-secret-init/job.yaml:46,
# dex/deployment.yaml:192 for Dex's init container, Argo CD's copyutil).
ARGOCD_OWN: dict[str, str] = {
    "global.image": "every Argo CD component that sets no image of its own",
    "server.image": "the API server",
    "controller.image": "the application controller",
    "repoServer.image": "the repo server",
    "applicationSet.image": "the ApplicationSet controller",
    "notifications.image": "the notifications controller",
    "commitServer.image": "the commit server",
    "redisSecretInit.image": "the Redis secret init job",
    "dex.initImage": "Dex's init container (Argo CD's copyutil)",
}
# The images Argo CD 10.8.0 pins of other projects, each `<repository>:<tag>`: Dex (templates/dex/deployment.yaml:74,
# values.yaml dex.image), Redis and its exporter (redis/deployment.yaml:64,132), the server's extension installer
# (argocd-server/deployment.yaml:478), and the redis-ha subchart's Redis, HAProxy, metrics exporter and sysctl init
# container (charts/redis-ha/templates/redis-ha-statefulset.yaml:131,538,118, redis-haproxy-deployment.yaml:110), which
# run only with redis-ha.enabled, as the parent's values reach them.
ARGOCD_OTHERS: dict[str, str] = {
    "dex.image": "Dex",
    "redis.image": "Redis",
    "redis.exporter.image": "Redis's metrics exporter",
    "server.extensions.image": "the server's extension installer",
    "redis-ha.image": "redis-ha's Redis",
    "redis-ha.haproxy.image": "redis-ha's HAProxy",
    "redis-ha.exporter": "redis-ha's metrics exporter",
    "redis-ha.sysctlImage": "redis-ha's sysctl init container",
}
# The keys each image is read from where they are not `repository` and `tag`: redis-ha's exporter is a text image
# beside its tag (charts/redis-ha/templates/redis-ha-statefulset.yaml:538), its sysctl image a registry, a repository
# and a tag (charts/redis-ha/templates/_helpers.tpl:32-36, the tag `latest` where empty).
ARGOCD_KEYS: dict[str, tuple[str, ...]] = {
    "redis-ha.exporter": ("image", "tag"),
    "redis-ha.sysctlImage": ("registry", "repository", "tag"),
}

# An image reference as a container runtime reads it: a name, an optional tag, an optional digest.
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")


@dataclass(frozen=True)
class Reference:
    image: str
    tag: str | None
    digest: str | None
    valid: bool


def reference(image: str) -> Reference:
    """`image`'s tag and digest, and whether it is a reference at all (`repo:v1:v2` is not)."""
    name, at, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag: str | None = None
    valid = bool(name) and (not at or _DIGEST.match(digest) is not None)
    if ":" in last:
        name, _, tag = name.rpartition(":")
        valid = valid and bool(name) and _TAG.match(tag) is not None and ":" not in name.rsplit("/", 1)[-1]
    return Reference(image, tag, digest if at else None, valid)


def _at(values: Mapping[str, Any], path: str) -> Any:
    node: Any = values
    for key in path.split("."):
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def _text(value: Any) -> str:
    """A value as Helm's templates print it: null and false as nothing."""
    return "" if value is None or value is False else str(value)


def _cilium_image(block: Mapping[str, Any], operator: bool, values: Mapping[str, Any]) -> str:
    """The reference Cilium's chart writes for an image's keys (templates/_helpers.tpl:30-38, the operator's
    templates/cilium-operator/_helpers.tpl:13-37)."""
    if _text(block.get("override")):
        return _text(block.get("override"))
    tag = f":{_text(block.get('tag'))}" if _text(block.get("tag")) else ""
    if not operator:
        digest = f"@{_text(block.get('digest'))}" if block.get("useDigest") else ""
        return f"{_text(block.get('repository'))}{tag}{digest}"
    cloud = next((c for c, key in (("aws", "eni"), ("azure", "azure"), ("alibabacloud", "alibabacloud")) if _at(values, f"{key}.enabled")), "generic")
    digest = f"@{_text(block.get(f'{cloud}Digest'))}" if block.get("useDigest") else ""
    return f"{_text(block.get('repository'))}-{cloud}{_text(block.get('suffix'))}{tag}{digest}"


def _written_key(block: Mapping[str, Any]) -> str:
    """The key of a user's image mapping that decides its release: override, a repository that carries a tag or a
    digest, else tag (the digests beside it only where the tag is the chart's)."""
    if _text(block.get("override")):
        return "override"
    repository = _text(block.get("repository"))
    if "@" in repository or ":" in repository.rsplit("/", 1)[-1]:
        return "repository"
    if "tag" in block:
        return "tag"
    return next(k for k in CILIUM_KEYS if k in block)


@dataclass(frozen=True)
class Finding:
    """A refusal (refused) or a warning, at a config path."""

    refused: bool
    problem: Problem


def _digest_key(operator: bool, values: Mapping[str, Any]) -> str:
    """The key the chart reads an image's digest from: the operator's is its cloud's (templates/cilium-operator/
    _helpers.tpl:13-23), every other's `digest` (templates/_helpers.tpl:30-38)."""
    if not operator:
        return "digest"
    cloud = next((c for c, key in (("aws", "eni"), ("azure", "azure"), ("alibabacloud", "alibabacloud")) if _at(values, f"{key}.enabled")), "generic")
    return f"{cloud}Digest"


def _digest_of(block: Mapping[str, Any] | None, operator: bool, values: Mapping[str, Any]) -> str | None:
    """The digest a kept image's defaults pin (the operator's, its cloud's), or None where they pin none."""
    if block is None or not block.get("useDigest"):
        return None
    return reference(_cilium_image(block, operator, values)).digest


def _cilium(arda: Arda) -> Iterator[Finding]:
    version = arda.cilium.version
    kept = chart_images("cilium", version)
    pinned = chart_images("cilium", pins.CHARTS["cilium"])
    assert pinned is not None  # the pinned chart's are always kept (the test holds it)
    own = f"v{version}"
    values = arda.cilium.values
    base = "iluvatar:arda.cilium.values"
    schema = chart_values.chart_schema("cilium", version) is not None
    for path in (*CILIUM_OWN, *CILIUM_OTHERS):
        given = _at(values, path)
        is_own = path in CILIUM_OWN
        operator = path == "operator.image"
        defaults: dict[str, Any] = {}
        # What the user wrote of the image's keys; for an own image whose kept defaults pin no digest, a digest written
        # without useDigest is read as the chart that pins one would read it (useDigest true): the kept data is the Go
        # module tree's, and the chart helm.cilium.io publishes may set useDigest true (see the module's docstring).
        written_keys: dict[str, Any] = {}
        maybe_digest = False
        if isinstance(given, str) and path in CILIUM_TEXT:
            image, key, written = given, path, given
        elif isinstance(given, Mapping) and any(k in given for k in CILIUM_KEYS):
            # A key set to null drops the chart's default (Helm's coalescing); a chart kept here gives the defaults, else
            # the pinned chart's shape with the chart's own tag and no digest.
            defaults = (
                dict(kept.images[path])
                if kept is not None
                else {**pinned.images[path], "tag": own if is_own else "", "digest": "", "useDigest": False}
            )
            written_keys = {k: given[k] for k in CILIUM_KEYS if k in given}
            if (
                is_own
                and "useDigest" not in given
                and _digest_of(defaults, operator, values) is None
                and _text(written_keys.get(_digest_key(operator, values)))
            ):
                written_keys["useDigest"] = maybe_digest = True
            image = _cilium_image({**defaults, **written_keys}, operator, values)
            key = f"{path}.{_written_key(given)}"
            written = given[_written_key(given)]
            if written is not None and not isinstance(written, str) and key.rsplit(".", 1)[-1] in ("override", "repository", "tag") and schema:
                continue  # not text: the chart's values schema refuses it (stacks.chart_values), once
        else:
            continue
        ref = reference(image)
        # The fix: remove the key that decides the release, or every key of the image the user wrote where what the
        # others make without it is no better (a repository emptied of its tag beside `tag: ""`).
        removed = [key]
        if isinstance(given, Mapping):
            rest = {**defaults, **{k: given[k] for k in CILIUM_KEYS if k in given and f"{path}.{k}" != key}}
            kept_ref = reference(_cilium_image(rest, operator, values))
            if not kept_ref.valid or (is_own and kept_ref.tag != own):
                removed = [f"{path}.{k}" for k in CILIUM_KEYS if k in given]
        default_block = kept.images[path] if kept is not None else None
        default_image = (
            _cilium_image(default_block, operator, values)
            if default_block is not None
            else _cilium_image({**pinned.images[path], "tag": own, "digest": "", "useDigest": False}, operator, values)
        )
        chart_digest = _digest_of(default_block, operator, values)
        component = CILIUM_OWN.get(path) or CILIUM_OTHERS[path]
        # No digest of the release kept: the chart that runs may pin one beside the tag (helm.cilium.io's), so the fix
        # names the image by its tag and says no digest.
        runs = f"{default_image}, by the release's digest where helm.cilium.io's chart pins one" if is_own and chart_digest is None else default_image
        remove = f"remove {', '.join(removed)} from arda.cilium.values (the chart then runs {runs})"
        repository = _text(given.get("repository")) if isinstance(given, Mapping) and not _text(given.get("override")) else ""
        cloud = next((c for c in ("generic", "aws", "azure", "alibabacloud") if repository.rsplit("/", 1)[-1].endswith(f"-{c}")), None)
        if operator and cloud is not None and ref.valid:
            # templates/cilium-operator/_helpers.tpl:35 writes `<repository>-<cloud><suffix>`: a repository named by
            # the image's full name gets the cloud twice.
            yield Finding(
                True,
                Problem(
                    f"{base}.operator.image.repository",
                    f"{show(given['repository'])} names the operator's image in full, but Cilium's chart appends the cloud "
                    f"to operator.image.repository itself (templates/cilium-operator/_helpers.tpl:35, "
                    f"`<repository>-<cloud><suffix>`), so the operator would pull {image}, no image Cilium builds, and go "
                    f"into ImagePullBackOff; write operator.image.repository: {repository.removesuffix(f'-{cloud}')}, the name "
                    f"without -{cloud}",
                ),
            )
            continue
        if not ref.valid:
            yield Finding(True, _invalid(f"{base}.{key}", written, f"Cilium's chart writes the image of {component} as {image}", remove))
        elif is_own and ref.digest is not None and ref.digest == chart_digest and ref.tag in (own, None):
            continue  # the release's own digest, which the kept data pins: the chart's own build
        elif is_own and ref.tag != own:
            said = _said(written, image, ref, key.endswith(".tag"), own)
            yield Finding(
                True,
                Problem(
                    f"{base}.{key}",
                    f"{said} Cilium {version}, which arda.cilium.version's chart ships (its appVersion): {component} would run "
                    "a binary the chart's manifests and Iluvatar's values are not written for, round the rules on "
                    f"arda.cilium.version ({'.'.join(map(str, CILIUM_OLDEST))} or later for the cilium.io/v2 CiliumLoadBalancerIPPool, one minor at a time on "
                    f"upgrade), while `iluvatar versions` and the summary say {version}; {remove}; to run another release, set "
                    f"arda.cilium.version to the chart that ships it; for a mirror, give its image the tag {own}",
                ),
            )
        elif is_own and ref.digest is not None and chart_digest is not None:
            yield Finding(
                True,
                Problem(
                    f"{base}.{key}",
                    f"{show(written)} makes {component} run {image}, whose digest is not {chart_digest}, the one Cilium "
                    f"{version}'s chart pins for {own}: a container runtime pulls by the digest and reads the tag as a label "
                    f"only, so {component} would run another build under the chart's tag; {remove}",
                ),
            )
        elif is_own and ref.digest is not None:
            # Any form that carries a digest (the tag's `@sha256:`, override, a repository, digest or the operator's
            # cloud digest): the digest decides what runs, whatever the tag says, and no digest of the release is kept
            # to hold it to. Writing the tag beside it checks nothing, so it does not silence this.
            name = default_image.partition("@")[0]
            digest_key = _digest_key(operator, values)
            if isinstance(given, Mapping) and key.endswith(".tag") and "@" not in _text(written) and _text(given.get(digest_key)):
                # The tag is the chart's: the digest beside it is what to name, and what to remove.
                key, written = f"{path}.{digest_key}", given[digest_key]
                removed = [f"{path}.{k}" for k in (digest_key, "useDigest") if k in given]
                remove = f"remove {', '.join(removed)} from arda.cilium.values (the chart then runs {runs})"
            unused = " where useDigest is true, as the chart helm.cilium.io publishes may set it" if maybe_digest else ""
            yield Finding(
                False,
                Problem(
                    f"{base}.{key}",
                    f"{show(written)} makes {component} run {image}{unused}: a container runtime pulls by the digest and reads "
                    f"the tag as a label only, so the digest decides the release, and validate cannot tell which release "
                    f"{ref.digest} is: it keeps no digest of Cilium {version}'s own images ({_unkept_digests(version, kept is not None)}); "
                    f"check it is {own}'s (`docker buildx imagetools inspect {name}`), or {remove}",
                ),
            )
        elif (
            not is_own
            and default_block is not None
            and ref.tag != reference(default_image).tag
            and ref.digest is not None
            and ref.digest == chart_digest
        ):
            # The chart's digest stays beside the new tag (useDigest true, its default here): a runtime pulls by the digest
            # and never reads the tag, so the chart's release still runs under a tag that says another.
            pinned_tag = reference(default_image).tag or ""
            yield Finding(
                False,
                Problem(
                    f"{base}.{key}",
                    f"{show(written)} is not {pinned_tag}, the tag Cilium {version}'s chart pins for {component}, but the chart's "
                    f"digest of {pinned_tag} stays beside it (useDigest true) and a container runtime pulls by the digest, so "
                    f"{component} still runs {pinned_tag} under a tag that says {ref.tag}; to run {ref.tag}, set "
                    f"{path}.useDigest: false beside it (or its own digest in {path}.digest); else {remove}",
                ),
            )
        elif not is_own and default_block is not None and ref.tag != reference(default_image).tag:
            yield Finding(
                False, _other(f"{base}.{key}", written, image, ref, component, f"Cilium {version}", reference(default_image).tag or "", remove)
            )
        elif not is_own and default_block is not None and ref.digest is not None and ref.digest != chart_digest:
            yield Finding(
                False,
                _other_digest(
                    f"{base}.{key}", written, ref, component, f"Cilium {version}", reference(default_image).tag or "", chart_digest, remove
                ),
            )
        elif not is_own and default_block is None:
            yield Finding(
                False,
                _unknown_other(
                    f"{base}.{key}",
                    written,
                    component,
                    f"Cilium's chart {version}",
                    f"helm show values cilium/cilium --version {version}",
                    f"remove {key} from arda.cilium.values",
                ),
            )


def _unkept_digests(version: str, kept: bool) -> str:
    """Why no digest of a Cilium release's own images is kept."""
    if not kept:
        return f"it keeps no record of Cilium's chart {version}"
    return (
        f"the chart it reads is built from Cilium's Go module tree at v{version}, whose install/kubernetes/Makefile.digests "
        "leaves them empty; the chart helm.cilium.io publishes may pin them, and cannot be fetched here"
    )


def _said(written: Any, image: str, ref: Reference, is_tag: bool, own: str) -> str:
    """The opening of a refusal: the value as written, and the release it names."""
    if ref.tag is None:
        return (
            f"{show(written)} makes the image {image}, which has no tag (a bare name is :latest, a digest names no release), "
            f"so it is not {own}, the tag of"
        )
    if is_tag:
        return f"{show(written)} is not {own}, the tag of"
    return f"{show(written)} makes the image {image}, tag {ref.tag}, not {own}, the tag of"


def _invalid(path: str, written: Any, how: str, remove: str) -> Problem:
    return Problem(
        path, f"{show(written)} is no image reference a container runtime can pull: {how}, and the pod would fail with InvalidImageName; {remove}"
    )


def _other(path: str, written: Any, image: str, ref: Reference, component: str, chart: str, pinned_tag: str, remove: str) -> Problem:
    return Problem(
        path,
        f"{show(written)} runs {component} at {ref.tag if ref.tag is not None else 'no tag (' + image + ')'}, not {pinned_tag}, "
        f"the tag {chart}'s chart pins for it from a release line of its own, which the chart's manifests are written for: "
        f"right for a security fix of that line, but the chart's pin follows each chart version and this tag stays at every "
        f"one; else {remove}",
    )


def _other_digest(
    path: str, written: Any, ref: Reference, component: str, chart: str, pinned_tag: str, pinned_digest: str | None, remove: str
) -> Problem:
    pinned = (
        f"not {pinned_digest}, the digest {chart}'s chart pins for its tag {pinned_tag}"
        if pinned_digest is not None
        else f"where {chart}'s chart pins it by its tag {pinned_tag} alone"
    )
    return Problem(
        path,
        f"{show(written)} runs {component} by the digest {ref.digest}, {pinned}: a container runtime pulls by the digest and "
        f"reads the tag as a label only, so {component} runs whichever build {ref.digest} is, which validate cannot tell: right "
        f"for a security fix of that line, but the chart's pin follows each chart version and this digest stays at every "
        f"one; else {remove}",
    )


def _unknown_other(path: str, written: Any, component: str, chart: str, how: str, remove: str) -> Problem:
    return Problem(
        path,
        f"{show(written)} pins the image of {component}, and validate keeps no record of the tag {chart} pins for it: check it "
        f"against the chart's own (`{how}`), since the chart's pin follows each chart version and this tag stays at every "
        f"one; or {remove}",
    )


def _argocd_name(path: str, block: Mapping[str, Any]) -> str:
    """The name the chart writes before `:<tag>` from an image's keys: redis-ha's exporter's text `image`
    (charts/redis-ha/templates/redis-ha-statefulset.yaml:538), its sysctl image's `<registry or docker.io>/<repository>`
    (charts/redis-ha/templates/_helpers.tpl:32-36), every other's `repository`."""
    if path == "redis-ha.exporter":
        return _text(block.get("image"))
    if path == "redis-ha.sysctlImage":
        return f"{_text(block.get('registry')) or 'docker.io'}/{_text(block.get('repository'))}"
    return _text(block.get("repository"))


def _argocd_mapping(path: str, given: Any, is_own: bool, app: str | None) -> str:
    """The mapping the chart reads an image from, for an image written as text: its name, and its tag where that
    validates (an own image's tag other than the chart's appVersion is refused)."""
    ref = reference(given) if isinstance(given, str) else None
    name = given.partition("@")[0] if isinstance(given, str) else ""
    if ref is not None and ref.tag is not None:
        name = name.rpartition(":")[0]
    tag = ref.tag if ref is not None and ref.valid and ref.tag is not None and (not is_own or ref.tag == app) else None
    keys = ARGOCD_KEYS.get(path, ("repository", "tag"))
    if path == "redis-ha.sysctlImage":
        registry, _, repository = name.rpartition("/")
        shown = {"registry": registry or "docker.io", "repository": repository}
    else:
        shown = {keys[0]: name or "<repository>"}
    if tag is not None:
        shown["tag"] = tag
    dropped = (
        f" ({ref.tag} is not {app}, the Argo CD the chart ships: to run it, set gitops.argocd.version to the chart that ships it)"
        if ref is not None and ref.tag is not None and tag is None and app is not None
        else ""
    )
    return "{" + ", ".join(f"{k}: {v}" for k, v in shown.items()) + "}" + dropped


def _argocd(gitops: GitOps) -> Iterator[Finding]:
    version = gitops.argocd.version
    kept = chart_images("argo-cd", version)
    values = gitops.argocd.values
    base = "iluvatar:gitops.argocd.values"
    default_repository = "quay.io/argoproj/argocd"
    if kept is not None:
        default_repository = _text(kept.images["global.image"].get("repository")) or default_repository
    for path in (*ARGOCD_OWN, *ARGOCD_OTHERS):
        given = _at(values, path)
        is_own = path in ARGOCD_OWN
        component = ARGOCD_OWN.get(path) or ARGOCD_OTHERS[path]
        keys = ARGOCD_KEYS.get(path, ("repository", "tag"))
        parent, _, last = path.rpartition(".")
        nulled = given is None and isinstance(_at(values, parent), Mapping) and last in _at(values, parent)
        if nulled or (given is not None and not isinstance(given, Mapping)):
            # Argo CD's chart has no values schema: its templates read `.Values.<path>.<key>`, and Helm fails on text or
            # null there wherever the chart renders the component (templates/argocd-server/deployment.yaml:72 for the
            # server: "can't evaluate field repository in type interface {}"), in the middle of `pulumi up`.
            fix = (
                f"remove {path} from gitops.argocd.values to keep the chart's own"
                if nulled
                else f"write {path}: {_argocd_mapping(path, given, is_own, kept.app_version if kept is not None else None)}"
            )
            yield Finding(
                True,
                Problem(
                    f"{base}.{path}",
                    f"{show(given)} is not a mapping, but Argo CD's chart reads {path}.{keys[0]} and {path}.tag from it for "
                    f"{component}, and Helm fails on it wherever the chart renders {component} (can't evaluate field … in "
                    f"type interface {{}}), in the middle of pulumi up, after both clusters are made; {fix}",
                ),
            )
            continue
        if not isinstance(given, Mapping):
            continue
        default = kept.images[path] if kept is not None else {}
        name_keys = [k for k in keys if k != "tag"]
        repository = _argocd_name(path, {**default, **{k: given[k] for k in name_keys if k in given}}) or (
            _text(_at(values, "global.image.repository")) or default_repository if is_own else ""
        )
        tag = _text(given.get("tag"))
        if path == "redis-ha.sysctlImage" and "tag" in given and not tag:
            tag = "latest"  # charts/redis-ha/templates/_helpers.tpl:34, `default "latest"`
        # The chart writes `<repository>:<tag>` (the templates above): a repository that carries a tag or a digest
        # makes no reference at all.
        if any(k in given for k in name_keys) and ("@" in repository or ":" in repository.rsplit("/", 1)[-1]):
            name_key = next(k for k in reversed(name_keys) if k in given)
            chart_tag = kept.app_version if kept is not None and is_own else _text(default.get("tag")) or "<tag>"
            image = f"{repository}:{tag or chart_tag}"
            fallback = (_text(_at(values, "global.image.repository")) if path != "global.image" else "") or default_repository
            runs = f"{fallback if is_own else _argocd_name(path, default)}:{tag or chart_tag}"
            yield Finding(
                True,
                _invalid(
                    f"{base}.{path}.{name_key}",
                    given[name_key],
                    f"Argo CD's chart appends :<tag> to it, so {component} gets {image}",
                    f"remove {path}.{name_key} from gitops.argocd.values (the chart then runs {runs}); for a mirror, write its "
                    f"{name_key} without the tag",
                ),
            )
            continue
        if not tag:
            continue
        ref = reference(f"{repository or 'image'}:{tag}")
        key = f"{path}.tag"
        remove = f"remove {key} from gitops.argocd.values"
        if not ref.valid:
            yield Finding(True, _invalid(f"{base}.{key}", given["tag"], f"Argo CD's chart writes the image of {component} as {ref.image}", remove))
        elif is_own and kept is not None and ref.tag != kept.app_version:
            app = kept.app_version
            yield Finding(
                True,
                Problem(
                    f"{base}.{key}",
                    f"{show(given['tag'])} is not {app}, the Argo CD that gitops.argocd.version's chart {version} ships (its "
                    f"appVersion): {component} would run a release the chart's manifests and CRDs and Iluvatar's values are not "
                    f"written for, while `iluvatar versions` and the summary say chart {version}; {remove} (the chart then runs "
                    f"{repository}:{app}); to run another Argo CD, set "
                    f"gitops.argocd.version to the chart that ships it; for a mirror, set only its repository, or give it the tag {app}",
                ),
            )
        elif is_own and kept is not None and ref.digest is not None:
            # The chart pulls Argo CD by its tag alone and no digest of the release is kept: the digest decides what
            # runs, whatever the tag says, and validate cannot tell its release.
            app = kept.app_version
            name = f"{repository}:{app}"
            yield Finding(
                False,
                Problem(
                    f"{base}.{key}",
                    f"{show(given['tag'])} makes {component} run {ref.image}: a container runtime pulls by the digest and reads "
                    f"the tag as a label only, so the digest decides the release, and validate cannot tell which release "
                    f"{ref.digest} is: it keeps no digest of Argo CD {app}, which chart {version} pulls by its tag alone; check "
                    f"it is {app}'s (`docker buildx imagetools inspect {name}`), or {remove} (the chart then runs {name})",
                ),
            )
        elif is_own and kept is None:
            yield Finding(
                False,
                Problem(
                    f"{base}.{key}",
                    f"{show(given['tag'])} pins {component} to an Argo CD release, and validate keeps no record of the one "
                    f"gitops.argocd.version's chart {version} ships: if it is not that chart's appVersion (`helm show chart "
                    f"argo/argo-cd --version {version}`), it runs a release the chart's manifests are not written for; remove {key} "
                    "from gitops.argocd.values to run the chart's own",
                ),
            )
        elif not is_own and kept is not None and ref.tag != _text(default.get("tag")):
            yield Finding(
                False, _other(f"{base}.{key}", given["tag"], ref.image, ref, component, f"Argo CD {version}", _text(default.get("tag")), remove)
            )
        elif not is_own and kept is not None and ref.digest is not None:
            yield Finding(
                False, _other_digest(f"{base}.{key}", given["tag"], ref, component, f"Argo CD {version}", _text(default.get("tag")), None, remove)
            )
        elif not is_own and kept is None:
            yield Finding(
                False,
                _unknown_other(
                    f"{base}.{key}",
                    given["tag"],
                    component,
                    f"Argo CD's chart {version}",
                    f"helm show values argo/argo-cd --version {version}",
                    remove,
                ),
            )


def findings(arda: Arda | None, gitops: GitOps | None) -> list[Finding]:
    out: list[Finding] = []
    if arda is not None:
        out += _cilium(arda)
    if gitops is not None:
        out += _argocd(gitops)
    return out


def check(arda: Arda | None, gitops: GitOps | None) -> list[Problem]:
    """An image of a chart's own components pinned to another release than the chart ships, or no image at all."""
    return [f.problem for f in findings(arda, gitops) if f.refused]


def doubts(arda: Arda | None, gitops: GitOps | None) -> list[Problem]:
    """An image of another project's the chart pins, at another tag; an Argo CD tag under a chart with no data kept."""
    return [f.problem for f in findings(arda, gitops) if not f.refused]
