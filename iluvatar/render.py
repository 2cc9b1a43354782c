"""Render: write everything a stack would create as files to read and diff, from a mock run.

The layout (under the output folder):
  plan.txt                                       every resource as a tree with what it waits for, and the count per type
  outputs.json                                   the stack outputs as `pulumi stack output --json` writes them
  rollout.txt                                    with --previous: which Arda machines change, how, and in what order
  kubernetes/<cluster>/<namespace>/<kind>-<name>.yaml   every Kubernetes object ("_cluster" for cluster-scoped)
  kubernetes/<cluster>/<namespace>/HelmRelease-<name>.yaml  a Helm release: chart, version, repository, values
  kubernetes/<cluster>/<namespace>/HelmChart-<name>.yaml    a chart whose objects Pulumi owns one by one (helm.v4), the same fields
  talos/<node>.patch.yaml                        each Arda machine's config patches, in apply order
  ainur/<node>.user-data, ainur/<node>.network-config   each Pi's cloud-init user-data and static network
  netboot/dnsmasq.conf, netboot/dnsmasq-hosts, netboot/dnsmasq-dhcp-hosts, netboot/ipxe/<file>, netboot/configs.csv   what the Ainur serve, and where
  netboot/pis/image.txt, netboot/pis/<pi>/bootconf.txt, netboot/pis/<pi>/boot.cmdline.txt (and boot.image, boot.folder), .../root.<path>
                                                 with netbooting maiar: the image, each Pi's EEPROM lines, its files
  flash/disk-images.csv                          each flashed Talos SBC's Image Factory disk image
  flash/schematic-<board>.yaml                   each flashed board's schematic, as POSTed to Image Factory
  edge/routes.csv, edge/lan-dns.csv, edge/certificates.csv, edge/ca.crt   the apps' routes and LAN names,
                                                 the wildcard certificates, the local CA to install on devices
  edge/conditional-forwarders.txt                without the Ainur: what the router forwards to the LAN resolver
  cloudflare/records.csv, cloudflare/tunnel-<name>.yaml   the public records and the tunnel's ingress rules

Secrets are written as [secret], whatever they hold. Output is sorted and has no timestamps, so
two renders of the same stack are byte-identical.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from iluvatar.graph import provider_urn
from iluvatar.simulate import PLACEHOLDER, Registration, SecretValue, Simulation
from plans import imagefactory, netboot, rollout, yamltext
from plans.netboot.base import DNSMASQ_CONFIGMAP_PREFIX
from stacks import outputs as exports
from stacks.netboot_mode import deployed_mode
from stacks.pulumi_source import recorded_ainur

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
HELM_CHART = "kubernetes:helm.sh/v4:Chart"
GET_CONFIGURATION = "talos:machine/getConfiguration:getConfiguration"
SCHEMATIC = "talos:imageFactory/schematic:Schematic"


def redact(value: Any) -> Any:
    """The value with every Pulumi secret replaced by [secret]."""
    if isinstance(value, SecretValue):
        return PLACEHOLDER
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


# A CustomResourceDefinition's text by the document's repr (which tells every value and its type apart), for the
# process. The monitoring layer's CRDs are 4.5 MB of YAML, the same in every render of a stack with monitoring, and
# PyYAML's representer (Python, before libyaml's emitter) took 0.45 s of CPU to write them each time: a process that
# renders many stacks (the tests) now writes them once. Bounded: emptied past _CRD_TEXTS documents.
_CRD_TEXT: dict[str, str] = {}
_CRD_TEXTS = 64


def _dump(doc: Any) -> str:
    if doc.get("kind") != "CustomResourceDefinition":
        return yamltext.dump(doc, sort_keys=True)
    key = repr(doc)
    text = _CRD_TEXT.get(key)
    if text is None:
        if len(_CRD_TEXT) >= _CRD_TEXTS:
            _CRD_TEXT.clear()
        text = _CRD_TEXT[key] = yamltext.dump(doc, sort_keys=True)
    return text


def _provider_name(reg: Registration) -> str:
    # Provider references are `<urn>::<id>`; the URN's last segment is the provider's name. A
    # component (a helm.v4 Chart) names its children's provider in `providers`.
    ref = reg.provider or reg.providers.get("kubernetes", "")
    return ref.rsplit("::", 1)[0].rsplit("::", 1)[-1] if ref else ""


def cluster_of(reg: Registration) -> str:
    # `arda-kubernetes`, or a layer's own provider for a cluster such as `gitops-arda-kubernetes`.
    return _provider_name(reg).removesuffix("-kubernetes").rsplit("-", 1)[-1] or "default"


def kubernetes_files(sim: Simulation) -> dict[str, str]:
    files: dict[str, str] = {}
    for reg in sim.registrations:
        if not reg.type.startswith("kubernetes:") or not (reg.custom or reg.type == HELM_CHART):
            continue
        cluster = cluster_of(reg)
        inputs = redact(reg.inputs)
        metadata = inputs.get("metadata", {}) if isinstance(inputs.get("metadata"), dict) else {}
        if reg.type in (HELM_RELEASE, HELM_CHART):
            namespace = inputs.get("namespace", "default")
            name = inputs.get("name", reg.name)
            doc = {
                "chart": inputs.get("chart"),
                "version": inputs.get("version"),
                "repository": (inputs.get("repositoryOpts") or {}).get("repo"),
                "namespace": namespace,
                "name": name,
                "values": inputs.get("values", {}),
            }
            kind = "HelmRelease" if reg.type == HELM_RELEASE else "HelmChart"
            files[f"kubernetes/{cluster}/{namespace}/{kind}-{name}.yaml"] = _dump(doc)
            continue
        _, api, kind = reg.type.split(":")
        group_version = api.removeprefix("core/")
        if kind == "Secret":
            # A Secret's keys are public (kubectl shows them); only the values are hidden.
            for field in ("data", "stringData"):
                value = reg.inputs.get(field)
                if isinstance(value, SecretValue) and isinstance(value.value, dict):
                    inputs[field] = dict.fromkeys(value.value, PLACEHOLDER)
        namespace = metadata.get("namespace") or "_cluster"
        name = metadata.get("name", reg.name)
        doc = {"apiVersion": group_version, "kind": kind, **{k: v for k, v in inputs.items() if k not in ("apiVersion", "kind")}}
        files[f"kubernetes/{cluster}/{namespace}/{kind}-{name}.yaml"] = _dump(doc)
    return files


def talos_files(sim: Simulation) -> dict[str, str]:
    """Each getConfiguration call's patches, under the hostname its HostnameConfig gives."""
    files: dict[str, str] = {}
    for token, args in sim.invocations:
        if token != GET_CONFIGURATION:
            continue
        patches = redact(args.get("configPatches") or [])
        name = "generic-worker"
        for patch in patches:
            for doc in yamltext.load_all(patch):
                if isinstance(doc, dict) and doc.get("kind") == "HostnameConfig" and doc.get("hostname"):
                    name = doc["hostname"]
        header = f"# {args.get('machineType')} {name}: patches in apply order, Talos {args.get('talosVersion')}\n"
        files[f"talos/{name}.patch.yaml"] = header + "---\n".join(patches)
    return files


