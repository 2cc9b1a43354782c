"""What fills each Pi's netboot cache: the pinned iPXE binaries and each board's Talos kernel and
initramfs, so the netboot pod starts on any Pi without the internet."""

from __future__ import annotations

import hashlib
import shlex

from plans.k3s import KUBECTL, RFC3339_FUNCTION
from plans.netboot.base import HOST_CACHE, NAMESPACE
from plans.netboot.debs import files as debs_files
from stacks import pins

# iPXE binaries, served by TFTP, from Debian's `ipxe` package at a pinned version (the first
# Debian release whose package ships an arm64 build). Name served -> (file in the package, SHA-256).
IPXE_DEBIAN_VERSION = pins.APPS["ipxe"]
# Where each Pi keeps that package's pinned file (stacks.pins.DEBS["netboot-ipxe"]), so a Pi refills its TFTP cache offline.
IPXE_DEBS = f"{HOST_CACHE}/ipxe-debs"
IPXE_FILES = {
    "undionly.kpxe": ("undionly.kpxe", "391bfe580ec9f823d046ee390765d6c389f482b9a8b9fae0f90871cd8ff57828"),
    "ipxe.efi": ("ipxe-amd64.efi", "6095eb23f4173674a3dc124a2a6d3cdeed514172793306a10d525f57b97cdc6a"),
    "ipxe-arm64.efi": ("ipxe-arm64.efi", "5369815eee98bf98b28a18af9a57207f9096a3b4e542ed3df1eb3f5b28d3d9a9"),
}


def fetch_assets_script(urls: dict[str, tuple[str, str]], root: str = f"{HOST_CACHE}/assets") -> str:
    """Fill a Pi's cache with each board's Talos kernel and initramfs; skip what is already there.

    A board's pair is downloaded into a new folder and swapped in whole, so nginx never serves a
    kernel with another version's initramfs.
    """
    lines = ["set -eu"]
    for board, (kernel, initramfs) in sorted(urls.items()):
        d = f"{root}/{board}"
        stamp = hashlib.sha256(f"{kernel}\n{initramfs}".encode()).hexdigest()[:16]
        lines += [
            f'if [ "$(cat {d}/source 2>/dev/null)" != {stamp} ]; then',
            f"  rm -rf {d}.new && mkdir -p {d}.new",
            f"  curl -fsSL --retry 5 -o {d}.new/vmlinuz '{kernel}'",
            f"  curl -fsSL --retry 5 -o {d}.new/initramfs.xz '{initramfs}'",
            f"  echo {stamp} > {d}.new/source",
            f"  rm -rf {d}.old && if [ -d {d} ]; then mv {d} {d}.old; fi && mv {d}.new {d} && rm -rf {d}.old",
            "fi",
        ]
    return "\n".join(lines) + "\n"


