"""The bring-up invariants, checked on the engine's dependency graph of a simulated run (iluvatar.graph).

Each rule states what must exist before what on a first `pulumi up` on bare metal, and finds the
resources it is about by what they are (a Kubernetes provider, a Deployment named netboot, a
custom resource's kind, a claim's class) and the steps by the command they run, never by our
resource names, so a rename cannot satisfy a rule by accident. Facts about charts (which CRDs a
chart ships, which kinds its webhooks admit) come from rendering the chart with real Helm at the
version and with the values the release is registered with.

`violations(sim, stack)` returns one message per broken rule and resource: empty means the graph
brings the stack up in order.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import ipaddress
import json
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from iluvatar.graph import Graph
from iluvatar.render import cluster_of, redact
from iluvatar.simulate import Registration, Simulation
from plans import coredns as coredns_plan
from plans import references
from plans import storage as storage_plan
from stacks.model import StackConfig
from tests.edit import ROOT
from tools import upstream

RELEASE = "kubernetes:helm.sh/v3:Release"
CHART = "kubernetes:helm.sh/v4:Chart"
LOCAL_COMMAND = "command:local:Command"
TALOS_CONFIG = "talos:machine/getConfiguration:getConfiguration"
KUBE_PROVIDER = "pulumi:providers:kubernetes"
# What pulumi-kubernetes registers that is no Kubernetes object (providers, Helm, YAML components).
NOT_OBJECTS = ("kubernetes:helm.sh/", "kubernetes:yaml/", "kubernetes:kustomize/")


def upgrader_args(reg: Registration) -> list[str]:
    """The arguments a step passes the upgrader (`.venv/bin/iluvatar upgrader ARGS`), or [] for any other command."""
    create = reg.inputs.get("create")
    if reg.type != LOCAL_COMMAND or not isinstance(create, str) or " upgrader " not in f" {create} ":
        return []
    return create.split(" upgrader ", 1)[1].split()


def stdin_of(reg: Registration) -> dict[str, Any]:
    """A step's stdin (a secret JSON object) as the upgrader reads it."""
    raw = reg.inputs.get("stdin")
    value = getattr(raw, "value", raw)
    return json.loads(value) if isinstance(value, str) else {}


@functools.cache
def builtin_kinds(minor: str) -> frozenset[tuple[str, str]]:
    """(group, kind) that Kubernetes itself serves at this minor: upstream's OpenAPI, from the pinned kubernetes-validate."""
    spec = importlib.util.find_spec("kubernetes_validate")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations))) / "kubernetes-json-schema" / f"v{minor}.0-local-strict"
    definitions = json.loads((folder / "_definitions.json").read_text())["$defs"]
    return frozenset(
        (gvk["group"], gvk["kind"]) for d in definitions.values() for gvk in d.get("x-kubernetes-group-version-kind", []) if isinstance(gvk, dict)
    )


def group_kind(reg: Registration) -> tuple[str, str] | None:
    """A Kubernetes object's (group, kind) from its type token (`kubernetes:apps/v1:Deployment`), None for anything else."""
    if not reg.custom or not reg.type.startswith("kubernetes:") or reg.type.startswith(NOT_OBJECTS):
        return None
    _, api, kind = reg.type.split(":")
    group = api.rsplit("/", 1)[0] if "/" in api else ""
    # A patch of an object (NodePatch) is of the object's kind.
    return ("" if group == "core" else group), kind.removesuffix("Patch")


def minor_of(stack: StackConfig, cluster: str) -> str:
    if cluster != "ainur":
        return stack.arda.kubernetes_version.removeprefix("v").rsplit(".", 1)[0]
    assert stack.ainur is not None
    return stack.ainur.k3s_version.removeprefix("v").split("+")[0].rsplit(".", 1)[0]


@functools.cache
def _rendered(chart: str, version: str, values: str, release: str, namespace: str, kube_version: str) -> tuple[dict[str, Any], ...]:
    return tuple(
        upstream.helm_template(
            upstream.chart(chart.rsplit("/", 1)[-1], version), json.loads(values), release=release, namespace=namespace, kube_version=kube_version
        )
    )


def rendered(reg: Registration, kube_version: str) -> tuple[dict[str, Any], ...]:
    """What real Helm renders for a release, at its chart version and with its values."""
    inputs = redact(reg.inputs)
    return _rendered(
        str(inputs["chart"]),
        str(inputs["version"]),
        json.dumps(inputs.get("values") or {}, sort_keys=True),
        str(inputs.get("name") or reg.name),
        str(inputs.get("namespace") or "default"),
        kube_version,
    )