def ainur_files(sim: Simulation) -> dict[str, str]:
    """Each Pi's cloud-init user-data and network-config: what to flash before the first `pulumi up`."""
    files: dict[str, str] = {}
    for kind, output in (("user-data", exports.AINUR_USER_DATA), ("network-config", exports.AINUR_NETWORK_CONFIG)):
        for node, text in (redact(sim.outputs.get(output)) or {}).items():
            files[f"ainur/{node}.{kind}"] = text
    return files


def netboot_files(sim: Simulation) -> dict[str, str]:
    files: dict[str, str] = {}
    by_name = sim.named()
    dnsmasq = by_name.get("netboot-configmap-netboot")
    if dnsmasq is not None:
        data = redact(dnsmasq.inputs.get("data", {}))
        # dnsmasq.conf is in a ConfigMap of its own, named by its content (plans.netboot.objects).
        conf = next(r for n, r in by_name.items() if n.startswith(f"netboot-configmap-{DNSMASQ_CONFIGMAP_PREFIX}"))
        files["netboot/dnsmasq.conf"] = redact(conf.inputs["data"])["dnsmasq.conf"]
        # The records dnsmasq reads anew as they change, the loop that hands them over, and dnsmasq's container's
        # command, which runs the loop beside dnsmasq (plans.netboot.records).
        for records in ("dnsmasq-hosts", "dnsmasq-dhcp-hosts", "dnsmasq-records.sh", "dnsmasq-run.sh"):
            files[f"netboot/{records}"] = data[records]
        files["netboot/nginx.conf"] = data["nginx.conf"]
        for script in ("fetch-assets.sh", "fetch-ipxe.sh", "ipxe-debs.sh", "restore-leases.sh", "save-leases.sh"):
            files[f"netboot/{script}"] = data[script]
    ipxe = by_name.get("netboot-configmap-ipxe")
    if ipxe is not None:
        for name, text in sorted(redact(ipxe.inputs.get("data", {})).items()):
            files[f"netboot/ipxe/{name}"] = text
    pis = by_name.get("netboot-configmap-pi-netboot")
    if pis is not None:
        # The netbooting maiar: the image they boot, what to set in each Pi's EEPROM, and everything they are served.
        # (A Pi's files are keyed `<pi>.bootconf.txt`, `<pi>.boot.<file>`, `<pi>.root.<path with dots>`: plans.netboot.pi_pods.)
        shared = {"build-pi-image.sh", "pi-tftp.sh", "serve-pis.sh", "ganesha.conf", "image.txt", "pi-image-debs.sh", "pi-nfs-debs.sh"}
        for key, text in sorted(redact(pis.inputs.get("data", {})).items()):
            name, _, rest = key.partition(".")
            files[f"netboot/pis/{key}" if key in shared else f"netboot/pis/{name}/{rest}"] = text
    # Each netbooting maia's boot pointer (its pi-boot-<pi> ConfigMap, components.ainur): what it boots next.
    for reg in sim.registrations:
        if reg.type == "kubernetes:core/v1:ConfigMap" and reg.name.startswith("ainur-") and reg.name.endswith("-boot"):
            pi = reg.name.removeprefix("ainur-").removesuffix("-boot")
            for key, text in sorted(redact(reg.inputs.get("data", {})).items()):
                files[f"netboot/pis/{pi}/boot.{key}"] = text
    reservations = {netboot.mac_name(r["mac"]): r for r in sim.outputs.get(exports.RESERVATIONS) or []}
    scripts = sorted(n.removesuffix(".ipxe") for n in (ipxe.inputs.get("data", {}) if ipxe else {}) if n != "boot.ipxe")
    if scripts:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["mac", "node", "ip", "ipxe_script", "talos_config"])
        for key in scripts:
            r = reservations.get(key, {})
            writer.writerow([key, r.get("name", key), r.get("ip", "dhcp"), f"/ipxe/{key}.ipxe", f"/configs/{key}.yaml"])
        files["netboot/configs.csv"] = out.getvalue()
    return files


