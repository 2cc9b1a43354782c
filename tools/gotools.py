"""Go tools: build the real programs Iluvatar's artifacts are checked with, from pinned Go modules.

Each tool is a folder under `tools/` with its own `go.mod` and `go.sum`: a small checker of ours
(e.g. Talos's own config validation), or an upstream CLI pinned with a `tool` directive (Helm,
kubeconform). Everything is fetched through the Go module proxy and verified against the
committed `go.sum` (and the checksum database the proxy serves), and built into a cache outside
the repository, keyed by the tool's sources and the Go version, so a second build is instant.

    python -m tools.gotools build          # build every tool (CI and the README's first command)
    python -m tools.gotools path NAME      # build one if needed and print its path

The build itself (the pinned Go, the module proxy, the cache in `$ILUVATAR_CACHE`) is
`iluvatar.golang`, which the upgrader that `pulumi up` runs is built with too.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from iluvatar import golang
from iluvatar.golang import cache_dir, go_binary, go_env

TOOLS_DIR = Path(__file__).resolve().parent
__all__ = ["TOOLS", "GoToolError", "Tool", "build", "cache_dir", "go_binary", "go_env"]


@dataclass(frozen=True)
class Tool:
    """A Go program built from `tools/<folder>`: `package` is a path in that module or a dependency."""

    name: str
    folder: str
    package: str = "."
    modfile: str = "go.mod"
    tags: tuple[str, ...] = ()
    # The Kubernetes module the binary is built from, whose version it reports as its own (`kubernetes_ldflags`).
    kubernetes: str = ""

    @property
    def gomod(self) -> Path:
        return TOOLS_DIR / self.folder / self.modfile


# Tailscale v1.102.3 built with only what the remote access test runs (tests/netns/test_remote_access.py): the CLI linked
# into tailscaled (one binary for `tailscale` and `tailscaled`), subnet routes, DNS, the OS's routes and netfilter,
# netstack (the devices' resolver at 100.100.100.100), health and the IPN bus (containerboot watches it), serve and
# acme (containerboot's LocalAPI client needs them), and the LocalAPI's socket identity (without it the LocalAPI grants
# nobody anything: ipn/ipnserver/server.go:336-353 asks the connection IsUnixSock, which the omitted build never says),
# and debug (the test reads the subnet router's network map, its peers and packet filter, before it sends the phone's
# first packet: `tailscale debug netmap`, ipn/localapi/debug.go:251, exists only in a build with it).
# Tailscale's own feature tags (feature/featuretags at v1.102.3): `go run tailscale.com/cmd/featuretags --min
# --add=cli,advertiseroutes,useroutes,dns,osrouter,iptables,netstack,health,ipnbus,serve,acme,unixsocketidentity,debug`.
# Both programs share one build of every package (cold figures: docs/proof/performance.md, issue #43).
TAILSCALE_TAGS = (
    "ts_include_cli",
    "ts_omit_ace",
    "ts_omit_advertiseexitnode",
    "ts_omit_appconnectors",
    "ts_omit_aws",
    "ts_omit_bakedroots",
    "ts_omit_bird",
    "ts_omit_cachenetmap",
    "ts_omit_captiveportal",
    "ts_omit_capture",
    "ts_omit_cliconndiag",
    "ts_omit_clientmetrics",
    "ts_omit_clientupdate",
    "ts_omit_cloud",
    "ts_omit_colorable",
    "ts_omit_completion",
    "ts_omit_completion_scripts",
    "ts_omit_conn25",
    "ts_omit_dbus",
    "ts_omit_debugeventbus",
    "ts_omit_debugportmapper",
    "ts_omit_desktop_sessions",
    "ts_omit_doctor",
    "ts_omit_drive",
    "ts_omit_flashappliance",
    "ts_omit_gro",
    "ts_omit_hujsonconf",
    "ts_omit_identityfederation",
    "ts_omit_kube",
    "ts_omit_linkspeed",
    "ts_omit_linuxdnsfight",
    "ts_omit_listenrawdisco",
    "ts_omit_logtail",
    "ts_omit_netlog",
    "ts_omit_networkmanager",
    "ts_omit_oauthkey",
    "ts_omit_outboundproxy",
    "ts_omit_peerapiclient",
    "ts_omit_peerapiserver",
    "ts_omit_portlist",
    "ts_omit_portmapper",
    "ts_omit_posture",
    "ts_omit_qrcodes",
    "ts_omit_relayserver",
    "ts_omit_remoteconfig",
    "ts_omit_resolved",
    "ts_omit_routecheck",
    "ts_omit_runtimemetrics",
    "ts_omit_sdnotify",
    "ts_omit_serviceclientprefs",
    "ts_omit_ssh",
    "ts_omit_synology",
    "ts_omit_syslog",
    "ts_omit_syspolicy",
    "ts_omit_systray",
    "ts_omit_taildrop",
    "ts_omit_tailnetlock",
    "ts_omit_tap",
    "ts_omit_tpm",
    "ts_omit_tundevstats",
    "ts_omit_useexitnode",
    "ts_omit_useproxy",
    "ts_omit_usermetrics",
    "ts_omit_wakeonlan",
    "ts_omit_webbrowser",
    "ts_omit_webclient",
)

# Every tool the tests use, by name. Each folder's go.mod/go.sum pins its modules.
_ALL: tuple[Tool, ...] = (
    # Talos's own config generation and validation: machinery v1.13.0 (the provider's) and v1.14.1 (a 1.14 node's).
    Tool("talos-check", "talos-check"),
    Tool("talos-check-node", "talos-check", modfile="node.go.mod"),
    # The schematic IDs a `pulumi up` gets: the Talos provider's decode, image-factory's client and its Schematic.ID (plans.imagefactory).
    Tool("schematic-id", "talos-check", package="./schematic-id"),
    # go-procfs v0.1.2's Cmdline, as Talos's imager merges a schematic's extra kernel arguments (plans.netboot.cmdline).
    Tool("kernel-cmdline", "kernel-cmdline"),
    # Cron schedules as a CronJob's API server and controller and VolSync parse them (robfig/cron v3.0.1).
    Tool("cron-check", "cron-check"),
    # Helm itself renders the charts the program installs (tools.upstream.helm_template).
    Tool("helm", "helm", package="helm.sh/helm/v3/cmd/helm"),
    # kubeconform validates every rendered object against the pinned schemas (tools.upstream.kubeconform).
    Tool("kubeconform", "kubeconform", package="github.com/yannh/kubeconform/cmd/kubeconform"),
    # Pulumi's own stack-file marshaling: what `pulumi stack init` / `config set` write back (tests/stacks/test_stack_form.py).
    Tool("stackfile", "stackfile"),
    # Argo CD's own ApplicationSet generators, Git client, project checks and kustomize (tools.appset_check).
    Tool("appset-check", "appset-check"),
    # Envoy Gateway's own translator (`egctl x translate`) accepts or rejects the gateways and routes.
    Tool("egctl", "egctl", package="github.com/envoyproxy/gateway/cmd/egctl"),
    # CoreDNS's own server and plugins run the LAN resolver's Corefile (plans.resolver).
    Tool("coredns", "coredns"),
    # cloudflared's own parser of a remotely managed tunnel's configuration (plans.cloudflare).
    Tool("cloudflared-check", "cloudflared-check"),
    # A scripted Talos API stand-in on machinery v1.13.0's real gRPC services (tools.talos_api): the upgrader's tests.
    Tool("talos-api", "talos-api"),
    # pulumi-command v1.2.1's local Command as the engine cancels it (Go's standard library only): a step killed as it
    # kills one (tests/upgrader/test_cancel.py).
    Tool("pulumi-command-local", "pulumi-command-local"),
    # The tests' real control plane (tools.kube_cluster), for both clusters: kube-apiserver, controller-manager and
    # scheduler at Kubernetes 1.35.1 (Arda's, and the Ainur's k3s minor), kubectl, etcd 3.6.5 and kwok v0.8.0.
    Tool("kube-control-plane", "kube-control-plane", kubernetes="k8s.io/kubernetes"),
    # kubectl alone, Kubernetes 1.35.1's own main (k8s.io/kubernetes cmd/kubectl/kubectl.go) in the control plane's
    # module, so every package it links is the control plane's build of it: what the product's roll and wait scripts
    # run as `k3s kubectl`, once a second while they poll. The multi-call binary above initialises every component's
    # packages before kubectl's first line (0.10 s of CPU for `kubectl version --client`, this one 0.05 s).
    Tool("kubectl", "kube-control-plane", package="k8s.io/kubernetes/cmd/kubectl", kubernetes="k8s.io/kubernetes"),
    # kube-vip v0.9.2's service election on client-go v0.32.3's leader election and HTTP/2 transport: the service
    # address through a black-holed API connection (tests/netns/test_service_address.py).
    Tool("kube-vip-election", "kube-vip-election"),
    # kustomize v5.8.1, the binary Argo CD v3.5.2 builds a kustomize source with (the monitoring Application).
    Tool("kustomize", "kustomize", package="sigs.k8s.io/kustomize/kustomize/v5"),
    # Prometheus v3.12.0's promtool: checks and unit-tests the alert rules (plans.monitoring). Without the service
    # discovery plugins (Prometheus's own `remove_all_sd` tag): rules never reach them, and their cloud SDKs were
    # most of a cold build.
    Tool("promtool", "promtool", package="github.com/prometheus/prometheus/cmd/promtool", tags=("remove_all_sd",)),
    # Alertmanager v0.33.0: amtool checks the rendered config; am-notify routes alerts and delivers them with its own notifiers.
    Tool("am-notify", "alertmanager"),
    Tool("amtool", "alertmanager", package="github.com/prometheus/alertmanager/cmd/amtool"),
    # Dex v2.45.1 itself: serves the rendered config, so its own code checks it (plans.identity).
    Tool("dex", "dex", package="github.com/dexidp/dex/cmd/dex"),
    # The bcrypt hash of a password, as Dex's static passwords take it (the package Dex checks them with).
    Tool("bcrypt", "dex", package="./bcrypt"),
    # The logs (plans.logs): VictoriaLogs v1.52.1, the store; the OpenTelemetry Collector's contrib components at v0.165.0,
    # the collector; vmalert of VictoriaMetrics v1.151.0, the log alerts' evaluator.
    Tool("victoria-logs", "victorialogs", package="github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs"),
    Tool("otelcol", "otelcol"),
    Tool("vmalert", "vmalert", package="github.com/VictoriaMetrics/VictoriaMetrics/app/vmalert"),
    # etcd 3.7.1, the etcd of Talos 1.14, with its etcdctl and etcdutl: the restore drill's tests restore, migrate and start
    # a real 3.7 snapshot with the etcdutl and etcd a Talos 1.14 stack's drill and cluster run (plans.drill, tests/test_drill.py).
    Tool("etcd-3.7", "etcd-3.7"),
    # age v1.3.1's own command: the restore drill decrypts Arda's etcd snapshots with it (plans.drill).
    Tool("age", "age", package="filippo.io/age/cmd/age"),
    # A client of the Ainur's KMS that speaks to it as Talos v1.13.9's kms key handler does (kms-client v0.2.0's API):
    # seal, unseal, and the volume manager's retry (tests/plans/test_kms_server.py).
    Tool("kms-client", "kms-client"),
    # np-guard's netpol-analyzer v1.4.2: which workloads and outside addresses reach which ports, from a cluster's
    # rendered objects and NetworkPolicies (tools.netpol_check). The checksum database lacks v1.4.2 (its lookup
    # answers not found), so go.sum pins it by the h1: hash of the proxy's own zip, which the build then verifies.
    Tool("netpol-check", "netpol-check"),
    # Remote access (tests/netns/test_remote_access.py): Headscale v0.27.1 (the control server), and Tailscale v1.102.3's
    # tailscaled (the router's and the phone's) and containerboot (the subnet router image's entrypoint).
    Tool("headscale", "headscale", package="github.com/juanfont/headscale/cmd/headscale"),
    Tool("tailscaled", "tailscale", package="tailscale.com/cmd/tailscaled", tags=TAILSCALE_TAGS),
    Tool("containerboot", "tailscale", package="tailscale.com/cmd/containerboot", tags=TAILSCALE_TAGS),
)
TOOLS: dict[str, Tool] = {t.name: t for t in _ALL}


# A checker that could not be built: the same error as any Go program of the project's.
GoToolError = golang.GoBuildError


def module_version(tool: Tool, module: str) -> str:
    """The version of `module` the tool's go.mod builds it with: its `replace` if it has one, else its `require`."""
    text = tool.gomod.read_text()
    name = re.escape(module)
    for pattern in (rf"^(?:replace\s+|\t){name}(?: \S+)? => {name} (v\S+)$", rf"^(?:require\s+|\t){name} (v\S+)(?: // indirect)?$"):
        if found := re.search(pattern, text, re.M):
            return found.group(1)
    raise GoToolError(f"{tool.gomod.relative_to(TOOLS_DIR.parent)} does not require {module}")


