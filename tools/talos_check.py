"""Talos acceptance check: each Arda machine config generated and validated by Talos's own Go code.

The program hands the Talos provider one `talos:machine/getConfiguration` invoke per machine.
This driver runs the program under the mock runtime, takes those invocations' arguments as they
are (cluster name and endpoint, machine type, versions, our patches), and feeds them in one batch
to `tools/talos-check` built twice:

1. against machinery v1.13.0, the version terraform-provider-talos v0.11.0 (pulumiverse-talos
   0.8.1) generates with: it generates each config as the provider does, then validates it as a
   node applying it does and as `talosctl validate --mode metal --strict` does;
2. against machinery v1.14.1, the newest Talos a stack may run (stacks.releases): it loads each
   generated config as such a node receives it and validates it the same way. The oldest Talos a
   stack may run, 1.13, is the provider's own machinery's: the first build's node validation is it.
   A stack may still run Talos 1.12 (main shipped v1.12.4): its configs are validated by the
   provider's machinery too, not by a 1.12 node's (the v1.12.4 build was dropped in issue #42 for
   its CPU; a 1.12 node's own decoder is modelled only for the kinds it lacks, stacks.rules).

A machine passes only with no error and no warning from either build ("strict, no warnings").
The secrets in the generated configs are the checker's own throwaway bundle, never a cluster's.

    python -m tools.talos_check Pulumi.homelab.yaml [Pulumi.rk1.yaml ...]
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stacks import pins
from tools import gotools

PROVIDER_TOOL = "talos-check"  # built with go.mod: machinery v1.13.0, as the Talos provider
NODE_TOOL = "talos-check-node"  # built with node.go.mod: machinery v1.14.1, as a 1.14 node
PROVIDER_VERSION = pins.TALOS_CLIENT_MACHINERY
NODE_VERSION = pins.TALOS
INVOKE = "talos:machine/getConfiguration:getConfiguration"
# The invoke's arguments the provider reads to generate a config (machineSecrets aside: the
# checker makes its own bundle as talos_machine_secrets would).
ARGUMENTS = ("clusterName", "clusterEndpoint", "machineType", "kubernetesVersion", "talosVersion", "configPatches", "docs", "examples")
GENERIC_WORKER = "generic-worker"


class TalosCheckError(Exception):
    """The checker could not run at all (build failed, bad answer): not a verdict on a config."""


@dataclass(frozen=True)
class Machine:
    """One getConfiguration invocation: which machine, and exactly what the provider is given."""

    name: str
    arguments: dict[str, Any]

    @property
    def machine_type(self) -> str:
        return str(self.arguments["machineType"])


@dataclass(frozen=True)
class Verdict:
    """What Talos said about one machine: by the provider's machinery, then by the node's."""

    name: str
    provider: tuple[str, ...]
    node: tuple[str, ...]
    # The config the provider's machinery generated (with the checker's throwaway secrets).
    config: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        return not self.provider and not self.node

    def problems(self) -> list[str]:
        return [f"{self.name}: Talos {PROVIDER_VERSION} (provider): {p}" for p in self.provider] + [
            f"{self.name}: Talos {NODE_VERSION} (node): {p}" for p in self.node
        ]


def machine_name(arguments: dict[str, Any]) -> str:
    """The machine an invocation is for: the hostname its patches set, or the generic worker."""
    for patch in arguments.get("configPatches") or []:
        for doc in yaml.safe_load_all(patch):
            if isinstance(doc, dict) and doc.get("kind") == "HostnameConfig" and doc.get("hostname"):
                return str(doc["hostname"])
    return GENERIC_WORKER


def machines(invocations: Iterable[tuple[str, dict[str, Any]]], prefix: str = "") -> list[Machine]:
    """Every getConfiguration invocation of a simulation, named, with the arguments as sent."""
    found = [Machine(prefix + machine_name(args), {k: args.get(k) for k in ARGUMENTS}) for token, args in invocations if token == INVOKE]
    return sorted(found, key=lambda m: m.name)


def build() -> tuple[Path, Path]:
    """Both builds (in parallel: each is mostly waiting on its own compile)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        provider, node = pool.map(gotools.build, (PROVIDER_TOOL, NODE_TOOL))
    return provider, node