def flash_files(sim: Simulation) -> dict[str, str]:
    """The Image Factory disk image to flash on each Arda SBC (RK1, Raspberry Pi 4), by node, and each such
    board's schematic as the provider POSTs it: Image Factory serves images only for a schematic it was sent,
    and the images are flashed before any `pulumi up` sends it (docs/bring-up.md)."""
    images: dict[str, str] = sim.outputs.get(exports.ARDA_DISK_IMAGES) or {}
    if not images:
        return {}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["node", "disk_image"])
    for node, url in sorted(images.items()):
        writer.writerow([node, url])
    files = {"flash/disk-images.csv": out.getvalue()}
    for schematic in sim.by_type(SCHEMATIC):
        body, schematic_id = imagefactory.named(str(schematic.inputs.get("schematic") or ""))
        if any(f"/image/{schematic_id}/" in url for url in images.values()):
            files[f"flash/schematic-{schematic.name.rsplit('-schematic-', 1)[1]}.yaml"] = body
    return files


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def edge_files(sim: Simulation) -> dict[str, str]:
    """The edge at a glance: routes, the LAN's split DNS, certificates, and the local CA to install."""
    edge = sim.outputs.get(exports.EDGE)
    if not isinstance(edge, dict):
        return {}
    files: dict[str, str] = {}
    ca = sim.outputs.get(exports.CA_CERTIFICATE)
    if isinstance(ca, str):
        files["edge/ca.crt"] = ca
    addresses = edge["gateways"]
    files["edge/routes.csv"] = _csv(
        ["app", "host", "audience", "gateway", "address", "namespace", "service", "port"],
        [
            [r["app"], r["host"], r["audience"], r["gateway"], addresses[r["gateway"]], r["namespace"], r["service"], r["port"]]
            for r in edge["routes"]
        ],
    )
    files["edge/lan-dns.csv"] = _csv(["name", "address"], [[name, ip] for name, ip in sorted(edge["lanRecords"].items())])
    files["edge/certificates.csv"] = _csv(
        ["certificate", "issuer", "dns_names"], [[name, c["issuer"], " ".join(c["dnsNames"])] for name, c in sorted(edge["certificates"].items())]
    )
    if "conditionalForwarders" in edge:
        lines = [f"# Forward these names from your router's DNS to the LAN resolver at {edge['resolver']}:"]
        files["edge/conditional-forwarders.txt"] = (
            "\n".join([*lines, *(f"{name} -> {edge['resolver']}" for name in edge["conditionalForwarders"])]) + "\n"
        )
    return files