def fetch_ipxe_script(root: str = f"{HOST_CACHE}/tftp", debs: str = IPXE_DEBS, fetch: str = "/etc/iluvatar/ipxe-debs.sh") -> str:
    """Fill a Pi's TFTP cache with the pinned iPXE binaries, checked by SHA-256, unless present.

    They come out of Debian's pinned ipxe file (stacks.pins.DEBS["netboot-ipxe"]), kept in `debs` by the set's fetch
    script `fetch` (plans.netboot.debs: snapshot.debian.org, its SHA-256, nothing asked of the network when it is there)
    and unpacked with dpkg-deb, not installed: the binaries are data, and the first version's `apt-get update && apt-get
    install ipxe=VERSION` failed once the live archive dropped that version, and with no internet.

    Each binary is replaced by a rename inside `root`, never `root` itself: the netboot pod's dnsmasq
    mounts `root` as a hostPath, and a bind mount holds the folder, not its name, so a folder swapped in under the
    same name is one dnsmasq never sees (it served a deleted, empty folder until its pod was recreated). The folder
    also holds the Pis' boot folders (plans.netboot.pis), which a swap would take away."""
    sums = "\n".join(f"{digest}  {name}" for name, (_, digest) in sorted(IPXE_FILES.items()))
    staged = "\n".join(f"{digest}  .{name}.new" for name, (_, digest) in sorted(IPXE_FILES.items()))
    [deb] = debs_files("netboot-ipxe")
    copies = "\n".join(f'  cp "$X/usr/lib/ipxe/{source}" {root}/.{name}.new' for name, (source, _) in sorted(IPXE_FILES.items()))
    renames = "\n".join(f"  mv -f {root}/.{name}.new {root}/{name}" for name in sorted(IPXE_FILES))
    return (
        "set -eu\n"
        # What the first version's swap of the whole folder could leave behind.
        f"rm -rf {root}.new {root}.old\n"
        # The container's /tmp; TMPDIR where the script runs beside others (the tests).
        'SUMS="${TMPDIR:-/tmp}/ipxe.sha256"\n'
        'X="${TMPDIR:-/tmp}/ipxe-deb"\n'
        f"cat > \"$SUMS\" <<'EOF'\n{sums}\nEOF\n"
        f"cat > \"$SUMS.new\" <<'EOF'\n{staged}\nEOF\n"
        f'if ! (cd {root} 2>/dev/null && sha256sum -c --status "$SUMS"); then\n'
        f"  DIR={debs} sh {fetch}\n"
        f'  rm -rf "$X" && dpkg-deb -x {debs}/{deb} "$X"\n'
        f"  mkdir -p {root} && rm -f {root}/.*.new\n"
        f"{copies}\n"
        f'  rm -rf "$X"\n'
        f'  (cd {root} && sha256sum -c "$SUMS.new")\n'
        # On disk before they take the served names: a power cut right after leaves whole files or the old ones.
        "  sync\n"
        f"{renames}\n"
        "fi\n"
    )


# How long a Pi's Node must have been silent (Ready Unknown, since its condition's lastTransitionTime) before the
# clearance takes its pods off the API: past a k3s restart of that Pi in the same `up` (its join
# waits for it, one Pi at a time) or a brief partition, after which its kubelet would find its pod gone and a new one
# made beside the old one it is still stopping.
SILENT_SECONDS = 120
# The Nodes whose Ready is Unknown, from `kubectl get nodes -o json` on stdin: "<node> silent" for those Unknown for
# argv[1] seconds or more (since the condition's lastTransitionTime, RFC 3339 as the API server writes it: apimachinery
# v0.35.1 pkg/apis/meta/v1/time.go:162-172), "<node> unknown" for the others. Read by python3 (plans.k3s.RFC3339_FUNCTION,
# not `date -d`, which the uutils date of Ubuntu 25.10 refuses), and a time that cannot be read stops the step, naming
# the Node.
SILENT_SCRIPT = (
    RFC3339_FUNCTION
    + r"""import json, sys
limit, now = int(sys.argv[1]), datetime.datetime.now(datetime.timezone.utc)
for node in json.load(sys.stdin).get("items") or []:
    name = node["metadata"]["name"]
    ready = next((c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})
    if ready.get("status") != "Unknown":
        continue
    try:
        since = rfc3339(ready["lastTransitionTime"])
    except (KeyError, ValueError) as e:
        sys.exit(f"{name}'s Ready condition has no time that can be read ({e!r})")
    print(name, "silent" if (now - since).total_seconds() >= limit else "unknown")
"""
)