def _run(binary: Path, version: str, request: dict[str, Any]) -> list[dict[str, Any]]:
    result = subprocess.run([str(binary)], input=json.dumps(request), capture_output=True, text=True, timeout=1800)  # noqa: S603
    if result.returncode != 0:
        raise TalosCheckError(f"{binary.name} failed ({result.returncode}): {result.stderr.strip()}")
    answer: dict[str, Any] = json.loads(result.stdout)
    if answer["machinery"] != version:
        raise TalosCheckError(f"{binary.name} is built with Talos machinery {answer['machinery']}, not {version}")
    results: list[dict[str, Any]] = answer["results"]
    if len(results) != len(request["machines"]):
        raise TalosCheckError(f"{binary.name} answered for {len(results)} of {len(request['machines'])} machines")
    return results


# The one warning a Talos 1.14 node gives that no config the provider can generate avoids: sign-in writes the API
# server's AuthenticationConfiguration with machine.files (plans.apiserver), which machinery v1.14.1 calls deprecated
# (config/types/v1alpha1/v1alpha1_validation.go:95-97) in favour of its KubeAuthenticationConfig document, which the
# provider's machinery (v1.13.0) does not know (a patch with it is refused: TALOS_KINDS). Talos 1.14 still applies
# machine.files. Accepted on a 1.14 node only, by its exact words; anything else still fails (tests/test_talos_check.py).
ACCEPTED_ON_NODE = (".machine.files is deprecated; use dedicated configuration documents instead",)


def _problems(result: dict[str, Any], accepted: tuple[str, ...] = ()) -> tuple[str, ...]:
    # Strict: a warning is as fatal as an error (but one `accepted` names, in its exact words).
    warnings = [w for w in result["warnings"] if w.split(": ", 1)[-1] not in accepted]  # each is `<stage>: <warning>`
    errors = [e for e in result["errors"] if not any(e.endswith(f"* v1alpha1.Config: 1 error occurred:\n\t* warning: {a}") for a in accepted)]
    return (*errors, *(f"warning: {w}" for w in warnings))


def check(batch: Sequence[Machine]) -> list[Verdict]:
    """Generate and validate every machine with the provider's machinery, then with the node's."""
    if not batch:
        return []
    provider_bin, node_bin = build()
    generated = _run(provider_bin, PROVIDER_VERSION, {"mode": "generate", "machines": [{"name": m.name, **m.arguments} for m in batch]})
    # Each config as a node of its cluster's Talos minor receives it: 1.14 nodes run the node build,
    # 1.13 nodes the provider's own machinery (v1.13.0), and so do 1.12 nodes: no v1.12.4 node build is kept (issue #42's
    # review H3 made 1.12 a target again; its configs are generated at the 1.12 contract and validated by v1.13.0).
    minors = {m.name: str(m.arguments.get("talosVersion", "")).removeprefix("v").rsplit(".", 1)[0] for m in batch}
    received: dict[str, dict[str, Any]] = {}
    for binary, version, known in ((node_bin, NODE_VERSION, {"1.14"}), (provider_bin, PROVIDER_VERSION, {"1.12", "1.13"})):
        configs = [r for r in generated if r.get("config") and minors[r["name"]] in known]
        if configs:
            request = {"mode": "node", "machines": [{"name": r["name"], "config": r["config"]} for r in configs]}
            received.update({r["name"]: r for r in _run(binary, version, request)})
    verdicts = []
    for m, r in zip(batch, generated, strict=True):
        node = received.get(m.name)
        accepted = ACCEPTED_ON_NODE if minors[m.name] == "1.14" else ()
        verdicts.append(Verdict(m.name, _problems(r), _problems(node, accepted) if node else (), r.get("config") or ""))
    return verdicts


