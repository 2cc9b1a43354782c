"""stacks.chart_images: the images the pinned charts ship are kept as the charts' own files say, every image their
templates read is in the rule's tables, and a chart value that pins one of the chart's own images to another release is
refused at its key (a mirror accepted), another project's image at another tag warned of."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks import chart_images, pins
from stacks.chart_images import reference
from stacks.model import Arda, GitOps
from tools import upstream


# The keys of an image's mapping each chart composes its reference from (stacks.chart_images).
def _keys(chart: str, path: str) -> tuple[str, ...]:
    return chart_images.CILIUM_KEYS if chart == "cilium" else chart_images.ARGOCD_KEYS.get(path, ("repository", "tag"))


def _at(values: Any, path: str) -> Any:
    for key in path.split("."):
        values = values[key]
    return values


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def extract(chart: str, folder: Path) -> dict[str, Any]:
    """What the kept file holds, from the chart itself: its appVersion, and each image's defaults (argo-cd's redis-ha
    subchart's as the parent's values override its own)."""
    values = yaml.safe_load((folder / "values.yaml").read_text())
    if chart == "argo-cd":
        values["redis-ha"] = _merged(yaml.safe_load((folder / "charts/redis-ha/values.yaml").read_text()), values["redis-ha"])
    tables = (chart_images.CILIUM_OWN, chart_images.CILIUM_OTHERS) if chart == "cilium" else (chart_images.ARGOCD_OWN, chart_images.ARGOCD_OTHERS)
    images = {path: {k: v for k, v in _at(values, path).items() if k in _keys(chart, path)} for table in tables for path in table}
    return {"appVersion": yaml.safe_load((folder / "Chart.yaml").read_text())["appVersion"], "images": dict(sorted(images.items()))}


def test_the_kept_images_are_the_pinned_charts_own() -> None:
    for chart, version in chart_images.KEPT:
        kept = json.loads((chart_images.DATA / f"{chart}-{version}.json").read_text())
        assert kept == extract(chart, upstream.chart(chart, version))
    assert {p.name for p in chart_images.DATA.iterdir()} == {f"{c}-{v}.json" for c, v in chart_images.KEPT}


# Where a chart's templates read an image: Cilium's through its helpers (`include "cilium.image" .Values.X`, the
# operator's own helper, SPIRE's text form), Argo CD's as `.Values.X.repository` (or global's through `default`),
# redis-ha's `.Values.sysctlImage.repository` in its helper, so read without regard to case.
_READ = re.compile(r"\.Values\.([\w.-]*?(?:image|initImage))\b(?:\.(?:repository|override|tag))?(?![\w])", re.IGNORECASE)


def _read(folder: Path) -> set[str]:
    found: set[str] = set()
    for template in (folder / "templates").rglob("*"):
        # templates/tests/ are `helm test` pods, which Pulumi's Release never runs.
        if template.is_file() and "tests" not in template.relative_to(folder / "templates").parts:
            for line in template.read_text().splitlines():
                if re.search(r"^\s*-?\s*image:|cilium\.image|image\.(override|repository|tag)", line, re.IGNORECASE):
                    found |= {m for m in _READ.findall(line)}
    return found


def test_every_image_the_pinned_charts_templates_read_is_in_the_tables() -> None:
    cilium = _read(upstream.chart("cilium", pins.CHARTS["cilium"]))
    assert cilium == {*chart_images.CILIUM_OWN, *chart_images.CILIUM_OTHERS}
    folder = upstream.chart("argo-cd", pins.CHARTS["argo-cd"])
    # The redis-ha subchart's, as the parent's values reach them; its exporter's text image is keyed by the mapping
    # that holds it beside its tag (chart_images.ARGOCD_KEYS).
    subchart = {f"redis-ha.{p}".removesuffix(".image") if p == "exporter.image" else f"redis-ha.{p}" for p in _read(folder / "charts/redis-ha")}
    assert _read(folder) | subchart == {*chart_images.ARGOCD_OWN, *chart_images.ARGOCD_OTHERS}


def test_the_charts_own_images_are_tagged_with_its_release() -> None:
    # What the rule holds a tag of Cilium's own images to at a chart version with no data kept: v<chart version>.
    cilium = chart_images.chart_images("cilium", pins.CHARTS["cilium"])
    assert cilium is not None and cilium.app_version == pins.CHARTS["cilium"]
    assert {cilium.images[p]["tag"] for p in chart_images.CILIUM_OWN} == {f"v{pins.CHARTS['cilium']}"}
    # Argo CD's leave the tag to the chart's appVersion, Iluvatar's pin of Argo CD.
    argocd = chart_images.chart_images("argo-cd", pins.CHARTS["argo-cd"])
    assert argocd is not None and argocd.app_version == pins.APPS["argocd"]
    assert {argocd.images[p]["tag"] for p in chart_images.ARGOCD_OWN} == {""}


DIGEST = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("image", "tag", "digest", "valid"),
    [
        ("quay.io/cilium/cilium:v1.17.6", "v1.17.6", None, True),
        ("localhost:5000/cilium/cilium", None, None, True),
        (f"localhost:5000/cilium/cilium:v1.18.4@{DIGEST}", "v1.18.4", DIGEST, True),
        (f"quay.io/cilium/cilium@{DIGEST}", None, DIGEST, True),
        ("quay.io/cilium/cilium:v1.17.6:v1.18.4", "v1.18.4", None, False),
        (":v1.18.4", "v1.18.4", None, False),
        (f"quay.io/argoproj/argocd@{DIGEST}:v3.5.2", None, f"{DIGEST}:v3.5.2", False),
    ],
)
def test_reference(image: str, tag: str | None, digest: str | None, valid: bool) -> None:
    ref = reference(image)
    assert (ref.tag, ref.digest, ref.valid) == (tag, digest, valid)


def _arda(values: dict[str, Any], version: str = "1.18.4") -> Arda:
    return Arda.model_validate(
        {
            "clusterName": "arda",
            "vip": "192.168.0.10",
            "talosVersion": "v1.14.1",
            "kubernetesVersion": "v1.35.1",
            "cilium": {"version": version, "values": values},
        }
    )


def _gitops(values: dict[str, Any], version: str = "10.8.0") -> GitOps:
    return GitOps.model_validate({"repoUrl": "https://git.example.com/lab.git", "argocd": {"version": version, "values": values}})


@pytest.mark.parametrize(
    ("values", "fixed"),
    [
        # The agent and the operator at 1.17.6 under the 1.18.4 chart; the fix the message gives.
        ({"image": {"tag": "v1.17.6", "useDigest": False}}, {"image": {"useDigest": False}}),
        ({"operator": {"image": {"tag": "v1.17.6", "useDigest": False}}}, {"operator": {"image": {"useDigest": False}}}),
        # A repository emptied of its tag beside `tag: ""` would be a bare name: the fix removes both.
        ({"hubble": {"relay": {"image": {"repository": "quay.io/cilium/hubble-relay:v1.17.6", "tag": ""}}}}, {}),
        ({"preflight": {"image": {"tag": "", "useDigest": True, "digest": DIGEST}}}, {"preflight": {"image": {"useDigest": True, "digest": DIGEST}}}),
    ],
)
def test_a_cilium_image_of_another_release_is_refused_and_its_fix_validates(values: dict[str, Any], fixed: dict[str, Any]) -> None:
    assert [f.refused for f in chart_images.findings(_arda(values), None)] == [True]
    # Validates: a refusal no more (the digest alone beside the chart's tag is warned of, below).
    assert chart_images.check(_arda(fixed), None) == []


def test_the_refusal_names_the_key_the_value_and_the_fix() -> None:
    [problem] = chart_images.check(_arda({"operator": {"image": {"tag": "v1.17.6"}}}), _gitops({}))
    assert str(problem) == (
        "iluvatar:arda.cilium.values.operator.image.tag: v1.17.6 is not v1.18.4, the tag of Cilium 1.18.4, which "
        "arda.cilium.version's chart ships (its appVersion): the operator would run a binary the chart's manifests and Iluvatar's "
        "values are not written for, round the rules on arda.cilium.version (1.18 or later for the cilium.io/v2 "
        "CiliumLoadBalancerIPPool, one minor at a time on upgrade), while `iluvatar versions` and the summary say 1.18.4; remove "
        "operator.image.tag from arda.cilium.values (the chart then runs quay.io/cilium/operator-generic:v1.18.4, by the release's digest where helm.cilium.io's chart pins one); to run another "
        "release, set arda.cilium.version to the chart that ships it; for a mirror, give its image the tag v1.18.4"
    )
    [problem] = chart_images.check(None, _gitops({"global": {"image": {"tag": "v2.8.4"}}}))
    assert str(problem) == (
        "iluvatar:gitops.argocd.values.global.image.tag: v2.8.4 is not v3.5.2, the Argo CD that gitops.argocd.version's chart "
        "10.8.0 ships (its appVersion): every Argo CD component that sets no image of its own would run a release the chart's "
        "manifests and CRDs and Iluvatar's values are not written for, while `iluvatar versions` and the summary say chart "
        "10.8.0; remove global.image.tag from gitops.argocd.values (the chart then runs quay.io/argoproj/argocd:v3.5.2); to run "
        "another Argo CD, set gitops.argocd.version to the chart that ships it; for a mirror, set only its repository, or give "
        "it the tag v3.5.2"
    )


@pytest.mark.parametrize(
    ("arda", "gitops"),
    [
        # A mirror: another repository, the chart's own tag (or none written), a digest beside the right tag.
        (
            {
                "image": {"repository": "registry.lan/cilium/cilium"},
                "operator": {"image": {"override": "registry.lan/cilium/operator-generic:v1.18.4"}},
            },
            {},
        ),
        ({}, {"global": {"image": {"repository": "registry.lan/argoproj/argocd"}}, "controller": {"image": {"tag": "v3.5.2"}}}),
        # Keys of an image that decide nothing of its release.
        ({"image": {"pullPolicy": "Always"}}, {"server": {"image": {"imagePullPolicy": "Always", "tag": ""}}}),
    ],
)
def test_a_mirror_of_the_charts_own_release_is_accepted(arda: dict[str, Any], gitops: dict[str, Any]) -> None:
    assert chart_images.findings(_arda(arda), _gitops(gitops)) == []


def test_another_projects_image_at_another_tag_is_warned_of_not_refused() -> None:
    found = chart_images.findings(_arda({"certgen": {"image": {"tag": "v0.2.5"}}}), _gitops({"redis": {"image": {"tag": "8.6.5-alpine"}}}))
    assert [(f.refused, f.problem.path) for f in found] == [
        (False, "iluvatar:arda.cilium.values.certgen.image.tag"),
        (False, "iluvatar:gitops.argocd.values.redis.image.tag"),
    ]
    # At the chart's own tag, nothing.
    assert chart_images.findings(_arda({"certgen": {"image": {"tag": "v0.2.4"}}}), _gitops({"dex": {"image": {"tag": "v2.45.1"}}})) == []


def test_a_chart_version_with_no_data_kept() -> None:
    # Cilium's rule holds at any chart version: its own images are tagged v<chart version>.
    assert chart_images.findings(_arda({"image": {"tag": "v1.18.5"}}, "1.18.5"), None) == []
    assert [f.refused for f in chart_images.findings(_arda({"image": {"tag": "v1.18.4"}}, "1.18.5"), None)] == [True]
    # Argo CD's appVersion is not its chart's version: warned of.
    assert [f.refused for f in chart_images.findings(None, _gitops({"server": {"image": {"tag": "v3.5.3"}}}, "10.9.0"))] == [False]


@pytest.mark.parametrize(
    ("arda", "gitops", "path"),
    [
        ({"image": {"tag": f"v1.18.4@{DIGEST}"}}, {}, "arda.cilium.values.image.tag"),
        ({"image": {"override": f"quay.io/cilium/cilium:v1.18.4@{DIGEST}"}}, {}, "arda.cilium.values.image.override"),
        ({"image": {"repository": f"quay.io/cilium/cilium:v1.18.4@{DIGEST}", "tag": ""}}, {}, "arda.cilium.values.image.repository"),
        # The tag written beside the digest checks nothing: it does not silence the warning.
        ({"image": {"tag": "v1.18.4", "digest": DIGEST, "useDigest": True}}, {}, "arda.cilium.values.image.digest"),
        ({"image": {"digest": DIGEST, "useDigest": True}}, {}, "arda.cilium.values.image.digest"),
        # useDigest not written: the kept chart's is false, helm.cilium.io's may be true.
        ({"operator": {"image": {"genericDigest": DIGEST}}}, {}, "arda.cilium.values.operator.image.genericDigest"),
        ({}, {"global": {"image": {"tag": f"v3.5.2@{DIGEST}"}}}, "gitops.argocd.values.global.image.tag"),
        ({}, {"server": {"image": {"tag": f"v3.5.2@{DIGEST}"}}}, "gitops.argocd.values.server.image.tag"),
    ],
)
def test_every_digest_form_on_an_own_image_is_warned_of(arda: dict[str, Any], gitops: dict[str, Any], path: str) -> None:
    assert [(f.refused, f.problem.path) for f in chart_images.findings(_arda(arda), _gitops(gitops))] == [(False, f"iluvatar:{path}")]


def test_a_digest_on_an_own_image_names_what_validate_cannot_check() -> None:
    [found] = chart_images.findings(_arda({"image": {"tag": "v1.18.4", "digest": DIGEST, "useDigest": True}}), None)
    assert str(found.problem) == (
        f"iluvatar:arda.cilium.values.image.digest: {DIGEST} makes the agent run quay.io/cilium/cilium:v1.18.4@{DIGEST}: a "
        "container runtime pulls by the digest and reads the tag as a label only, so the digest decides the release, and "
        f"validate cannot tell which release {DIGEST} is: it keeps no digest of Cilium 1.18.4's own images (the chart it reads "
        "is built from Cilium's Go module tree at v1.18.4, whose install/kubernetes/Makefile.digests leaves them empty; the "
        "chart helm.cilium.io publishes may pin them, and cannot be fetched here); check it is v1.18.4's (`docker buildx "
        "imagetools inspect quay.io/cilium/cilium:v1.18.4`), or remove image.digest, image.useDigest from arda.cilium.values "
        "(the chart then runs quay.io/cilium/cilium:v1.18.4, by the release's digest where helm.cilium.io's chart pins one)"
    )
    # Its fix validates without a word.
    assert chart_images.findings(_arda({"image": {"tag": "v1.18.4"}}), None) == []
    # The operator's digest is its cloud's: another cloud's, which the chart does not read, says nothing.
    assert chart_images.findings(_arda({"operator": {"image": {"awsDigest": DIGEST}}}), None) == []
    on_aws = chart_images.findings(_arda({"operator": {"image": {"awsDigest": DIGEST}}, "eni": {"enabled": True}}), None)
    assert [(f.refused, f.problem.path) for f in on_aws] == [(False, "iluvatar:arda.cilium.values.operator.image.awsDigest")]


def test_where_the_kept_data_has_an_own_images_digest_that_one_is_accepted_and_another_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = chart_images.chart_images("cilium", pins.CHARTS["cilium"])
    assert real is not None
    ours = "sha256:" + "f" * 64
    images = {**real.images, "image": {**real.images["image"], "digest": ours, "useDigest": True}}
    monkeypatch.setattr(chart_images, "chart_images", lambda chart, version: chart_images.ChartImages(chart, version, real.app_version, images))
    assert chart_images.findings(_arda({"image": {"tag": f"v1.18.4@{ours}", "useDigest": False}}), None) == []
    assert chart_images.findings(_arda({"image": {"override": f"quay.io/cilium/cilium@{ours}"}}), None) == []
    [found] = chart_images.findings(_arda({"image": {"digest": DIGEST}}), None)
    assert found.refused
    assert str(found.problem) == (
        f"iluvatar:arda.cilium.values.image.digest: {DIGEST} makes the agent run quay.io/cilium/cilium:v1.18.4@{DIGEST}, whose "
        f"digest is not {ours}, the one Cilium 1.18.4's chart pins for v1.18.4: a container runtime pulls by the digest and "
        "reads the tag as a label only, so the agent would run another build under the chart's tag; remove image.digest from "
        f"arda.cilium.values (the chart then runs quay.io/cilium/cilium:v1.18.4@{ours})"
    )


def test_another_projects_image_pinned_by_digest_is_warned_of_as_its_tag_is() -> None:
    found = chart_images.findings(
        _arda({"envoy": {"image": {"digest": DIGEST}}, "certgen": {"image": {"tag": f"v0.2.4@{DIGEST}", "useDigest": False}}}),
        _gitops({"dex": {"image": {"tag": f"v2.45.1@{DIGEST}"}}}),
    )
    assert [(f.refused, f.problem.path) for f in found] == [
        (False, "iluvatar:arda.cilium.values.envoy.image.digest"),
        (False, "iluvatar:arda.cilium.values.certgen.image.tag"),
        (False, "iluvatar:gitops.argocd.values.dex.image.tag"),
    ]
    assert str(found[2].problem) == (
        f"iluvatar:gitops.argocd.values.dex.image.tag: v2.45.1@{DIGEST} runs Dex by the digest {DIGEST}, where Argo CD 10.8.0's "
        "chart pins it by its tag v2.45.1 alone: a container runtime pulls by the digest and reads the tag as a label only, so "
        f"Dex runs whichever build {DIGEST} is, which validate cannot tell: right for a security fix of that line, but the "
        "chart's pin follows each chart version and this digest stays at every one; else remove dex.image.tag from "
        "gitops.argocd.values"
    )
    # The chart's own digest, written out: nothing.
    envoy = "sha256:1deb6709afcb5523579bf1abbc3255adf9e354565a88c4a9162c8d9cb1d77ab5"
    assert chart_images.findings(_arda({"envoy": {"image": {"digest": envoy}}}), None) == []


def test_redis_has_exporter_and_sysctl_images_are_checked_as_its_redis_is() -> None:
    found = chart_images.findings(None, _gitops({"redis-ha": {"exporter": {"tag": "v0.1.0"}, "sysctlImage": {"tag": "1.0"}}}))
    assert [(f.refused, f.problem.path) for f in found] == [
        (False, "iluvatar:gitops.argocd.values.redis-ha.exporter.tag"),
        (False, "iluvatar:gitops.argocd.values.redis-ha.sysctlImage.tag"),
    ]
    [text] = chart_images.findings(None, _gitops({"redis-ha": {"exporter": {"image": "ghcr.io/oliver006/redis_exporter:v1.75.0"}}}))
    assert text.refused and text.problem.path == "iluvatar:gitops.argocd.values.redis-ha.exporter.image"
    assert chart_images.findings(None, _gitops({"redis-ha": {"sysctlImage": {"registry": "registry.lan:5000", "tag": "1.38.0"}}})) == []


def test_an_argocd_image_written_as_text_is_refused_with_the_mapping_the_chart_reads() -> None:
    [problem] = chart_images.check(None, _gitops({"server": {"image": "quay.io/argoproj/argocd:v2.9.0"}}))
    assert str(problem) == (
        "iluvatar:gitops.argocd.values.server.image: quay.io/argoproj/argocd:v2.9.0 is not a mapping, but Argo CD's chart reads "
        "server.image.repository and server.image.tag from it for the API server, and Helm fails on it wherever the chart "
        "renders the API server (can't evaluate field … in type interface {}), in the middle of pulumi up, after both "
        "clusters are made; write server.image: {repository: quay.io/argoproj/argocd} (v2.9.0 is not v3.5.2, the Argo CD the "
        "chart ships: to run it, set gitops.argocd.version to the chart that ships it)"
    )
    # The fix validates; a tag that is the chart's is kept in it.
    assert chart_images.check(None, _gitops({"server": {"image": {"repository": "quay.io/argoproj/argocd"}}})) == []
    [problem] = chart_images.check(None, _gitops({"dex": {"image": "registry.lan/dexidp/dex:v2.45.1"}}))
    assert problem.message.endswith("write dex.image: {repository: registry.lan/dexidp/dex, tag: v2.45.1}")
    assert chart_images.findings(None, _gitops({"dex": {"image": {"repository": "registry.lan/dexidp/dex", "tag": "v2.45.1"}}})) == []


def test_an_operator_mirror_named_by_its_full_image_name_is_refused() -> None:
    [problem] = chart_images.check(_arda({"operator": {"image": {"repository": "registry.lan/cilium/operator-generic"}}}), None)
    assert str(problem) == (
        "iluvatar:arda.cilium.values.operator.image.repository: registry.lan/cilium/operator-generic names the operator's image "
        "in full, but Cilium's chart appends the cloud to operator.image.repository itself "
        "(templates/cilium-operator/_helpers.tpl:35, `<repository>-<cloud><suffix>`), so the operator would pull "
        "registry.lan/cilium/operator-generic-generic:v1.18.4, no image Cilium builds, and go into ImagePullBackOff; write "
        "operator.image.repository: registry.lan/cilium/operator, the name without -generic"
    )
    assert chart_images.findings(_arda({"operator": {"image": {"repository": "registry.lan/cilium/operator"}}}), None) == []
    # The chart writes an override as it is: the full name is right there.
    assert chart_images.findings(_arda({"operator": {"image": {"override": "registry.lan/cilium/operator-generic:v1.18.4"}}}), None) == []


def test_a_tag_beside_the_charts_own_digest_is_said_to_be_a_label_only() -> None:
    [found] = chart_images.findings(_arda({"certgen": {"image": {"tag": "v0.2.5"}}}), None)
    assert not found.refused
    assert "still runs v0.2.4 under a tag that says v0.2.5" in found.problem.message
    [found] = chart_images.findings(_arda({"certgen": {"image": {"tag": "v0.2.5", "useDigest": False}}}), None)
    assert found.problem.message.startswith("v0.2.5 runs certgen at v0.2.5, not v0.2.4")


def test_a_tag_that_is_not_text_is_said_once_and_a_repository_set_to_null_is_no_reference() -> None:
    # Cilium's values schema refuses a tag that is not text (stacks.chart_values): this rule says nothing more of it,
    # but where no schema is kept it is the one to.
    assert chart_images.findings(_arda({"image": {"tag": 1.17}}), None) == []
    assert [f.refused for f in chart_images.findings(_arda({"image": {"tag": 1.17}}, "1.18.5"), None)] == [True]
    # null drops the chart's default (Helm's coalescing): the chart would write `:v1.18.4`.
    [problem] = chart_images.check(_arda({"image": {"repository": None}}), None)
    assert str(problem) == (
        "iluvatar:arda.cilium.values.image.repository: null is no image reference a container runtime can pull: Cilium's "
        "chart writes the image of the agent as :v1.18.4, and the pod would fail with InvalidImageName; remove image.repository "
        "from arda.cilium.values (the chart then runs quay.io/cilium/cilium:v1.18.4, by the release's digest where helm.cilium.io's chart pins one)"
    )