def cloudflare_files(sim: Simulation) -> dict[str, str]:
    """What Pulumi writes to Cloudflare: the public records and the tunnel with its ingress rules."""
    records = sim.by_type("cloudflare:index/dnsRecord:DnsRecord")
    tunnels = sim.by_type("cloudflare:index/zeroTrustTunnelCloudflared:ZeroTrustTunnelCloudflared")
    if not records and not tunnels:
        return {}
    tunnel_ids = {t.urn: sim.outputs.get(exports.TUNNEL_ID) for t in tunnels}
    files = {
        "cloudflare/records.csv": _csv(
            ["name", "type", "content", "proxied", "ttl", "comment"],
            sorted(
                [
                    [
                        r.inputs["name"],
                        r.inputs["type"],
                        redact(r.inputs.get("content")),
                        r.inputs.get("proxied"),
                        r.inputs.get("ttl"),
                        r.inputs.get("comment"),
                    ]
                    for r in records
                ]
            ),
        )
    }
    configs = sim.by_type("cloudflare:index/zeroTrustTunnelCloudflaredConfig:ZeroTrustTunnelCloudflaredConfig")
    for tunnel in tunnels:
        doc = {**redact(tunnel.inputs), "id": tunnel_ids[tunnel.urn], "config": [redact(c.inputs.get("config")) for c in configs]}
        files[f"cloudflare/tunnel-{tunnel.inputs['name']}.yaml"] = _dump(doc)
    return files


def plan_text(sim: Simulation) -> str:
    """Every resource as a tree under the stack, sorted by name, then the outputs and the counts."""
    children: dict[str, list[Registration]] = {}
    urns = {r.urn for r in sim.registrations}
    roots: list[Registration] = []
    for reg in sim.registrations:
        (children.setdefault(reg.parent, []) if reg.parent in urns else roots).append(reg)
    lines = [f"stack {sim.stack}"]
    names = {r.urn: r.name for r in sim.registrations}

    def walk(regs: list[Registration], depth: int) -> None:
        for reg in sorted(regs, key=lambda r: (r.name, r.type)):
            lines.extend(wrap_entry(f"{'  ' * depth}{reg.name}  ({reg.type})", _flags(reg, names), 2 * depth))
            walk(children.get(reg.urn, []), depth + 1)

    walk(roots, 1)
    lines.append("")
    lines.append("outputs")
    for key in sorted(sim.outputs):
        value = sim.outputs[key]
        shown = PLACEHOLDER if isinstance(value, SecretValue) else _summary(value)
        lines.append(f"  {key}: {shown}")
    lines.append("")
    counts = Counter(r.type for r in sim.registrations)
    lines.append("resources")
    lines += [f"  {t}: {n}" for t, n in sorted(counts.items())]
    lines.append(f"  total: {len(sim.registrations)}")
    return "\n".join(lines) + "\n"