def generated_by_newest(batch: Sequence[Machine]) -> list[Verdict]:
    """Each machine as machinery v1.14.1 (the node build) generates and validates it: what a Talos provider built on
    machinery 1.14 would do (talosctl gen config does the same). Not what `pulumi up` runs (the provider's machinery is
    v1.13.0, `check`): it shows what a provider upgrade would change (plans.talos.PROVIDER_MACHINERY)."""
    node_bin = gotools.build(NODE_TOOL)
    generated = _run(node_bin, NODE_VERSION, {"mode": "generate", "machines": [{"name": m.name, **m.arguments} for m in batch]})
    return [Verdict(m.name, _problems(r), (), r.get("config") or "") for m, r in zip(batch, generated, strict=True)]


def compatibility(pairs: Sequence[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """Machinery's own answer (the node build, v1.14.1: the newest, whose compatibility packages know every minor of
    stacks.releases) for each (talos, host, kubernetes): why Talos `talos` cannot
    be installed over a node running `host`, and why it cannot run Kubernetes `kubernetes`; "" where it can."""
    binary = gotools.build(NODE_TOOL)
    request = {"mode": "compat", "pairs": [{"talos": t, "host": h, "kubernetes": k} for t, h, k in pairs]}
    result = subprocess.run([str(binary)], input=json.dumps(request), capture_output=True, text=True, timeout=600)  # noqa: S603
    if result.returncode != 0:
        raise TalosCheckError(f"{binary.name} failed ({result.returncode}): {result.stderr.strip()}")
    return [(c["upgrade"], c["kubernetes"]) for c in json.loads(result.stdout)["compat"]]


def match_disks(config: str, disks: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """Which of a machine's disks (block.DiskSpec as Go spells its fields: DevPath, Model, Serial, Transport, ...) a
    config's install disk selector picks, by each build's machinery (its CEL evaluation, blockhelpers.MatchDisks), in
    the order Talos takes them (it installs to the first); a failure of the config's RuntimeValidate against those
    disks raises."""
    out: dict[str, list[str]] = {}
    for binary, version in zip(build(), (PROVIDER_VERSION, NODE_VERSION), strict=True):
        (result,) = _run(binary, version, {"mode": "match", "machines": [{"name": "m", "config": config, "disks": list(disks)}]})
        if _problems(result):
            raise TalosCheckError(f"Talos {version} matched no disk: {'; '.join(_problems(result))}")
        out[version] = list(result.get("matched") or [])
    return out


def check_stack_files(paths: Sequence[str | Path]) -> list[Verdict]:
    """Every machine of each stack file, as the program asks the provider for it, in one batch."""
    from iluvatar.simulate import simulate  # the Pulumi SDK only when a stack is simulated
    from stacks import read_stack_file
    from stacks.load import validate_stack_file

    batch: list[Machine] = []
    for path in paths:
        sf = read_stack_file(path)
        validate_stack_file(sf)  # one clear error for a broken stack, not the program's
        batch += machines(simulate(sf).invocations, prefix=f"{sf.stack}/")
    return check(batch)


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    verdicts = check_stack_files(argv)
    for v in verdicts:
        print(f"{v.name}: {'accepted' if v.ok else 'REFUSED'}")
        for p in v.problems():
            print(f"  {p}")
    return 0 if all(v.ok for v in verdicts) else 1


if __name__ == "__main__":
    from stacks import StackConfigError, StackFileError

    try:
        sys.exit(main(sys.argv[1:]))
    except StackConfigError as e:
        print(e.report(), file=sys.stderr)
        sys.exit(1)
    except (StackFileError, TalosCheckError, gotools.GoToolError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
