"""`iluvatar recover`: what it reads from a killed run's state, and what it refuses; without a cluster.

The cluster side (real Helm installing behind the program's back, the records removed, the retried install adopting)
is tests/kube/test_stopped_release.py.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from iluvatar import cli, recover, render
from iluvatar.simulate import SecretValue
from tests.bmc_standin import self_signed
from tests.edit import HOMELAB, RK1
from tests.sims import simulated
from tests.state_export import killed_up

IN_FLIGHT = ["edge-certificates-cert-manager", "edge-certificates-trust-manager", "edge-gateways-envoy-gateway"]
ARDA = "urn:pulumi:rk1::iluvatar::iluvatar:arda:TalosCluster$pulumi:providers:kubernetes::arda-kubernetes"


def _run(tmp_path: Path, export: dict[str, Any], capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str, str]:
    state = tmp_path / "state.json"
    state.write_text(json.dumps(export))
    code = cli.main(["recover", "rk1", "--state", str(state), *flags])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_pending_creates_of_helm_releases_with_their_providers_kubeconfig() -> None:
    export = killed_up(simulated(RK1), IN_FLIGHT)
    found = recover.pending_creates(export["deployment"])
    assert [(p.resource_name, p.label, p.provider, p.timeout, p.context) for p in found] == [
        ("edge-certificates-cert-manager", "cert-manager/cert-manager", ARDA, 300, None),
        ("edge-certificates-trust-manager", "cert-manager/trust-manager", ARDA, 300, None),
        ("edge-gateways-envoy-gateway", "envoy-gateway-system/eg", ARDA, 300, None),
    ]
    # The provider's kubeconfig as the state holds it (the mock's placeholder: the real one is Talos's).
    assert {p.kubeconfig for p in found} == {"[secret]"}


def test_a_state_with_nothing_pending_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = killed_up(simulated(RK1), IN_FLIGHT)
    export["deployment"].pop("pending_operations")
    code, out, err = _run(tmp_path, export, capsys)
    assert (code, out) == (2, "")
    # No pending operation is also what a killed run that kept no checkpoints leaves (PULUMI_SKIP_CHECKPOINTS): the way out
    # for its install, should `pulumi up` meet it, in one line naming the release and its cluster's provider.
    assert err == f"error: rk1: the state holds no pending operation: nothing to recover (run `pulumi up`). {NO_CHECKPOINT}\n"


NO_CHECKPOINT = (
    "If `pulumi up` then stops with `cannot re-use a name that is still in use` on a Helm release (a killed run that kept no "
    "checkpoint installed it): `iluvatar recover rk1 --release NAMESPACE/NAME --provider PROVIDER`, with the `[helm release: "
    "NAMESPACE/NAME]` and `[provider: PROVIDER]` render/rk1/plan.txt gives for the resource `pulumi up` names, then `pulumi up`"
)


def test_the_no_checkpoint_line_run_as_printed_removes_the_one_install_on_its_own_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The homelab has argocd/argocd on both clusters (the same chart). A run that kept no checkpoint installed Arda's and was
    killed; the Ainur's is live, upgraded twice. The printed line, filled in from the homelab's plan.txt for
    gitops-arda-release, removes Arda's one record and touches nothing on the Ainur. Before, the line named no cluster: run
    against kubectl's current context, it removed the Ainur's records."""
    sim = simulated(HOMELAB)
    plan = render.plan_text(sim)
    entry = re.search(r"gitops-arda-release  \(kubernetes:helm\.sh/v3:Release\).*?(?=\n      \S)", plan, re.S)
    assert entry is not None
    flat = " ".join(entry.group(0).split())
    release = re.search(r"\[helm release: (\S+)\]", flat)
    provider = re.search(r"\[provider: (\S+)\]", flat)
    assert release is not None and provider is not None
    assert (release.group(1), provider.group(1)) == ("argocd/argocd", "gitops-arda-kubernetes")
    kubeconfigs = {
        name: {**sim.named()[name].inputs, "kubeconfig": SecretValue(name)} for name in ("gitops-arda-kubernetes", "gitops-ainur-kubernetes")
    }
    export = killed_up(sim, ["gitops-arda-release"], finished=["gitops-ainur-release"], inputs=kubeconfigs)
    export["deployment"]["pending_operations"] = []
    state = tmp_path / "state.json"
    state.write_text(json.dumps(export))
    code = cli.main(["recover", "homelab", "--state", str(state)])
    err = capsys.readouterr().err
    assert code == 2
    printed = re.search(r"`(iluvatar recover [^`]+)`", err)
    assert printed is not None
    line = printed.group(1).replace("NAMESPACE/NAME", release.group(1)).replace("PROVIDER", provider.group(1))

    def argocd(version: int, status: str) -> dict[str, Any]:
        secret: dict[str, Any] = json.loads(
            json.dumps(_record_secret(status, version, hooks=0, chart=("argo-cd", "10.8.0"))).replace("cert-manager", "argocd")
        )
        return secret

    clusters = {
        "gitops-arda-kubernetes": _Cluster([argocd(1, "deployed")]),
        "gitops-ainur-kubernetes": _Cluster([argocd(1, "superseded"), argocd(2, "superseded"), argocd(3, "deployed")]),
    }
    monkeypatch.setattr(recover, "Kube", lambda kubeconfig, context: clusters[kubeconfig])
    monkeypatch.setattr(recover, "orphans", lambda project: [])
    assert cli.main([*shlex.split(line)[1:], "--state", str(state)]) == 0
    out = capsys.readouterr().out
    assert (clusters["gitops-arda-kubernetes"].deleted, clusters["gitops-ainur-kubernetes"].deleted) == (["sh.helm.release.v1.argocd.v1"], [])
    assert out.splitlines()[:2] == [
        "homelab: Helm release argocd/argocd on gitops-arda-kubernetes, named by hand",
        "  gitops-arda-kubernetes: Helm release argocd/argocd: removed Helm's record sh.helm.release.v1.argocd.v1 (deployed, chart argo-cd "
        "10.8.0); its objects stay",
    ]
    # The other cluster's argocd/argocd is a release's history: named, it is refused, nothing removed.
    code = cli.main(["recover", "homelab", "--release", "argocd/argocd", "--provider", "gitops-ainur-kubernetes", "--state", str(state)])
    assert (code, clusters["gitops-ainur-kubernetes"].deleted) == (2, [])
    assert capsys.readouterr().err == (
        "error: homelab: the state tracks Helm release argocd/argocd on gitops-ainur-kubernetes as "
        f"{next(r['urn'] for r in export['deployment']['resources'] if r['urn'].endswith('::gitops-ainur-release'))}: its records are that "
        "resource's history; nothing removed\n"
    )