# No line of plan.txt is longer: a resource's options that do not fit go on lines of their own below it.
WIDTH = 160


def wrap_entry(head: str, flags: Sequence[str], indent: int, width: int = WIDTH) -> list[str]:
    """A resource's line (`head`), with each flag `[...]` after it while the line stays within `width`, and the rest on
    lines below it, indented four past the resource (two past its children, whose lines never start with `[`). A flag
    too long for a line of its own breaks between words, its later lines two further in: joined with single spaces,
    an entry's lines give back the one line it would be unwrapped, unless a word alone is wider than a line (then cut)."""
    lines = [head]
    below = " " * (indent + 4)
    for flag in flags:
        text = f"[{flag}]"
        if len(lines[-1]) + 1 + len(text) <= width:
            lines[-1] += " " + text
        elif len(below) + len(text) <= width:
            lines.append(below + text)
        else:
            lines.extend(_break(text, below, width))
    return lines


RESOURCE_LINE = re.compile(r"^ *\S+  \(\S+\)")


def plan_entries(text: str) -> list[str]:
    """plan.txt's tree read back, each resource one line again: a line that is no resource's own (`name  (type)`)
    continues the one above it (wrap_entry), and joined with single spaces gives back the unwrapped line."""
    entries: list[str] = []
    for line in text.split("\n\noutputs\n", 1)[0].splitlines():
        if RESOURCE_LINE.match(line) or not entries:
            entries.append(line)
        else:
            entries[-1] += " " + line.strip()
    return entries


def _break(text: str, indent: str, width: int) -> list[str]:
    lines = [indent]
    for word in text.split(" "):
        room = width - len(lines[-1]) - (0 if lines[-1].isspace() else 1)
        if len(word) <= room:
            lines[-1] += word if lines[-1].isspace() else " " + word
            continue
        lines.append(indent + "  ")
        while len(word) > width - len(lines[-1]):
            cut = width - len(lines[-1])
            lines[-1] += word[:cut]
            word = word[cut:]
            lines.append(indent + "  ")
        lines[-1] += word
    return [line for line in lines if not line.isspace()]


HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


def _flags(reg: Registration, names: dict[str, str]) -> list[str]:
    """The options that change what the engine does with a resource, each shown as `[...]` after its line."""
    flags = []
    if reg.protect:
        flags.append("protected")
    if reg.retain_on_delete:
        flags.append("retained on delete")
    if reg.delete_before_replace:
        flags.append("delete before replace")
    for label, values in (
        ("ignore changes", reg.ignore_changes),
        ("replace on changes", reg.replace_on_changes),
        ("secret outputs", reg.additional_secret_outputs),
    ):
        if values:
            flags.append(f"{label}: {', '.join(sorted(values))}")
    if reg.deleted_with:
        flags.append(f"deleted with: {names.get(reg.deleted_with, reg.deleted_with)}")
    if reg.type == HELM_RELEASE:
        # Helm knows a release by its namespace and name, not by the resource's: Helm's "cannot re-use a name that is
        # still in use" names neither (helm v3.20.2 pkg/action/install.go, availableName), and docs/bring-up.md's
        # recovery of a stopped run's release looks the pair up here.
        flags.append(f"helm release: {reg.inputs.get('namespace', 'default')}/{reg.inputs.get('name', reg.name)}")
    # The program's own aliases (a renamed machine's); the SDK's type aliases of its own classes are noise here.
    if own := [a for a in reg.aliases if not a.startswith("type=")]:
        flags.append(f"aliases: {', '.join(sorted(own))}")
    if reg.custom_timeouts:
        flags.append("timeouts: " + ", ".join(f"{k} {v}" for k, v in sorted(reg.custom_timeouts.items())))
    # Every dependency the engine orders this resource by (iluvatar.graph): depends_on ("after"), the
    # resources its inputs came from ("inputs", with the input names), and the provider it goes through.
    from_inputs: dict[str, set[str]] = {}
    for key, urns in reg.property_dependencies.items():
        for urn in urns:
            from_inputs.setdefault(urn, set()).add(key)
    after = sorted(names.get(u, u) for u in set(reg.dependencies) - set(from_inputs))
    if after:
        flags.append(f"after: {', '.join(after)}")
    if from_inputs:
        flags.append("inputs: " + ", ".join(sorted(f"{names.get(u, u)} ({', '.join(sorted(keys))})" for u, keys in from_inputs.items())))
    provider = provider_urn(reg.provider)
    if provider:
        flags.append(f"provider: {names.get(provider, provider)}")
    return flags