def kubernetes_version(name: str) -> str:
    """The Kubernetes version a tool is built from (`v1.34.1`), read from its go.mod."""
    tool = TOOLS[name]
    if not tool.kubernetes:
        raise GoToolError(f"the Go tool {name} is not built from Kubernetes")
    return module_version(tool, tool.kubernetes)


# A Kubernetes release build stamps its version into both version packages with the linker
# (kubernetes hack/lib/version.sh, kube::version::ldflags, lines 151-182 at v1.34.1): gitVersion, and gitMajor
# and gitMinor from it (lines 101-107: the minor takes a "+" when the version has a pre-release part; line 110
# refuses a version that is not semver).
# Without them kube-apiserver reports `v0.0.0-master+$Format:%H$` at /version, which discovery hands
# Helm as the cluster's version, and Helm refuses every chart with a `kubeVersion` constraint.
# gitCommit and gitTreeState are left out, as version.sh leaves them out when it knows no commit (a
# module zip has none); buildDate keeps its in-tree 1970-01-01T00:00:00Z, what version.sh writes with
# SOURCE_DATE_EPOCH=0, so the binary stays the same from one day to the next.
KUBERNETES_VERSION_PACKAGES = ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version")
_SEMVER = re.compile(r"^v([0-9]+)\.([0-9]+)(\.[0-9]+)?(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


def kubernetes_ldflags(version: str) -> tuple[str, ...]:
    """The `-X` flags that make a Kubernetes binary report `version` (v1.34.1), as Kubernetes' release build sets them."""
    found = _SEMVER.match(version)
    if found is None:
        raise GoToolError(f"{version!r} is not a Kubernetes version (vMAJOR.MINOR.PATCH): version.sh refuses to build it")
    major, minor = found.group(1), found.group(2) + ("+" if found.group(4) else "")
    values = {"gitVersion": version, "gitMajor": major, "gitMinor": minor}
    return tuple(f"-X {package}.{key}={value}" for key, value in values.items() for package in KUBERNETES_VERSION_PACKAGES)


def program(name: str) -> golang.Program:
    """What `build` builds for a tool: its folder, package, go.mod and tags, and the version flags of a Kubernetes build."""
    if name not in TOOLS:
        raise GoToolError(f"no Go tool named {name!r} (known: {', '.join(sorted(TOOLS))})")
    tool = TOOLS[name]
    ldflags = kubernetes_ldflags(kubernetes_version(name)) if tool.kubernetes else ()
    return golang.Program(tool.name, TOOLS_DIR / tool.folder, tool.package, tool.modfile, tool.tags, ldflags)


def build(name: str) -> Path:
    """The tool's binary, built if its sources changed since the last build."""
    return golang.build(program(name))


def main(argv: list[str]) -> int:
    if argv[:1] == ["build"] and len(argv) == 1:
        for name in TOOLS:
            print(f"{name}: {build(name)}", flush=True)
        return 0
    if argv[:1] == ["path"] and len(argv) == 2:
        print(build(argv[1]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except GoToolError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