def test_pending_operations_without_a_helm_create_are_left_to_pulumi_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sim = simulated(RK1)
    plain = next(r.name for r in sim.registrations if r.type == "kubernetes:core/v1:Namespace")
    code, out, err = _run(tmp_path, killed_up(sim, [plain]), capsys)
    assert (code, out) == (2, "")
    assert err == (
        "error: rk1: the state's 1 pending operation hold no step on a Helm release: nothing to recover; `pulumi up` retries them by itself\n"
    )


def test_an_export_without_show_secrets_says_how_to_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(tmp_path, killed_up(simulated(RK1), IN_FLIGHT, show_secrets=False), capsys)
    assert (code, out) == (2, "")
    assert err == (
        f"error: {ARDA} inputs.kubeconfig is an encrypted secret in this export: export the state with "
        "`pulumi stack export --show-secrets` (or let `iluvatar recover STACK` run it, without --state)\n"
    )


def test_a_release_the_state_already_tracks_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same Helm release under another resource (renamed without an alias): its records are that resource's history."""
    sim = simulated(RK1)
    export = killed_up(sim, ["edge-certificates-trust-manager"], finished=["edge-certificates-cert-manager"])
    tracked = next(r for r in export["deployment"]["resources"] if r["urn"].endswith("::edge-certificates-cert-manager"))
    tracked["urn"] = tracked["urn"].replace("::edge-certificates-cert-manager", "::cert-manager-old")
    export["deployment"]["pending_operations"][0]["resource"]["inputs"]["name"] = "cert-manager"
    code, out, err = _run(tmp_path, export, capsys)
    assert (code, out) == (2, "")
    assert err.startswith(
        "error: urn:pulumi:rk1::iluvatar::iluvatar:edge:Certificates$kubernetes:helm.sh/v3:Release::edge-certificates-trust-manager: "
        "the state already tracks Helm release cert-manager/cert-manager on the same provider as "
        "urn:pulumi:rk1::iluvatar::iluvatar:edge:Certificates$kubernetes:helm.sh/v3:Release::cert-manager-old"
    )


def test_not_json_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.json"
    state.write_text("Enter your passphrase to unlock config/secrets\n")
    assert cli.main(["recover", "rk1", "--state", str(state)]) == 2
    assert capsys.readouterr().err == (
        f"error: {state} is not JSON (Expecting value, line 1): give the output of `pulumi stack export --show-secrets`\n"
    )