def clearance_script(silent_seconds: int = SILENT_SECONDS) -> str:
    """On a valar (the one holding the API VIP), before netboot-cache's roll and the netboot pod's replacement: take off the API, for good, the
    cache pods of Pis the control plane has not heard from for `silent_seconds`, and the netboot pod records already
    Terminating on any Pi whose kubelet stopped reporting (no wait is needed for those).

    Why: the cache DaemonSet rolls with maxUnavailable 1, its default (Kubernetes v1.35.1
    pkg/apis/apps/v1/defaults.go:75-93), and a Pi whose kubelet stopped reporting (its Node's Ready Unknown: the node
    lifecycle controller's mark) keeps its old pod: deleted by the roll, it stays Terminating for ever, since no kubelet
    confirms it and PodGC removes such pods only on a Node tainted out-of-service (pkg/controller/podgc/
    gc_controller.go:148-166). A node with neither an old nor a new pod counts as unavailable (pkg/controller/daemon/
    update.go:82-84), so no live Pi's pod is ever replaced (:119-126), pulumi-kubernetes's wait for the DaemonSet fails,
    and everything after it in `up` is skipped (kubernetes/kubernetes#117204). A cache pod removed from the API leaves
    its node out of the roll's count; the DaemonSet makes no new one there while the Node is tainted
    unreachable:NoSchedule (the pod tolerates NoExecute only: plans.netboot.pods.cache_pod), and makes it when the Pi is
    back. The cache pod serves nothing (the netboot pod reads the Pi's cache folders).

    And: the netboot pod on a Pi that died was evicted 5 s later and runs again on another Pi, but its
    old record stays Terminating. A change of its template then makes the Deployment's Recreate scale the old ReplicaSet
    to 0, which stops the running replacement, and wait for every old pod to be gone before it makes the new one
    (pkg/controller/deployment/recreate.go:38-51,99-125): the LAN would keep no DHCP, DNS or TFTP until the dead Pi came
    back. Only such a record, already Terminating, is removed: what runs does not change, since its replacement already
    runs and the dead Pi's kubelet, if it lives, is not told either way until it reconnects."""
    kubectl = f"sudo {KUBECTL}"
    return f"""set -eu
# iluvatar: before netboot-cache's roll and the netboot pod's replacement, the pods a silent Pi would hold them with leave (plans.netboot.cache).
if ! pods=$({kubectl} -n {NAMESPACE} get pods -o jsonpath='{{range .items[*]}}{{.metadata.name}} {{.spec.nodeName}} {{.metadata.labels.app\\.kubernetes\\.io/name}} {{.metadata.deletionTimestamp}}{{"\\n"}}{{end}}'); then
  echo "iluvatar: the netboot pods cannot be listed, so a Pi that is down could hold netboot-cache's roll or the netboot pod's replacement; look with: sudo k3s kubectl -n {NAMESPACE} get pods -o wide" >&2
  exit 1
fi
if ! nodes=$({kubectl} get nodes -o json); then
  echo "iluvatar: the Nodes cannot be read, so a Pi that is down could hold netboot-cache's roll or the netboot pod's replacement; look with: sudo k3s kubectl get nodes" >&2
  exit 1
fi
if ! states=$(printf '%s' "$nodes" | python3 -c {shlex.quote(SILENT_SCRIPT)} {silent_seconds} 2>&1); then
  echo "iluvatar: how long each Pi has been silent cannot be read ($states), so a Pi that is down could hold netboot-cache's roll or the netboot pod's replacement; look with: sudo k3s kubectl get nodes -o wide" >&2
  exit 1
fi
state() {{ printf '%s\\n' "$states" | awk -v n="$1" '$1 == n {{print $2}}'; }}
printf '%s\\n' "$pods" | while read -r pod node app deleting; do
  [ -n "$pod" ] && [ -n "$node" ] || continue
  case "$app" in
    netboot-cache) [ "$(state "$node")" = silent ] || continue
      lead="has not reported for {silent_seconds} s or more"
      why="its netboot-cache pod $pod would hold the cache's roll on every other Pi; it is removed, and $node's cache refills when it is back" ;;
    netboot) [ -n "${{deleting:-}}" ] && [ -n "$(state "$node")" ] || continue
      lead="has stopped reporting"
      why="its netboot pod $pod, evicted and running again on another Pi, is still Terminating there and would keep the netboot pod's next replacement from starting (the LAN's DHCP, DNS and TFTP); its record is removed" ;;
    *) continue ;;
  esac
  echo "iluvatar: $node's kubelet $lead (its Node's Ready is Unknown), so $why" >&2
  {kubectl} -n {NAMESPACE} delete pod "$pod" --force --grace-period=0 --wait=false >&2 || {{
    echo "iluvatar: the pod $pod on $node could not be removed; remove it by hand: sudo k3s kubectl -n {NAMESPACE} delete pod $pod --force --grace-period=0" >&2
    exit 1
  }}
done
"""