def talos_dns_ip(documents: list[dict[str, Any]]) -> str:
    """The cluster DNS address Talos gives a machine's kubelet: the tenth of its first service subnet (ClusterConfig.DNSServiceIPs),
    from the documents' own cluster.network (Talos's default 10.96.0.0/12 when they set none)."""
    subnets: list[str] = ["10.96.0.0/12"]
    for doc in documents:
        network = (doc.get("cluster") or {}).get("network") if "kind" not in doc else None
        if isinstance(network, dict) and network.get("serviceSubnets"):
            subnets = [str(s) for s in network["serviceSubnets"]]
    return str(ipaddress.ip_network(subnets[0], strict=False).network_address + 10)


def chart_facts(reg: Registration, kube_version: str) -> tuple[set[tuple[str, str]], set[str]]:
    """What a Helm release installs, by real Helm: the (group, kind) of its CRDs, and the API groups its webhooks admit."""
    objects = rendered(reg, kube_version)
    crds = {(o["spec"]["group"], o["spec"]["names"]["kind"]) for o in objects if o.get("kind") == "CustomResourceDefinition"}
    webhook_groups = {
        group
        for o in objects
        if o.get("kind") in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
        for hook in o.get("webhooks") or []
        for rule in hook.get("rules") or []
        for group in rule.get("apiGroups") or []
    }
    return crds, webhook_groups


