"""Remote access under the program's mocks: the OAuth client's secret reaches what needs it as a Pulumi secret and never
a render, the router's enrolment key enters no resource; the order the engine must keep (the policy before the
routers, the router after Headscale, the router's step after the router); Headscale's state protected."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from iluvatar import simulate as sim_module
from iluvatar.render import render_files
from iluvatar.simulate import SecretValue, Simulation, simulate
from plans import remote_access as plan
from stacks import read_stack_file
from stacks.remote_access import SECRET
from tests.edit import write_stack
from tests.remote_stacks import HEADSCALE, TAILSCALE, remote_doc, remote_stack
from tests.sims import outputs_of
from tests.upgrader.test_program_stdin import calls, check
from tools.provider_inputs import problems

OAUTH = "CANARY-TAILSCALE-OAUTH-SECRET-5e2a"
OPERATOR_OAUTH = "CANARY-OPERATOR-OAUTH-SECRET-77b0"
KEY = "CANARY-HEADSCALE-KEY-c41d"


def _simulated(flavour: dict[str, Any], root: Path) -> Simulation:
    with pytest.MonkeyPatch.context() as mp:
        config_of = sim_module.pulumi_config

        def decrypted(sf: Any) -> tuple[dict[str, str], list[str]]:
            config, secret_keys = config_of(sf)
            return ({**config, f"iluvatar:{SECRET}": OAUTH} if flavour["flavour"] == "tailscale" else config), secret_keys

        mp.setattr(sim_module, "pulumi_config", decrypted)
        # What Tailscale's API answers for the operator's own OAuth client: its id and its secret (the key).
        mp.setitem(sim_module.RESOURCE_STATE, "tailscale:index/oauthClient:OauthClient", lambda a: {"id": "kOPERATOR1", "key": OPERATOR_OAUTH})
        # What the enrolment step prints: the key, as Headscale's CLI gives it (a trailing newline); the other steps as ever.
        others = sim_module.RESOURCE_STATE["command:remote:Command"]
        mp.setitem(
            sim_module.RESOURCE_STATE,
            "command:remote:Command",
            lambda a: {"stdout": f"{KEY}\n", "stderr": ""} if "preauthkeys create" in str(a.get("create")) else others(a),
        )
        return simulate(read_stack_file(write_stack(root, remote_doc(flavour))))


@pytest.fixture(scope="module")
def tailscale(tmp_path_factory: pytest.TempPathFactory) -> Simulation:
    return _simulated(TAILSCALE, tmp_path_factory.mktemp("tailscale"))


@pytest.fixture(scope="module")
def headscale(tmp_path_factory: pytest.TempPathFactory) -> Simulation:
    return _simulated(HEADSCALE, tmp_path_factory.mktemp("headscale"))


def test_the_stacks_oauth_client_stays_with_pulumi_and_the_operator_gets_its_own_narrow_one(tailscale: Simulation) -> None:
    named = tailscale.named()
    provider = named["remote-access-tailscale"].inputs["oauthClientSecret"]
    assert isinstance(provider, SecretValue) and provider.value == OAUTH
    assert "oauthClientSecret" in named["remote-access-tailscale"].additional_secret_outputs
    # The operator's client: only what the operator calls, tagged as its devices, made after the policy owns that tag.
    client = named["remote-access-operator-client"]
    assert client.inputs["scopes"] == ["auth_keys", "devices:core"] and client.inputs["tags"] == ["tag:k8s-operator"]
    assert named["remote-access-policy"].urn in client.dependencies
    data = named["remote-access-oauth"].inputs["stringData"]
    assert isinstance(data, SecretValue) and data.value == {"client_id": "kOPERATOR1", "client_secret": OPERATOR_OAUTH}
    # The stack's client, which may rewrite the policy, is nowhere on Arda.
    assert OAUTH not in str(data.value) and "kQ2wZp7CNTRL" not in str(data.value)


def test_a_new_operator_client_rolls_the_operators_pod(tailscale: Simulation) -> None:
    values = tailscale.named()["remote-access-operator"].inputs["values"]
    assert values["operatorConfig"]["podAnnotations"] == {"iluvatar.dev/oauth-client": "kOPERATOR1"}


def test_the_policy_goes_before_the_routers_and_replaces_the_whole_file(tailscale: Simulation) -> None:
    named = tailscale.named()
    policy = named["remote-access-policy"]
    assert policy.inputs["acl"] == plan.policy_text(remote_stack(TAILSCALE))
    assert policy.inputs["overwriteExistingContent"] is True
    assert policy.urn in named["remote-access-connector"].dependencies
    assert named["remote-access-operator"].urn in named["remote-access-connector"].dependencies
    assert {r.inputs["domain"]: r.inputs["nameservers"] for r in tailscale.registrations if r.type.endswith("DnsSplitNameservers")} == {
        "iluvatar.home.arpa": ["192.168.0.14"],
        "jellyfin.example.com": ["192.168.0.14"],
    }


def test_the_enrolment_key_never_enters_pulumi(headscale: Simulation) -> None:
    # The router's key is minted and written into its Secret on the Pi (plans.remote_access.router_script): no resource
    # of the program carries it, so it is in no state, output or log; the step prints only the router's node and routes.
    named = headscale.named()
    enroll = named["remote-access-enroll"]
    assert "router-authkey" not in " ".join(named) and "remote-access-ainur-secret-subnet-router-key" not in named
    kubectl = "sudo k3s kubectl --request-timeout=10s"
    cli = f"{kubectl} -n remote-access exec deploy/headscale -c headscale -- headscale"
    assert enroll.inputs["create"] == plan.router_script(remote_stack(HEADSCALE), cli, kubectl)
    assert 'printf %s "$key" | kc create secret generic subnet-router-key --from-file=TS_AUTHKEY=/dev/stdin' in enroll.inputs["create"]


def test_the_router_step_runs_after_the_router_and_is_its_wait(headscale: Simulation) -> None:
    # Whatever stopped an earlier `up` (a key expired unused, a state Secret lost, a step killed), the step is what the
    # next `up` retries, and it mints only for a router with no node: the router's Deployment is not awaited by Pulumi
    # (its first pod waits for the key the step writes), the step is its bounded wait.
    named = headscale.named()
    enroll, router = named["remote-access-enroll"], named["remote-access-ainur-deployment-subnet-router"]
    assert {router.urn, named["remote-access-ainur-deployment-headscale"].urn} <= set(enroll.dependencies)
    assert router.inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    # Its own bounds (Headscale's answer, the rollout, the approval: 300 s each) fit inside the engine's.
    assert enroll.custom_timeouts == {"create": "20m", "update": "20m"}


def test_a_change_of_members_runs_the_users_step_not_the_key(headscale: Simulation, tmp_path: Path) -> None:
    # pulumi-command runs `create` again on any change of it: only the users' step may change with `access`.
    carol = {**HEADSCALE, "access": [HEADSCALE["access"][0], {**HEADSCALE["access"][1], "members": ["bob@", "carol@"]}]}
    before = headscale.named()
    after = _simulated(carol, tmp_path).named()
    assert before["remote-access-enroll"].inputs["create"] == after["remote-access-enroll"].inputs["create"]
    assert before["remote-access-users"].inputs["create"] != after["remote-access-users"].inputs["create"]
    assert "carol" in after["remote-access-users"].inputs["create"]
    assert before["remote-access-ainur-deployment-headscale"].urn in after["remote-access-users"].dependencies


def test_the_router_rolls_after_headscale(headscale: Simulation) -> None:
    # A new route reaches Headscale's new policy, not the old one that refuses it for good (hscontrol/state/state.go:1656 at
    # v0.27.1 approves only on a change of routes; NewState does not re-approve at start).
    named = headscale.named()
    headscale_pod = named["remote-access-ainur-deployment-headscale"].urn
    for router in ("serviceaccount", "role", "rolebinding", "deployment"):
        assert headscale_pod in named[f"remote-access-ainur-{router}-subnet-router"].dependencies, router


def test_headscales_state_is_protected(headscale: Simulation) -> None:
    assert headscale.named()["remote-access-ainur-persistentvolumeclaim-headscale-state"].protect is True
    assert not headscale.named()["remote-access-ainur-deployment-headscale"].protect


@pytest.mark.parametrize("flavour", ["tailscale", "headscale"])
def test_no_secret_reaches_a_render(flavour: str, request: pytest.FixtureRequest) -> None:
    sim: Simulation = request.getfixturevalue(flavour)
    text = "\n".join(str(v) for v in render_files(sim).values())
    assert OAUTH not in text and KEY not in text


@pytest.mark.parametrize("flavour", ["tailscale", "headscale"])
def test_every_input_is_one_its_provider_sdk_declares(flavour: str, request: pytest.FixtureRequest) -> None:
    # pulumi-tailscale 0.29.2's classes, and pulumi-kubernetes' and pulumi-command's, name what their providers read.
    sim: Simulation = request.getfixturevalue(flavour)
    assert problems(sim) == []


_AGAIN: dict[str, bytes] = {}


def _again(root: Path, first: Simulation, probed: dict[str, str] | None) -> Simulation:
    """The headscale stack's next run on what `first` exported, the router's state Secret and Deployment probed as
    `probed` says; made once per process for equal outputs and answers, a copy each (the router-has-its-node run is two
    tests')."""
    key = json.dumps([outputs_of(first), probed], sort_keys=True)
    if key not in _AGAIN:
        _AGAIN[key] = pickle.dumps(_run_again(root, first, probed))
    again = pickle.loads(_AGAIN[key])  # noqa: S301 (this process's own bytes)
    assert isinstance(again, Simulation)
    return again


def _run_again(root: Path, first: Simulation, probed: dict[str, str] | None) -> Simulation:

    def answer(a: dict[str, Any]) -> dict[str, Any]:
        if " secret-key " in str(a.get("command")):
            assert probed is not None, "a first deployment asks nothing"
            return {**a, "stdout": json.dumps(probed) + "\n", "stderr": ""}
        others: dict[str, Any] = sim_module.INVOKES[sim_module.PROBE](a)
        return others

    return simulate(read_stack_file(write_stack(root, remote_doc(HEADSCALE))), previous=outputs_of(first), answers={sim_module.PROBE: answer})


def _probes(sim: Simulation) -> list[dict[str, Any]]:
    return [inputs for token, inputs in sim.invocations if token == sim_module.PROBE and " secret-key " in str(inputs.get("command"))]


@pytest.mark.parametrize(
    ("probed", "enrolment"),
    [
        ({"secret": "present", "deployment": "available"}, 1),
        ({"secret": "absent", "deployment": "unavailable"}, 2),
        ({"secret": "present", "deployment": "unavailable"}, 2),
        ({"secret": "unreachable", "deployment": "unreachable"}, 1),
    ],
    ids=["the-router-has-its-node", "its-state-secret-was-deleted", "headscale-forgot-its-node", "the-ainur-is-down"],
)
def test_a_router_without_its_node_at_preview_runs_its_step_again(
    headscale: Simulation, probed: dict[str, str], enrolment: int, tmp_path: Path
) -> None:
    # The first deployment asks nothing and counts 1; the next run asks the Ainur whether the router's state Secret still
    # names its node (containerboot's device_id) and its Deployment is available: without the node, or with a node
    # Headscale forgot or expired (containerboot keeps device_id, so only the pod's readiness shows it), the count goes
    # up, so the router's step (its script carries the count) runs again on a plain `pulumi up`; otherwise nothing changes.
    assert _probes(headscale) == [] and headscale.outputs["remoteAccess"]["routerEnrolment"] == 1
    again = _again(tmp_path, headscale, probed)
    (probe,) = _probes(again)
    assert probe["command"] == (
        ".venv/bin/iluvatar upgrader secret-key --namespace remote-access --secret subnet-router-state-7b6761d8 --key device_id"
        " --deployment subnet-router --deadline 3s"
    )
    assert again.outputs["remoteAccess"]["routerEnrolment"] == enrolment
    step, first = again.named()["remote-access-enroll"].inputs["create"], headscale.named()["remote-access-enroll"].inputs["create"]
    assert step.splitlines()[0] == (
        f"# The subnet router's enrolment {enrolment} (one more each time a preview found it without its node or not Ready);"
    )
    assert (step == first) is (enrolment == 1)
    assert step.splitlines()[1:] == first.splitlines()[1:]


def test_the_upgrader_reads_the_probe_as_the_program_sends_it(headscale: Simulation, tmp_path: Path) -> None:
    found = [
        c
        for c in calls("headscale day 2", _again(tmp_path, headscale, {"secret": "present", "deployment": "available"}))
        if c.args[0] == "secret-key"
    ]
    assert len(found) == 1
    assert [a["exit"] for a in check(found).values()] == [0]


def test_the_backups_stamp_is_held_to_its_annotation_before_its_cronjob_exists(headscale: Simulation) -> None:
    # RBAC lets the stamp's account patch all of Headscale's Deployment: the policy that holds it to its annotation
    # (plans.remote_access.state_backup_admission, proven on the real API server in tests/plans) is in force before the
    # CronJob that carries its token.
    named = headscale.named()
    policy = named["remote-access-ainur-validatingadmissionpolicy-iluvatar-backup-stamp"]
    binding = named["remote-access-ainur-validatingadmissionpolicybinding-iluvatar-backup-stamp"]
    assert policy.inputs["spec"] == plan.state_backup_admission(remote_stack(HEADSCALE))[0]["spec"]
    assert {policy.urn, binding.urn} <= set(named["remote-access-ainur-cronjob-state-backup"].dependencies)