def _summary(value: Any) -> str:
    if isinstance(value, list):
        return f"{len(value)} items"
    if isinstance(value, dict):
        return f"{len(value)} entries"
    text = str(redact(value))
    return text if "\n" not in text and len(text) < 100 else f"{len(text)} characters"


def outputs_json(sim: Simulation) -> str:
    """The stack outputs as `pulumi stack output --json` prints them: secrets as [secret]. Give it back as `--previous`."""
    return json.dumps(redact(sim.outputs), indent=2, sort_keys=True) + "\n"


def as_read(value: Any) -> Any:
    """Outputs as the program reads them back: a null in a mapping is no key at all (pulumi 3.272.0
    sdk/python/lib/pulumi/runtime/rpc.py:892-894, deserialize_properties: "We treat values that deserialize to "None"
    as if they don't exist"), so that the plan here reads a null part as `pulumi preview` does, as a missing one."""
    if isinstance(value, dict):
        return {k: as_read(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [as_read(v) for v in value]
    return value


def rollout_text(sim: Simulation, previous: dict[str, Any]) -> str:
    """The day-2 plan against a previous deployment's outputs, as `pulumi preview` logs it on the simulation's day: every
    step that runs on Arda and the Ainur, in order, and why."""
    previous = as_read(previous)
    # A move between DHCP modes first: it is the household's, and it says when the router's part is done.
    modes = (deployed_mode(previous.get(exports.DNSMASQ_CONF)), deployed_mode(sim.outputs.get(exports.DNSMASQ_CONF)))
    was = previous.get(exports.ARDA)
    pool, gateways = previous.get(exports.LOAD_BALANCER_POOL), previous.get(exports.GATEWAYS)
    if isinstance(was, dict) and "pool" not in was and isinstance(pool, dict) and isinstance(gateways, dict):
        # Outputs from before the `arda` output recorded the pool still say it and the gateways' addresses at the top.
        was = {**was, "pool": {"range": f"{pool.get('start')}-{pool.get('end')}", "services": gateways}}
    routes = isinstance(sim.outputs.get(exports.REMOTE_ACCESS), dict)
    arda = rollout.plan(was, sim.outputs[exports.ARDA], sim.now, ainur=(recorded_ainur(previous), sim.outputs.get(exports.AINUR)), routes=routes)
    return rollout.describe_mode(*modes) + arda


def render_files(sim: Simulation, previous: dict[str, Any] | None = None) -> dict[str, str]:
    """Relative path -> content, for everything the stack would create (and, against `previous`, its day-2 plan)."""
    files = {"plan.txt": plan_text(sim), "outputs.json": outputs_json(sim)}
    if previous is not None:
        files["rollout.txt"] = rollout_text(sim, previous)
    for part in (kubernetes_files, talos_files, ainur_files, netboot_files, flash_files, edge_files, cloudflare_files):
        files.update(part(sim))
    return dict(sorted(files.items()))


def write_tree(files: dict[str, str], out: Path) -> None:
    for rel, content in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