class Checker:
    """The rules, over one simulated run of one stack."""

    def __init__(self, sim: Simulation, stack: StackConfig) -> None:
        self.sim, self.stack, self.graph = sim, stack, Graph.of(sim)

    def steps(self, command: str, *flags: str) -> Iterator[Registration]:
        """The steps that run `upgrader COMMAND` with all of `flags` among their arguments."""
        for reg in self.graph.of_type(LOCAL_COMMAND):
            args = upgrader_args(reg)
            if args[:1] == [command] and all(f in args for f in flags):
                yield reg

    def objects(self, cluster: str) -> Iterator[tuple[Registration, tuple[str, str]]]:
        for reg in self.graph.registrations.values():
            gk = group_kind(reg)
            if gk is not None and cluster_of(reg) == cluster:
                yield reg, gk

    def clusters(self) -> list[str]:
        return ["arda", *(["ainur"] if self.stack.ainur is not None else [])]

    def provider_cluster(self, provider: Registration) -> str:
        """Which cluster a Kubernetes provider reaches: where its kubeconfig comes from (Talos's for Arda, the token a Pi prints for the Ainur)."""
        sources = [self.graph.registrations[u] for u in self.graph.ancestors(provider.urn)]
        if any(r.type == "talos:cluster/kubeconfig:Kubeconfig" for r in sources):
            return "arda"
        if any(r.type == "command:remote:Command" and "service-account-token" in str(r.inputs.get("create")) for r in sources):
            return "ainur"
        return "unknown"

    def readiness_gate(self, cluster: str) -> Registration | None:
        found = list(self.steps("health", "api")) if cluster == "arda" else list(self.steps("wait-kube", "--api"))
        return found[0] if len(found) == 1 else None

    def explain(self, later: Registration, earlier: Registration) -> str:
        return f"{later.name} is not after {earlier.name}"

    # --- The rules -----------------------------------------------------------------------------

    def providers_after_readiness(self) -> Iterator[str]:
        """No Kubernetes provider is configured before its cluster answers (pulumi-kubernetes checks once per run)."""
        for cluster in self.clusters():
            gate = self.readiness_gate(cluster)
            providers = [r for r in self.graph.of_type(KUBE_PROVIDER) if self.provider_cluster(r) == cluster]
            if gate is None:
                yield f"{cluster}: no readiness gate (one `upgrader {'health --stage api' if cluster == 'arda' else 'wait-kube --api'}` step) for its {len(providers)} Kubernetes provider(s)"
                continue
            for provider in providers:
                if not self.graph.after(provider, gate):
                    yield f"{cluster}: the Kubernetes provider {provider.name} is configured before the readiness gate {gate.name}"

    def netbooting_machines_after_netboot(self) -> Iterator[str]:
        """No Talos apply of a machine that boots from the network before the Ainur's netboot serves."""
        if self.stack.ainur is None:
            return
        serving = {
            ("apps", "Deployment", "netboot"),
            ("apps", "DaemonSet", "netboot-cache"),
            ("", "Service", "netboot"),
        }
        found = {
            (gk[0], gk[1], reg.inputs["metadata"]["name"]): reg
            for reg, gk in self.objects("ainur")
            if (gk[0], gk[1], reg.inputs.get("metadata", {}).get("name")) in serving and reg.inputs["metadata"].get("namespace") == "netboot"
        }
        for node in self.stack.arda_nodes:
            if not self.stack.boots_from_network(node):
                continue
            applies = [r for r in self.steps("apply") if f"{node.name}={node.ip}" in upgrader_args(r)]
            if len(applies) != 1:
                yield f"{node.name}: {len(applies)} apply steps, expected 1"
                continue
            for key in sorted(serving):
                if key not in found:
                    yield f"{node.name}: netboot's {key[1]} {key[2]} is not in the program"
                elif not self.graph.after(applies[0], found[key]):
                    yield f"{node.name} boots from the network, but its apply {applies[0].name} is not after netboot's {key[1]} {key[2]}"

    def custom_resources_after_their_api(self) -> Iterator[str]:
        """Every custom resource after what installs its CRD, and after a webhook gate when a webhook admits it."""
        for cluster in self.clusters():
            minor = minor_of(self.stack, cluster)
            builtin = builtin_kinds(minor)
            releases = [r for r in self.graph.of_type(RELEASE) if cluster_of(r) == cluster]
            facts = {r.urn: chart_facts(r, f"v{minor}.0") for r in releases}
            admits = [
                (r, {m["kind"] for m in stdin_of(r).get("manifests", [])})
                for r in self.steps("wait-kube", "--admits")
                if cluster_of_step(r) == cluster
            ]
            for reg, (group, kind) in self.objects(cluster):
                if (group, kind) in builtin:
                    continue
                ancestors = self.graph.ancestors(reg.urn)
                installers = [r for r in releases if (group, kind) in facts[r.urn][0] and r.urn in ancestors]
                gates = [g for g, kinds in admits if kind in kinds and g.urn in ancestors]
                if not installers and not gates:
                    yield f"{cluster}: {reg.name} ({group}/{kind}) is not after any release whose chart ships its CRD, nor after a gate that waits for it"
                webhooked = [r for r in releases if group in facts[r.urn][1]]
                if webhooked and not gates:
                    names = ", ".join(r.name for r in webhooked)
                    yield f"{cluster}: {reg.name} ({group}/{kind}) is admitted by the webhook of {names}, but is not after a gate that waits for it to answer"

    def claims_after_their_class(self) -> Iterator[str]:
        """No claim on a StorageClass that is installed later: the class is built in, Pulumi's own, or gated."""
        for cluster in self.clusters():
            classes = {reg.inputs["metadata"]["name"]: reg for reg, gk in self.objects(cluster) if gk == ("storage.k8s.io", "StorageClass")}
            # Every gate on each class (the store's and the drill's tools claim each have their own on ceph-block).
            gates: dict[str, list[Any]] = {}
            for r in self.steps("wait-kube", "--storage-class"):
                gates.setdefault(upgrader_args(r)[upgrader_args(r).index("--storage-class") + 1], []).append(r)
            builtin = {"local-path"} if cluster == "ainur" and not storage_plan.k3s_disables_local_storage(self.stack) else set()
            for reg, gk in self.objects(cluster):
                # A claim, or a StatefulSet's claim templates: pulumi-kubernetes awaits both (a StatefulSet's Ready
                # needs its claims bound), and gives up long before an operator's class comes.
                if gk == ("", "PersistentVolumeClaim"):
                    wanted_classes = [reg.inputs.get("spec", {}).get("storageClassName")]
                elif gk == ("apps", "StatefulSet"):
                    templates = reg.inputs.get("spec", {}).get("volumeClaimTemplates", [])
                    wanted_classes = [t.get("spec", {}).get("storageClassName") for t in templates]
                else:
                    continue
                for wanted in wanted_classes:
                    if wanted in builtin:
                        continue
                    providers = [*gates.get(wanted or "", []), *([classes[wanted]] if wanted in classes else [])]
                    if not any(self.graph.after(reg, p) for p in providers):
                        yield f"{cluster}: the claim {reg.name} uses StorageClass {wanted}, which nothing before it provides or waits for"

    def arda_workloads_after_nodes(self) -> Iterator[str]:
        """On Arda, nothing that runs pods or is run by an operator starts before every machine is Ready, but the CNI's own."""
        gates = list(self.steps("health", "nodes"))
        if len(gates) != 1:
            yield f"arda: {len(gates)} nodes gates (`upgrader health --stage nodes`), expected 1"
            return
        gate = gates[0]
        cni = self.graph.ancestors(gate.urn)
        light = {("", "Namespace"), ("", "Secret"), ("", "ConfigMap"), ("", "ServiceAccount"), ("storage.k8s.io", "StorageClass")}
        for reg in self.graph.registrations.values():
            if cluster_of(reg) != "arda" or reg.urn in cni or not reg.type.startswith("kubernetes:"):
                continue
            gk = group_kind(reg)
            if gk in light or (gk is not None and gk[0] == "rbac.authorization.k8s.io") or (gk is None and reg.type != RELEASE):
                continue
            if not self.graph.after(reg, gate):
                yield f"arda: {reg.name} ({reg.type}) can start before every machine is Ready ({gate.name})"

    def objects_after_what_they_name(self) -> Iterator[str]:
        """Every object after the program's objects it names: a pod's account, ConfigMaps, Secrets and claims, a binding's role and subjects."""
        for cluster in self.clusters():
            known = {}
            for reg, _ in self.objects(cluster):
                if isinstance(reg.inputs.get("metadata"), dict) and isinstance(reg.inputs["metadata"].get("name"), str):
                    known[references.identity(reg.inputs)] = reg
            for ref, reg in known.items():
                for wanted in references.references(reg.inputs):
                    earlier = known.get(wanted)
                    if earlier is not None and not self.graph.after(reg, earlier):
                        yield f"{cluster}: {reg.name} ({ref[0]} {ref[1]}/{ref[2]}) is not after {earlier.name}, the {wanted[0]} it names"

    def arda_control_plane_patches(self) -> dict[str, list[dict[str, Any]]]:
        """Each Arda control plane's patch documents, in order, as the program hands them to the Talos provider."""
        found: dict[str, list[dict[str, Any]]] = {}
        for token, args in self.sim.invocations:
            if token != TALOS_CONFIG or args.get("machineType") != "controlplane":
                continue
            docs = [
                d for patch in args.get("configPatches") or [] for d in yaml.safe_load_all(str(getattr(patch, "value", patch))) if isinstance(d, dict)
            ]
            name = next((str(d["hostname"]) for d in docs if d.get("kind") == "HostnameConfig" and d.get("hostname")), "?")
            found[name] = docs
        return found

    def cluster_dns_has_one_owner(self) -> Iterator[str]:
        """Arda's `kube-dns` Service is the program's or Talos's, never both nor neither, at the address Talos gives the kubelets,
        in front of a Deployment Talos's health check finds (`k8s-app: kube-dns` in kube-system)."""
        services = [
            reg
            for reg, gk in self.objects("arda")
            if gk == ("", "Service") and references.identity(reg.inputs) == ("Service", "kube-system", "kube-dns")
        ]
        releases = [
            r
            for r in self.graph.of_type(RELEASE)
            if cluster_of(r) == "arda"
            and any(o.get("kind") == "Service" and o["metadata"].get("name") == "kube-dns" for o in rendered(r, f"v{minor_of(self.stack, 'arda')}.0"))
        ]
        owners = [r.name for r in (*services, *releases)]
        planes = self.arda_control_plane_patches()
        talos_on = sorted(name for name, docs in planes.items() if coredns_plan.talos_runs_coredns(docs))
        for name in talos_on:
            if owners:
                yield f"arda: {name} leaves Talos's CoreDNS on (cluster.coreDNS.disabled), so Talos and {', '.join(owners)} both own Service kube-system/kube-dns"
        if not owners and len(talos_on) < len(planes):
            yield f"arda: Talos's CoreDNS is off on {', '.join(sorted(set(planes) - set(talos_on)))}, and nothing in the program serves Service kube-system/kube-dns"
        if len(owners) > 1:
            yield f"arda: {', '.join(owners)} all own Service kube-system/kube-dns"
        for service in services:
            spec = service.inputs.get("spec", {})
            for name, docs in sorted(planes.items()):
                want = talos_dns_ip(docs)
                if spec.get("clusterIP") != want:
                    yield f"arda: {service.name} is at {spec.get('clusterIP')}, but Talos tells {name}'s kubelet the cluster DNS is {want}"
            selector = spec.get("selector") or {}
            pods = [
                reg
                for reg, gk in self.objects("arda")
                if gk == ("apps", "Deployment")
                and reg.inputs["metadata"].get("namespace") == "kube-system"
                and (reg.inputs["metadata"].get("labels") or {}).get("k8s-app") == "kube-dns"
                and selector
                and selector.items() <= (reg.inputs["spec"]["template"]["metadata"].get("labels") or {}).items()
            ]
            if not pods:
                yield f"arda: {service.name} selects {selector}, which no kube-system Deployment labelled k8s-app=kube-dns (what Talos's health check waits for) runs"

    def workloads_not_behind_their_load_balancer(self) -> Iterator[str]:
        """No workload waits, directly or through others, for a LoadBalancer Service (Local traffic policy) that selects
        its own pods: a deadlock. pulumi-kubernetes v4.32.0 awaits such a Service until it has an ingress
        (provider/pkg/await/service.go:299-308, :411-417; 10 min, :80), and kube-vip v0.9.2 gives a Local Service its
        address only from a node with a ready endpoint of it (pkg/manager/watch_services.go:198-231,
        watch_endpoints.go:214-217), so that Service is never ready before the workload's pods are."""
        for cluster in self.clusters():
            services = []
            for reg, gk in self.objects(cluster):
                spec, meta = reg.inputs.get("spec") or {}, reg.inputs.get("metadata") or {}
                skip = (meta.get("annotations") or {}).get("pulumi.com/skipAwait") == "true"
                if gk == ("", "Service") and spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local" and not skip:
                    services.append(reg)
            for reg, gk in self.objects(cluster):
                if gk[0] != "apps" or not isinstance(reg.inputs.get("spec"), dict):
                    continue
                labels = ((reg.inputs["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
                namespace = (reg.inputs.get("metadata") or {}).get("namespace")
                for service in services:
                    selector = service.inputs["spec"].get("selector") or {}
                    same = (service.inputs.get("metadata") or {}).get("namespace") == namespace
                    if same and selector and isinstance(labels, dict) and selector.items() <= labels.items() and self.graph.after(reg, service):
                        chain = " -> ".join(e.dependency.rsplit("::", 1)[-1] for e in self.graph.path(reg, service))
                        yield (
                            f"{cluster}: {reg.name} waits for {service.name} ({chain}), a LoadBalancer Service of its own pods, "
                            "which is ready only once they are: a deadlock"
                        )

    RULES: tuple[Callable[[Checker], Iterator[str]], ...] = (
        providers_after_readiness,
        netbooting_machines_after_netboot,
        custom_resources_after_their_api,
        claims_after_their_class,
        arda_workloads_after_nodes,
        objects_after_what_they_name,
        cluster_dns_has_one_owner,
        workloads_not_behind_their_load_balancer,
    )

    def violations(self) -> list[str]:
        return [message for rule in self.RULES for message in rule(self)]


def cluster_of_step(reg: Registration) -> str:
    """The cluster a Kubernetes gate checks: the one whose command provider runs it (`arda-command`, `ainur-command`)."""
    return reg.provider.rsplit("::", 1)[0].rsplit("::", 1)[-1].removesuffix("-command")


def violations(sim: Simulation, stack: StackConfig) -> list[str]:
    return Checker(sim, stack).violations()


@contextmanager
def edited(module: str, *edits: tuple[str, str]) -> Iterator[None]:
    """The program with edits in one module's source: `module` is re-executed from the edited text for the run."""
    path = ROOT / (module.replace(".", "/") + ".py")
    source = path.read_text()
    for old, new in edits:
        assert source.count(old) == 1, f"{module}: expected exactly one {old!r}"
        source = source.replace(old, new)
    importlib.import_module(module)
    # Every component module is imported afresh for the run, so one that imported the edited module
    # (`from components.cilium import Cilium`) gets the edited one; all are put back afterwards.
    saved = {name: mod for name, mod in sys.modules.items() if name == "components" or name.startswith("components.")}
    for name in saved:
        del sys.modules[name]
    scratch = types.ModuleType(module)
    scratch.__file__ = str(path)
    sys.modules[module] = scratch
    try:
        exec(compile(source, str(path), "exec"), scratch.__dict__)  # noqa: S102 - the program's own source, edited
        yield
    finally:
        for name in [n for n in sys.modules if n == "components" or n.startswith("components.")]:
            del sys.modules[name]
        sys.modules.update(saved)