def test_a_pending_create_a_later_run_finished_is_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The engine keeps a killed run's pending creates in every later state (pulumi v3.259.0 pkg/backend/snapshot.go:757-766),
    so after the `up` that created the release, its pending create is still there: its records are now the state's own."""
    export = killed_up(simulated(RK1), ["edge-certificates-cert-manager"], finished=["edge-certificates-cert-manager"])
    code, out, err = _run(tmp_path, export, capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[:2] == [
        "rk1: 1 pending create of a Helm release",
        "  edge-certificates-cert-manager: Helm release cert-manager/cert-manager: the state holds it, created by a later run: nothing to remove",
    ]


# --- the wait's bound, and a record an install left pending when it died --------------------------------------------

WRITTEN = datetime.datetime(2026, 11, 26, 14, 2, 11, 403958, tzinfo=datetime.UTC)


def _record_secret(
    status: str,
    version: int = 1,
    hooks: int = 2,
    deployed: str = "2026-11-26T14:02:11.403958812Z",
    chart: tuple[str, str] = ("cert-manager", "v1.19.2"),
    deleted: str = "0001-01-01T00:00:00Z",
) -> dict[str, Any]:
    """A record as Helm's secrets driver writes it (pkg/storage/driver/secrets.go:212-236, util.go encodeRelease)."""
    release = {
        "name": "cert-manager",
        "version": version,
        "chart": {"metadata": {"name": chart[0], "version": chart[1]}},
        "info": {"status": status, "last_deployed": deployed, "deleted": deleted},
        "hooks": [{"name": f"hook-{i}", "events": ["post-install"]} for i in range(hooks)],
    }
    inner = base64.b64encode(gzip.compress(json.dumps(release).encode())).decode()
    return {
        "metadata": {
            "name": f"sh.helm.release.v1.cert-manager.v{version}",
            "uid": f"uid-{version}",
            "resourceVersion": "41",
            "labels": {"owner": "helm", "name": "cert-manager", "status": status, "version": str(version)},
        },
        "data": {"release": base64.b64encode(inner.encode()).decode()},
    }


def _pending(timeout: int = 300) -> recover.Pending:
    return recover.Pending(
        "urn:...::edge-certificates-cert-manager", "cert-manager", "cert-manager", timeout, ARDA, "[secret]", None, "cert-manager", "v1.19.2"
    )


def test_the_wait_ends_when_every_one_of_helms_waits_has() -> None:
    """1 timeout for the objects' readiness and 3 a hook (its previous run's delete, its run, its delete), plus a minute."""
    record = recover.Record.of(_record_secret("pending-install", hooks=2))
    assert (record.version, record.status, record.hooks, record.written) == (1, "pending-install", 2, WRITTEN)
    assert recover.deadline(_pending(300), record) == WRITTEN + datetime.timedelta(seconds=300 * 7 + 60)


class _Cluster:
    """What `recover` asks of the cluster, answered from a list; for the clock-driven path a real install cannot show
    without waiting out its timeouts (the real records, waits and deletes: tests/kube/test_stopped_release.py)."""

    def __init__(self, secrets: list[dict[str, Any]]) -> None:
        self.secrets = secrets
        self.deleted: list[str] = []

    def records(self, p: recover.Pending) -> list[recover.Record]:
        return sorted((recover.Record.of(s) for s in self.secrets if s["metadata"]["name"] not in self.deleted), key=lambda r: r.version)

    def delete(self, p: recover.Pending, record: recover.Record) -> bool:
        self.deleted.append(record.name)
        return True


def test_a_record_still_pending_past_the_installs_end_was_left_by_an_install_that_died() -> None:
    cluster = _Cluster([_record_secret("pending-install", hooks=0)])
    said: list[str] = []
    late = WRITTEN + datetime.timedelta(seconds=300 + 60)
    removed = recover.recover(_pending(), cluster, False, said.append, now=lambda: late)  # type: ignore[arg-type]
    assert removed == cluster.deleted == ["sh.helm.release.v1.cert-manager.v1"]
    assert said == [
        "  edge-certificates-cert-manager: Helm release cert-manager/cert-manager: record v1 is still pending-install past 2026-11-26 14:08:11 UTC: its install died",
        "  edge-certificates-cert-manager: Helm release cert-manager/cert-manager: removed Helm's record sh.helm.release.v1.cert-manager.v1 "
        "(pending-install, chart cert-manager v1.19.2); its objects stay",
    ]


def test_a_dry_run_says_what_it_would_wait_for_and_removes_nothing() -> None:
    cluster = _Cluster([_record_secret("pending-install", hooks=0)])
    said: list[str] = []
    assert recover.recover(_pending(), cluster, True, said.append, now=lambda: WRITTEN) == []  # type: ignore[arg-type]
    assert cluster.deleted == []
    assert said == [
        "  edge-certificates-cert-manager: Helm release cert-manager/cert-manager: record v1 is pending-install: "
        "would wait until 2026-11-26 14:08:11 UTC for it to leave pending-install"
    ]


@pytest.mark.parametrize("deployed", ["2026-11-26T15:02:11.403958812+01:00", "2026-11-26T09:02:11.403958-05:00"])
def test_a_record_helm_stamped_in_local_time_is_read_in_utc(deployed: str) -> None:
    """Helm stamps `info.last_deployed` with `time.Now()` in the machine's zone (helm v3.20.2 pkg/time/time.go:39-48),
    which Go writes with its offset: the same instant, and the wait printed in UTC."""
    record = recover.Record.of(_record_secret("pending-install", hooks=0, deployed=deployed))
    assert record.written == WRITTEN
    cluster = _Cluster([_record_secret("pending-install", hooks=0, deployed=deployed)])
    said: list[str] = []
    assert recover.recover(_pending(), cluster, True, said.append, now=lambda: WRITTEN) == []  # type: ignore[arg-type]
    assert said == [
        "  edge-certificates-cert-manager: Helm release cert-manager/cert-manager: record v1 is pending-install: "
        "would wait until 2026-11-26 14:08:11 UTC for it to leave pending-install"
    ]


def test_a_time_with_no_zone_is_no_time() -> None:
    """Go's RFC 3339 always carries a zone; a time without one cannot be compared with the clock: no time known."""
    assert recover.Record.of(_record_secret("pending-install", deployed="2026-11-26T14:02:11.403958812")).written is None


# --- the homelab stack's two Argo CDs: argocd/argocd once on each cluster -----------------------------------------------


def _no_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cluster answers with no record of the release (the cluster side: tests/kube/test_stopped_release.py)."""
    monkeypatch.setattr(recover, "Kube", lambda *args: _Cluster([]))


@pytest.mark.parametrize(("pending", "done"), [("gitops-arda-release", "gitops-ainur-release"), ("gitops-ainur-release", "gitops-arda-release")])
def test_the_same_release_name_on_the_other_cluster_is_another_release(
    pending: str, done: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state tracks argocd/argocd on one cluster and holds a pending create of argocd/argocd on the other: not a
    rename, the other cluster's own install (components/gitops.py names both `argocd` in `argocd`)."""
    _no_records(monkeypatch)
    export = killed_up(simulated(HOMELAB), [pending], finished=[done])
    state = tmp_path / "state.json"
    state.write_text(json.dumps(export))
    code = cli.main(["recover", "homelab", "--state", str(state)])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out.splitlines()[:2] == [
        "homelab: 1 pending create of a Helm release",
        f"  {pending}: Helm release argocd/argocd: " + recover.NO_RECORD,
    ]


# --- whose records they are ------------------------------------------------------------------------------------------

REFUSED = (
    "urn:...::edge-certificates-cert-manager: Helm's records of cert-manager/cert-manager are not the one install this pending create "
    "makes (a single v1 of chart cert-manager v1.19.2): found {}; nothing removed. If another owner installed it, this stack cannot "
    "install that name: rename one of them. If the pending create is stale (its release since uninstalled or replaced), "
    "`pulumi refresh --clear-pending-creates` drops it"
)


def test_a_history_of_several_revisions_is_not_the_killed_installs_and_is_kept() -> None:
    """A release installed and upgraded by hand (or by the stack long ago) under a stale pending create: its history stays."""
    cluster = _Cluster([_record_secret("superseded", 1), _record_secret("superseded", 2), _record_secret("deployed", 3)])
    with pytest.raises(recover.RecoverError) as e:
        recover.recover(_pending(), cluster, False, [].append, now=lambda: WRITTEN)  # type: ignore[arg-type]
    assert cluster.deleted == []
    assert str(e.value) == REFUSED.format(
        ", ".join(
            f"sh.helm.release.v1.cert-manager.v{v} ({s}, chart cert-manager v1.19.2)"
            for v, s in ((1, "superseded"), (2, "superseded"), (3, "deployed"))
        )
    )


@pytest.mark.parametrize("chart", [("cert-manager", "v1.18.0"), ("volsync", "v1.19.2")])
def test_one_install_of_another_chart_or_version_is_not_the_killed_installs_and_is_kept(chart: tuple[str, str]) -> None:
    cluster = _Cluster([_record_secret("deployed", 1, chart=chart)])
    with pytest.raises(recover.RecoverError) as e:
        recover.recover(_pending(), cluster, True, [].append, now=lambda: WRITTEN)  # type: ignore[arg-type]
    assert cluster.deleted == []
    assert str(e.value) == REFUSED.format(f"sh.helm.release.v1.cert-manager.v1 (deployed, chart {chart[0]} {chart[1]})")


def test_the_one_install_of_the_pending_creates_chart_is_removed() -> None:
    cluster = _Cluster([_record_secret("deployed", 1)])
    said: list[str] = []
    assert recover.recover(_pending(), cluster, False, said.append, now=lambda: WRITTEN) == ["sh.helm.release.v1.cert-manager.v1"]  # type: ignore[arg-type]
    assert cluster.deleted == ["sh.helm.release.v1.cert-manager.v1"]


# --- a live run is not a killed one -----------------------------------------------------------------------------------


def test_a_state_that_moves_while_it_waits_is_a_live_run_and_nothing_is_removed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another terminal's `pulumi up` holds the lock and is installing cert-manager; its install ends, it records the
    release and ends the pending create. Its record must stay: the command exports the state again before deleting."""
    killed = killed_up(simulated(RK1), ["edge-certificates-cert-manager"])
    live = json.loads(json.dumps(killed))
    live["deployment"]["manifest"]["time"] = "2026-11-26T14:09:40.118220911Z"
    live["deployment"]["pending_operations"] = []
    exports = iter([json.dumps(killed), json.dumps(live)])
    monkeypatch.setattr(recover, "export", lambda stack, cwd: next(exports))
    cluster = _Cluster([_record_secret("deployed", 1)])
    monkeypatch.setattr(recover, "Kube", lambda *args: cluster)
    assert cli.main(["recover", "rk1"]) == 2
    out, err = capsys.readouterr()
    assert cluster.deleted == []
    assert out == "rk1: 1 pending create of a Helm release\n"
    assert err == (
        "error: rk1: the state changed while this command ran (written at 2026-11-26T14:09:40.118220911Z): a `pulumi` run of this "
        "stack is live, not killed; nothing more removed. Check the process the lock message names (`ps -p PID` on its host), let "
        "it finish, and run this command only once none runs\n"
    )


def test_a_state_that_stays_as_the_killed_run_left_it_is_recovered(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    killed = json.dumps(killed_up(simulated(RK1), ["edge-certificates-cert-manager"]))
    monkeypatch.setattr(recover, "export", lambda stack, cwd: killed)
    cluster = _Cluster([_record_secret("deployed", 1)])
    monkeypatch.setattr(recover, "Kube", lambda *args: cluster)
    assert cli.main(["recover", "rk1"]) == 0
    assert cluster.deleted == ["sh.helm.release.v1.cert-manager.v1"]


# --- the provider's kubeconfig holds credentials: no error quotes it ---------------------------------------------------

TOKEN = "eyJhbGciOiJSUzI1NiJ9." + "s3cr3t" * 1000  # a ServiceAccount token's size: the one-line kubeconfig is over 4 KiB


def _kubeconfig(**cluster: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "arda",
        "contexts": [{"name": "arda", "context": {"cluster": "arda", "user": "admin"}}],
        "clusters": [{"name": "arda", "cluster": {"server": "https://10.10.0.10:6443", **cluster}}],
        "users": [{"name": "admin", "user": {"token": TOKEN}}],
    }


PEM = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # An object input, as the state holds it once turned to one-line JSON: parsed, never tried as a file name
        # (ENAMETOOLONG's message carried the whole text).
        (
            json.dumps(_kubeconfig(**{"certificate-authority-data": "not base64!"})),
            "the provider's kubeconfig holds certificate or key data that is not base64",
        ),
        (
            json.dumps(_kubeconfig(**{"certificate-authority-data": base64.b64encode(PEM).decode()})),
            "the provider's kubeconfig's certificate authority, client certificate or key cannot be loaded",
        ),
        # Broken YAML: its parser's message quotes the line.
        (
            f"users:\n- name: admin\n  user: {{token: {TOKEN}\n",
            "the provider's kubeconfig is neither a kubeconfig nor the path of a file holding one",
        ),
    ],
)
def test_an_unusable_kubeconfig_is_one_fixed_line_that_quotes_nothing_of_it(text: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(recover.RecoverError) as e:
        recover.Kube(text, None)
    assert str(e.value) == message


_WRITES: list[str] | None = None  # while set, every file the process opens to write (the audit hook below)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _WRITES is not None and event == "open" and isinstance(args[1], str) and set(args[1]) & set("wax+"):
        _WRITES.append(str(args[0]))


sys.addaudithook(_audit)


def test_the_client_key_reaches_the_tls_library_without_a_file(tmp_path: Path) -> None:
    """The cluster-admin key is handed over in memory: no file is opened to write while the connection is set up
    (a file would outlive a SIGHUP or a SIGKILL during the wait)."""
    global _WRITES
    cert, key = self_signed(tmp_path)
    authority = base64.b64encode(cert.read_bytes()).decode()
    config = _kubeconfig(**{"certificate-authority-data": authority})
    config["users"] = [
        {
            "name": "admin",
            "user": {
                "client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
                "client-key-data": base64.b64encode(key.read_bytes()).decode(),
            },
        }
    ]
    _WRITES = []
    try:
        kube = recover.Kube(yaml.safe_dump(config), None)
    finally:
        written, _WRITES = _WRITES, None
    assert written == []
    assert (kube.host, kube.port, kube.token) == ("10.10.0.10", 6443, None)
    assert [c["subject"] for c in kube.context.get_ca_certs()] == [((("commonName", "turingpi"),),)]


def test_a_stale_pending_create_whose_provider_is_gone_is_skipped_with_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Arda rebuilt since an old kill: its provider was replaced (another id), and the old pending create names the old
    one, which no state holds. It is skipped with a line; the others are recovered."""
    _no_records(monkeypatch)
    export = killed_up(simulated(RK1), ["edge-certificates-cert-manager", "edge-certificates-trust-manager"])
    stale = export["deployment"]["pending_operations"][0]["resource"]
    stale["provider"] = f"{ARDA}::arda-kubernetes-before-the-rebuild"
    code, out, err = _run(tmp_path, export, capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[:3] == [
        "rk1: 2 pending creates of a Helm release",
        "  edge-certificates-cert-manager: Helm release cert-manager/cert-manager: skipped, its provider "
        f"{ARDA}::arda-kubernetes-before-the-rebuild is no longer in the state (a stale pending create, from before its cluster "
        "was rebuilt or its provider replaced; `pulumi refresh --clear-pending-creates` drops it)",
        "  edge-certificates-trust-manager: Helm release cert-manager/trust-manager: " + recover.NO_RECORD,
    ]


# --- what the killed run left of a release that is not a create's one record ------------------------------------------


def test_an_uninstall_under_way_is_waited_for_as_a_pending_record_is() -> None:
    """`uninstalling` is an operation under way (helm v3.20.2 pkg/release/status.go:34-35), though IsPending leaves it out: an
    `atomic` install's own rollback of its failure (pkg/action/install.go:506-520) deletes its objects when it ends. Before,
    its record was removed at once. Its bound runs from when the uninstall began (`info.deleted`), not from the install."""
    cluster = _Cluster([_record_secret("uninstalling", hooks=0, deployed="2026-11-26T13:02:11Z", deleted="2026-11-26T14:02:11.403958812Z")])
    said: list[str] = []
    assert recover.recover(_pending(), cluster, True, said.append, now=lambda: WRITTEN) == []  # type: ignore[arg-type]
    assert cluster.deleted == []
    assert said == [
        "  edge-certificates-cert-manager: Helm release cert-manager/cert-manager: record v1 is uninstalling: "
        "would wait until 2026-11-26 14:08:11 UTC for it to leave uninstalling"
    ]


def _proc(tmp_path: Path, project: Path) -> Path:
    """A /proc as this module reads it (proc(5)): a live `pulumi up` of this project with its provider (pid 101), a provider
    of this project a killed run left to init (201), one another project's killed run left (301), init itself."""
    proc = tmp_path / "proc"
    tick = os.sysconf("SC_CLK_TCK")
    proc.mkdir()
    (proc / "stat").write_text(f"cpu  1 2 3 4\nbtime {int(WRITTEN.timestamp()) - 5}\nprocesses 9\n")
    for pid, ppid, exe, cwd in (
        (1, 0, "/usr/lib/systemd/systemd", "/"),
        (100, 1, "/home/me/.pulumi/bin/pulumi", str(project)),
        (101, 100, "/home/me/.pulumi/plugins/resource-kubernetes-v4.32.0/pulumi-resource-kubernetes", str(project)),
        (201, 1, "/home/me/.pulumi/plugins/resource-kubernetes-v4.32.0/pulumi-resource-kubernetes (deleted)", str(project)),
        (301, 1, "/home/me/.pulumi/plugins/resource-kubernetes-v4.32.0/pulumi-resource-kubernetes", "/home/me/other"),
    ):
        entry = proc / str(pid)
        entry.mkdir()
        (entry / "exe").symlink_to(exe)
        (entry / "cwd").symlink_to(cwd)
        # `pid (comm) state ppid` then 15 fields to field 22, the start in clock ticks after boot.
        (entry / "stat").write_text(f"{pid} (pulumi-resource) S {ppid} " + "0 " * 17 + f"{5 * tick} 0 0\n")
    return proc


def test_only_an_orphaned_kubernetes_provider_of_this_project_counts(tmp_path: Path) -> None:
    """A provider whose parent is a live `pulumi` is a live run's (another stack's, or this one's), and one started in another
    project is another's: neither is the killed run's, neither is to be ended. Before, every pulumi-resource-kubernetes on the
    machine was counted, and the command said to `kill` them all."""
    project = tmp_path / "iluvatar"
    found = recover.kubernetes_providers(_proc(tmp_path, project))
    started = datetime.datetime(2026, 11, 26, 14, 2, 11, tzinfo=datetime.UTC)
    assert [(f.pid, f.parent, f.parent_program, f.cwd, f.started, f.orphaned) for f in found] == [
        (101, 100, "pulumi", str(project), started, False),
        (201, 1, "systemd", str(project), started, True),
        (301, 1, "systemd", "/home/me/other", started, True),
    ]
    assert [f.pid for f in recover.orphans(project, tmp_path / "proc")] == [201]


ORPHAN = "pid 201, started 2026-11-26 14:02:11 UTC, its parent pid 1 (systemd), not a `pulumi`"


def test_no_record_while_the_killed_runs_kubernetes_provider_runs_is_not_yet_and_says_what_to_do(tmp_path: Path) -> None:
    """The provider writes the record only after fetching the chart and installing its CRDs (install.go:185,265,402): no
    record while the killed run's pulumi-resource-kubernetes runs may be one to come. The live run's provider (pid 101) is
    not named."""
    project = tmp_path / "iluvatar"
    proc = _proc(tmp_path, project)
    line = (
        "cert-manager/cert-manager: no record in the cluster yet, and a pulumi-resource-kubernetes the killed run left runs in this "
        f"project on this host ({ORPHAN}): a killed run's install writes its record only after fetching the chart and installing its "
        "CRDs, so one may come yet. Once `iluvatar recover` has nothing else to wait for, end it (`kill 201`: nothing it runs is "
        "left once no Helm record is pending) and run this command again"
    )
    checked: list[str] = []
    here = lambda: recover.orphans(project, proc)  # noqa: E731
    with pytest.raises(recover.NotYetError) as e:
        recover.recover(_pending(), _Cluster([]), False, [].append, unchanged=lambda: checked.append("state"), providers=here)  # type: ignore[arg-type]
    assert (str(e.value), checked) == (line, ["state"])
    said: list[str] = []
    assert recover.recover(_pending(), _Cluster([]), True, said.append, providers=lambda: recover.orphans(project, proc)) == []  # type: ignore[arg-type]
    assert said == [f"  edge-certificates-cert-manager: Helm release {line}"]
    # With no orphan left (only the live run's provider, another project's), nothing more is written: nothing to remove.
    said.clear()
    elsewhere = tmp_path / "elsewhere"
    assert recover.recover(_pending(), _Cluster([]), False, said.append, providers=lambda: recover.orphans(elsewhere, proc)) == []  # type: ignore[arg-type]
    assert said == ["  edge-certificates-cert-manager: Helm release cert-manager/cert-manager: " + recover.NO_RECORD]


def test_a_live_run_is_never_told_to_end_its_provider(tmp_path: Path) -> None:
    """The state exported again before the advice: a live run of this stack moved it, and the command stops without naming a
    process to end."""
    project = tmp_path / "iluvatar"
    proc = _proc(tmp_path, project)

    def moved() -> None:
        raise recover.RecoverError("rk1: the state changed while this command ran")

    with pytest.raises(recover.RecoverError) as e:
        recover.recover(_pending(), _Cluster([]), False, [].append, unchanged=moved, providers=lambda: recover.orphans(project, proc))  # type: ignore[arg-type]
    assert (type(e.value), str(e.value)) == (recover.RecoverError, "rk1: the state changed while this command ran")


def test_an_upgrade_not_yet_seen_under_way_while_the_killed_runs_provider_runs_is_not_yet(tmp_path: Path) -> None:
    """An upgrade writes `pending-upgrade` only after its chart is fetched and rendered (helm v3.20.2 pkg/action/upgrade.go:276,376):
    a `deployed` latest record while the killed run's provider runs says nothing of its end. Before, it said the upgrade ended."""
    project = tmp_path / "iluvatar"
    proc = _proc(tmp_path, project)
    cluster = _Cluster([_record_secret("deployed", 1, hooks=0)])
    p = recover.Pending(URN, "cert-manager", "cert-manager", 300, ARDA, "[secret]", None, "cert-manager", op="updating")
    with pytest.raises(recover.NotYetError) as e:
        recover.settle(p, cluster, False, [].append, providers=lambda: recover.orphans(project, proc))  # type: ignore[arg-type]
    assert str(e.value) == (
        f"cert-manager/cert-manager: its latest record v1 is deployed, and a pulumi-resource-kubernetes the killed run left runs in this "
        f"project on this host ({ORPHAN}): the killed run's upgrade writes Helm's record only after its first steps (an upgrade fetches "
        "and renders its chart, an uninstall runs its pre-delete hooks), so it may be under way yet. Once `iluvatar recover` has "
        "nothing else to wait for, end it (`kill 201`) and run this command again"
    )
    assert cluster.deleted == []


def _updating(status: str, now: datetime.datetime, dry_run: bool = False) -> tuple[list[str], list[str]]:
    cluster = _Cluster([_record_secret("deployed", 1, hooks=0), _record_secret(status, 2, hooks=0)])
    said: list[str] = []
    p = recover.Pending(
        "urn:...::edge-certificates-cert-manager", "cert-manager", "cert-manager", 300, ARDA, "[secret]", None, "cert-manager", op="updating"
    )
    recover.settle(p, cluster, dry_run, said.append, now=lambda: now, providers=lambda: [])  # type: ignore[arg-type]
    return said, cluster.deleted


def test_a_pending_upgrade_is_waited_for_and_nothing_is_removed() -> None:
    """An orphaned `helm upgrade` still runs: a retried upgrade would stop with `another operation (install/upgrade/rollback) is
    in progress` (helm v3.20.2 pkg/action/action.go:63). Before, the command said `pulumi up` retries it by itself."""
    assert _updating("pending-upgrade", WRITTEN, dry_run=True) == (
        [
            "  edge-certificates-cert-manager: Helm release cert-manager/cert-manager: record v2 is pending-upgrade: "
            "would wait until 2026-11-26 14:08:11 UTC for it to end"
        ],
        [],
    )
    late = WRITTEN + datetime.timedelta(seconds=300 + 60)
    assert _updating("pending-upgrade", late) == (
        [
            "  edge-certificates-cert-manager: Helm release cert-manager/cert-manager: record v2 is still pending-upgrade past 2026-11-26 14:08:11 UTC: "
            "the killed run's step on it died; remove that one record (docs/bring-up.md, step 4), then `pulumi up`"
        ],
        [],
    )
    assert _updating("deployed", WRITTEN) == (
        [
            "  edge-certificates-cert-manager: Helm release cert-manager/cert-manager: the killed run's upgrade ended (its latest record "
            "v2 is deployed); `pulumi up` retries it"
        ],
        [],
    )


MONTH_AGO = "2026-10-27T09:41:52.118220911Z"  # the release's last deploy, which an uninstall leaves as it is
URN = "urn:pulumi:rk1::iluvatar::iluvatar:edge:Certificates$kubernetes:helm.sh/v3:Release::edge-certificates-cert-manager"
UNINSTALLING = _record_secret("uninstalling", 2, hooks=0, deployed=MONTH_AGO, deleted="2026-11-26T14:02:11.403958812Z")
GONE = (
    "  edge-certificates-cert-manager: Helm release cert-manager/cert-manager: the killed run's uninstall ended and removed every record "
    "of it. `pulumi up` would run the delete again and fail (`uninstall: Release not loaded: cert-manager: release: not found`): first "
    f"`pulumi refresh --stack rk1 --target '{URN}' --skip-pending-creates` (it finds no release and drops the resource from the state), "
    "then `pulumi up`"
)


class _Uninstalling(_Cluster):
    """The orphaned provider's uninstall: its records as the first read finds them; it ends (Helm purges every record,
    pulumi-kubernetes keeps no history) while the command waits."""

    def records(self, p: recover.Pending) -> list[recover.Record]:
        found = super().records(p)
        self.secrets = []
        return found


def _deleting(cluster: _Cluster, now: datetime.datetime, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    said: list[str] = []
    monkeypatch.setattr("iluvatar.recover.time.sleep", lambda seconds: None)  # the next read is the uninstall's end
    p = recover.Pending(URN, "cert-manager", "cert-manager", 300, ARDA, "[secret]", None, "cert-manager", op="deleting")
    recover.settle(p, cluster, False, said.append, now=lambda: now, providers=lambda: [])  # type: ignore[arg-type]
    assert cluster.deleted == []
    return said


def test_an_uninstall_is_bounded_from_when_it_began_and_its_end_leaves_a_delete_to_refresh_away(monkeypatch: pytest.MonkeyPatch) -> None:
    """Helm's uninstall stamps `info.deleted` and leaves `last_deployed` (helm v3.20.2 pkg/action/uninstall.go:103-105): a
    second-old uninstall of a release last deployed a month ago is waited for. Before, the bound ran from the last deploy,
    and the record was said to be left by a step that died, to be removed under the running uninstall. Once it ends with no
    record, the retried delete fails (`uninstall.Run` without IgnoreNotFound): the command says so, and how to drop it.
    Before, it said `pulumi up` retries it."""
    assert recover.Record.of(UNINSTALLING).deleted == WRITTEN
    cluster = _Uninstalling([_record_secret("superseded", 1, hooks=0, deployed=MONTH_AGO), UNINSTALLING])
    assert _deleting(cluster, WRITTEN + datetime.timedelta(seconds=1), monkeypatch) == [
        "  edge-certificates-cert-manager: Helm release cert-manager/cert-manager: record v2 is uninstalling: waiting until "
        "2026-11-26 14:08:11 UTC for the killed run's provider to finish it",
        GONE,
    ]


def test_an_uninstall_still_under_way_past_its_bound_is_left_for_pulumi_up_to_take_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A retried uninstall takes up a release left `uninstalling` (it stops only at `uninstalled`: uninstall.go:93-100): its
    record stays. Before, the command pointed at the pending-upgrade recipe (remove the record)."""
    late = WRITTEN + datetime.timedelta(seconds=360)
    assert _deleting(_Cluster([UNINSTALLING]), late, monkeypatch) == [
        "  edge-certificates-cert-manager: Helm release cert-manager/cert-manager: record v2 is still uninstalling past 2026-11-26 14:08:11 UTC: "
        "the killed run's uninstall on it died; `pulumi up` runs it again (Helm takes up a release left uninstalling)"
    ]


def test_a_state_with_a_pending_upgrade_of_a_release_is_recovered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    export = killed_up(simulated(RK1), ["edge-certificates-cert-manager"])
    export["deployment"]["pending_operations"][0]["type"] = "updating"
    monkeypatch.setattr(recover, "Kube", lambda *args: _Cluster([_record_secret("superseded", 1), _record_secret("deployed", 2)]))
    code, out, err = _run(tmp_path, export, capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[:2] == [
        "rk1: 1 pending upgrade or uninstall of a Helm release",
        "  edge-certificates-cert-manager: Helm release cert-manager/cert-manager: the killed run's upgrade ended (its latest record v2 "
        "is deployed); `pulumi up` retries it",
    ]


def test_a_release_whose_delete_has_run_is_not_tracked_and_one_waiting_for_it_is() -> None:
    """`pendingReplacement` is set only once the provider's delete succeeded (pulumi v3.259.0 pkg/resource/deploy/step.go:770-784):
    the release is gone, and a delete-before-replace of the same name killed in its create is the killed install's. `delete`
    marks the old half of a create-before-replace whose new half was created (step.go:467-472): its release is still
    installed until that delete runs, and stays the state's."""
    release = {"type": recover.RELEASE_TYPE, "urn": "urn:old", "id": "cert-manager/cert-manager", "provider": f"{ARDA}::p1"}
    assert recover.tracked({"resources": [release]}) == {(ARDA, "cert-manager/cert-manager"): "urn:old"}
    assert recover.tracked({"resources": [{**release, "pendingReplacement": True}]}) == {}
    assert recover.tracked({"resources": [{**release, "delete": True}]}) == {(ARDA, "cert-manager/cert-manager"): "urn:old"}


def test_a_stale_pending_create_of_a_release_replaced_create_first_leaves_its_live_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old kill during cert-manager's create, recovered, then created by the next `up`: its pending create stays in every
    later state (pkg/backend/snapshot.go:757-766). Then the release is renamed (a replace, create first: pulumi-kubernetes
    v4.32.0 helm_release.go:907,932): the new half is created as cert-manager-2, the old half, still installed, waits with
    `delete: true`, and the run is killed while it installs trust-manager. The live cert-manager's only record stays.
    Before, the old half was not tracked, and the stale pending create deleted that record."""
    export = killed_up(
        simulated(RK1), ["edge-certificates-cert-manager", "edge-certificates-trust-manager"], finished=["edge-certificates-cert-manager"]
    )
    deployment = export["deployment"]
    stale = deployment["pending_operations"][0]["resource"]
    old = next(r for r in deployment["resources"] if r["urn"] == stale["urn"])
    new = json.loads(json.dumps(old))
    new["id"] = "cert-manager/cert-manager-2"
    new["inputs"]["name"] = new["outputs"]["name"] = "cert-manager-2"
    old["delete"] = True
    deployment["resources"].append(new)
    chart, version = stale["inputs"]["chart"], stale["inputs"]["version"]
    live = _Cluster([_record_secret("deployed", 1, hooks=0, chart=(chart.rsplit("/", 1)[-1], version))])
    monkeypatch.setattr(recover, "Kube", lambda *args: live)
    monkeypatch.setattr(live, "records", lambda p: _Cluster.records(live, p) if p.release == "cert-manager" else [])
    code, out, err = _run(tmp_path, export, capsys)
    assert (code, err, live.deleted) == (0, "", [])
    assert out.splitlines()[:3] == [
        "rk1: 2 pending creates of a Helm release",
        "  edge-certificates-cert-manager: Helm release cert-manager/cert-manager: the state holds it, created by a later run: nothing to remove",
        "  edge-certificates-trust-manager: Helm release cert-manager/trust-manager: " + recover.NO_RECORD,
    ]


def test_only_secrets_of_helms_type_and_name_are_its_records() -> None:
    """Helm's records are Secrets of type helm.sh/release.v1 (pkg/storage/driver/secrets.go:243-254) named
    sh.helm.release.v1.<release>.v<N> (pkg/storage/storage.go:35,251-253): a Secret that only carries the labels is not one,
    and is never deleted. Before, the label selector alone chose them."""
    real = {**_record_secret("deployed", 1), "type": "helm.sh/release.v1"}
    opaque = {**_record_secret("deployed", 2), "type": "Opaque"}
    misnamed = {**_record_secret("deployed", 3), "type": "helm.sh/release.v1"}
    misnamed["metadata"] = {**misnamed["metadata"], "name": "cert-manager-backup"}
    kube = object.__new__(recover.Kube)
    asked: list[tuple[str, str]] = []

    def request(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        asked.append((method, path))
        return 200, {"items": [opaque, real, misnamed]}

    kube.request = request  # type: ignore[method-assign]
    assert [r.name for r in kube.records(_pending())] == ["sh.helm.release.v1.cert-manager.v1"]
    assert asked == [("GET", "/api/v1/namespaces/cert-manager/secrets?labelSelector=owner%3Dhelm%2Cname%3Dcert-manager")]


def test_an_upgrade_on_a_cluster_that_does_not_answer_leaves_the_other_clusters_releases_seen_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a power cut Arda answers late: its pending upgrade is not looked at, and the Ainur's pending create still is.
    Before, the first error stopped the command before any pending create was looked at."""
    export = killed_up(simulated(HOMELAB), ["gitops-ainur-release", "edge-certificates-cert-manager"], finished=["arda-kubernetes"])
    upgrade = next(o for o in export["deployment"]["pending_operations"] if o["resource"]["urn"].endswith("::edge-certificates-cert-manager"))
    upgrade["type"] = "updating"
    ainur = _Cluster([])

    class Kube:
        def __init__(self, kubeconfig: str, context: str | None) -> None:
            pass

        def records(self, p: recover.Pending) -> list[recover.Record]:
            if p.op != "creating":
                raise recover.RecoverError("cannot reach the cluster's API server at 10.0.40.10:6443: timed out")
            return ainur.records(p)

    monkeypatch.setattr(recover, "Kube", Kube)
    monkeypatch.setattr(recover, "orphans", lambda project: [])
    state = tmp_path / "state.json"
    state.write_text(json.dumps(export))
    code = cli.main(["recover", "homelab", "--state", str(state)])
    out, err = capsys.readouterr()
    assert code == 2
    assert out.splitlines() == [
        "homelab: 1 pending create, 1 pending upgrade or uninstall of a Helm release",
        "  edge-certificates-cert-manager: Helm release cert-manager/cert-manager: not looked at: cannot reach the cluster's API server at "
        "10.0.40.10:6443: timed out",
        "  gitops-ainur-release: Helm release argocd/argocd: " + recover.NO_RECORD,
    ]
    assert err == (
        "error: homelab: the killed run's upgrade or uninstall of cert-manager/cert-manager was not looked at, as said above: run this "
        "command again\n"
    )
