"""The roll of the kube-vip-services DaemonSet (plans.netboot.kube_vip): one Pi at a time, the Pi holding the service
address last, so the household's DNS (and DHCP in `dhcp` mode) is away only for one kube-vip's restart on that Pi.

Why a step of its own: the DaemonSet's default roll (RollingUpdate, maxUnavailable 1) picks the Pis in no order of
ours and stops the old pod before the new one starts; on the Pi holding the address, the old kube-vip releases the
Service's lease and deletes the address on SIGTERM (kube-vip v0.9.2 pkg/manager/servicesLeader.go:88-113,
ReleaseOnCancel and OnStoppedLeading; client-go v0.32 tools/leaderelection/leaderelection.go:211-222, :301-304), and
the address is back only once the new pod runs, has seen the Ready endpoint and won the released lease. maxSurge is no
way out: two kube-vips on one Pi share one identity, the node's name (servicesLeader.go:59). So the DaemonSet is
`OnDelete` (Kubernetes v1.35.1 pkg/controller/daemon/daemon_controller.go:920-926: the controller replaces no pod of
its own; a pod deleted is made again from the current template, :943 manage), and this step deletes each old pod, the
Pis that do not hold the address first, the holder's last (read again before each Pi: the netboot pod may move while
the step runs), each new pod Ready and then Ready with no restart for STEADY_SECONDS before the next. The gap on the holder is
then its new kube-vip's start and one election, which takes the released lease at its first try
(leaderelection.go:308-330: release leaves no holder; a candidate refuses only a record with a holder, :455-458).
A SIGTERM that cancels a renewal the API server applied leaves the lock at the Lease's old resourceVersion
(resourcelock/leaselock.go:69-81 keeps the answer only on success) and the release is refused as a conflict; the
Lease then still names the node, which the new kube-vip is (its identity is the node's name), so it takes it at its
first try all the same (leaderelection.go:246-248, :449-458).

Ready is not enough to go on: kube-vip has no probe, so Ready says its process started, and the Pis that do not hold
the address never run the Service's election (they have no local endpoint). So after the holder's pod the step waits,
bounded, for the Lease to be written again by that Pi and for DNS to answer on the service address, and fails loudly
naming the household's loss otherwise.

Killed at any moment, it leaves pods of the old template, pods of the new one, or a Pi whose old pod is gone and whose
new pod the DaemonSet controller is making anyway; every one is a state the next run reads from the cluster and
finishes: it deletes only pods whose template is not the DaemonSet's current one and waits for those already going. A
Pi whose Node is not Ready keeps its old pod (its kubelet would never confirm a deletion); the step rolls the others and
then fails naming it, so the next `up` runs it again. An old pod already Terminating on a Pi whose kubelet stopped
reporting would stay so for ever (kubernetes/kubernetes#117204: PodGC removes it only on a Node tainted out-of-service,
pkg/controller/podgc/gc_controller.go:148-166) and the DaemonSet makes no successor while it is there
(daemon_controller.go:848-851): its record is removed, as plans.netboot.cache's clearance does for netboot-cache."""

from __future__ import annotations

import hashlib
import json
import shlex

from plans.k3s import KUBECTL
from plans.netboot.base import NAMESPACE
from plans.netboot.kube_vip import kube_vip_services
from stacks.model import StackConfig

DAEMONSET = "kube-vip-services"
DAEMONSET_NAMESPACE = "kube-system"
SELECTOR = "app.kubernetes.io/name=kube-vip"
# kube-vip's Lease for the netboot Service's address: `kubevip-<service>` in the Service's namespace, held by the
# node's name (kube-vip v0.9.2 pkg/manager/servicesLeader.go:48, :59).
LEASE = "kubevip-netboot"
# What the day-2 plan says when the step will replace pods (plans.rollout.describe_ainur): the preview names it.
PLAN_LINE = (
    "netboot-kube-vip-roll: kube-vip-services' pod template changes (its settings or kube-vip's pin): its pod on each Pi "
    "is replaced, one Pi at a time, the Pi holding the service address last, so the LAN's DNS (and DHCP in dhcp mode) "
    "is away once, for that kube-vip's restart (a few seconds)"
)
UNRECORDED_LINE = (
    "netboot-kube-vip-roll: the last deployment did not record a finished roll of kube-vip-services' template (an older "
    "Iluvatar, or a roll that failed or was cut short): the step runs and replaces any pod of an older template, one Pi at "
    "a time, the Pi holding the service address last, so the LAN's DNS (and DHCP in dhcp mode) is away once if the holder's "
    "kube-vip is among them"
)
# How long each Pi's new kube-vip has to be Ready: its image is on the Pi for a change of settings, pulled for a new pin.
POD_SECONDS = 180
# How long the DaemonSet controller has to see the new template (its observedGeneration) and record its revision.
OBSERVED_SECONDS = 60
# How long each new kube-vip must stay Ready with no restart before the next Pi's is replaced: kube-vip has no probe
# (plans.k3s.kube_vip_container), so Ready only says its process started; one that crashes in its first seconds (a bad
# setting, a permission its new version needs) shows within this window as its restart count changing or Ready False,
# seen as the pod changes (a watch), not by polling.
STEADY_SECONDS = 20
# How long, after the holder's new kube-vip, the Lease has to be written again by that Pi (its election won and renewed:
# kube-vip v0.9.2 pkg/manager/servicesLeader.go:83-117 adds the address only once it leads) and DNS to answer on the
# service address.
SERVING_SECONDS = 60
# The engine's bound on the step is the stack's Pis times POD_SECONDS plus these (components.netboot); the script itself
# stops when that time is spent, naming the Pis left, since the cluster may count more Nodes than the stack (a Pi
# removed from the stack whose Node was not deleted).
MARGIN_SECONDS = OBSERVED_SECONDS + SERVING_SECONDS


def step_seconds(pis: int) -> int:
    """The step's whole bound in seconds for a cluster of `pis` Nodes: each Pi's start and steady window, and the margin."""
    return MARGIN_SECONDS + (POD_SECONDS + STEADY_SECONDS) * max(pis, 1)


# The next pod to replace, from `kubectl get pods -o json` (stdin), the current revision's hash (argv[1]), the
# address's holder (argv[2]) and the Nodes (argv[3], a file of `kubectl get nodes -o json`): "<node> <pod> <state>" a
# line, state `replace` (an old pod on a Ready Node), `going` (an old pod already deleted on a Node whose kubelet
# reports: wait for its successor), `lost` (an old pod already deleted on a Node whose kubelet stopped reporting, its
# Ready Unknown: no kubelet will confirm the deletion) or `down` (an old pod on a Node not Ready), the holder's line
# last, the `down` ones first (they are only named). The DaemonSet labels each pod with its template's hash
# (controller-revision-hash: Kubernetes v1.35.1 pkg/controller/daemon/update.go:533 on the revision,
# util/daemonset_util.go:107-121 and daemon_controller.go:1007 on each pod it makes).
PLAN_SCRIPT = r"""import json, sys
current, holder = sys.argv[1], sys.argv[2]
with open(sys.argv[3]) as f:
    nodes = json.load(f).get("items") or []
def ready(n):
    return next((c.get("status") for c in (n.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), "Unknown")
readiness = {n["metadata"]["name"]: ready(n) for n in nodes}
lines = []
for pod in json.load(sys.stdin).get("items") or []:
    meta, node = pod["metadata"], (pod.get("spec") or {}).get("nodeName") or ""
    if not node or (meta.get("labels") or {}).get("controller-revision-hash") == current:
        continue
    if meta.get("deletionTimestamp"):
        state = "lost" if readiness.get(node, "Unknown") == "Unknown" else "going"
    else:
        state = "replace" if readiness.get(node) == "True" else "down"
    lines.append((state != "down", node == holder, node, meta["name"], state))
for _, _, node, name, state in sorted(lines):
    print(node, name, state)
"""

# The Ready pod of the current revision (hash argv[1]) on the Node argv[2], from `kubectl get pods -o json`: its name
# and its container's restart count; nothing (exit 1) when there is none.
READY_SCRIPT = r"""import json, sys
current, node = sys.argv[1], sys.argv[2]
for pod in json.load(sys.stdin).get("items") or []:
    meta, status = pod["metadata"], pod.get("status") or {}
    if (pod.get("spec") or {}).get("nodeName") != node or meta.get("deletionTimestamp"):
        continue
    if (meta.get("labels") or {}).get("controller-revision-hash") != current:
        continue
    if any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
        print(meta["name"], sum(c.get("restartCount", 0) for c in status.get("containerStatuses") or []))
        sys.exit(0)
sys.exit(1)
"""

# Reads `kubectl get pod --watch` lines "<restarts> <ready> <deleting>" (stdin) for argv[2] seconds, the pod's restart
# count at Ready argv[1]: exit 1 naming the first change (a restart, Ready lost, the pod deleted), 0 when the watch ends
# (`timeout` stops it) with none, 2 when the watch ended well before the window did (the API went away).
STEADY_SCRIPT = r"""import sys, time
restarts, window, start = sys.argv[1], float(sys.argv[2]), time.monotonic()
for line in sys.stdin:
    count, ready, deleting = (line.split() + ["", "", ""])[:3]
    if count and count != restarts:
        sys.exit(f"it restarted (restart count {restarts} to {count})")
    if ready and ready != "True":
        sys.exit("it stopped being Ready")
    if deleting:
        sys.exit("it is being deleted")
if time.monotonic() - start < window - 2:
    print("the watch on it ended early", file=sys.stderr)
    sys.exit(2)
"""

# Whether DNS answers on argv[1] (port argv[2]) within a second: one query, any reply with its id counts (NXDOMAIN
# too: the server answered). The standard library only: the valar has python3 and no dig.
DNS_SCRIPT = r"""import os, socket, struct, sys
ident = int.from_bytes(os.urandom(2), "big")
query = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + b"\x09localhost\x00" + struct.pack(">HH", 1, 1)
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(1)
    try:
        s.sendto(query, (sys.argv[1], int(sys.argv[2])))
        reply = s.recv(512)
    except OSError:
        sys.exit(1)
sys.exit(0 if reply[:2] == query[:2] else 1)
"""


def template_digest(stack: StackConfig) -> str:
    """The DaemonSet's pod template as a short digest: the step's trigger, and what the `ainur` output records."""
    [daemonset] = [m for m in kube_vip_services(stack) if m["kind"] == "DaemonSet"]
    return hashlib.sha256(json.dumps(daemonset["spec"]["template"], sort_keys=True).encode()).hexdigest()[:16]


def plan_lines(previous: str | None, current: str, deployed: bool) -> list[str]:
    """The day-2 plan's word on the step: `previous` the template digest the last deployment recorded (None: none),
    `deployed` whether there was one (a first bring-up makes every pod new: nothing to say)."""
    if not deployed or previous == current:
        return []
    return [UNRECORDED_LINE if previous is None else PLAN_LINE]


def roll_script(
    address: str,
    kubectl: str = f"sudo {KUBECTL}",
    pod_seconds: int = POD_SECONDS,
    observed_seconds: int = OBSERVED_SECONDS,
    steady_seconds: int = STEADY_SECONDS,
    serving_seconds: int = SERVING_SECONDS,
    total_seconds: int | None = None,
    dns_port: int = 53,
) -> str:
    """Run over SSH on a valar (the one holding the API VIP) after the DaemonSet's update, every Pi's k3s step and the
    netboot pod's replacement: replace each kube-vip pod of an older template, one Pi at a time, the Pi holding the
    service address `address` last (the Lease read again before each Pi: the netboot pod may have moved), each new
    pod Ready within `pod_seconds` and then Ready with no restart for `steady_seconds` before the next; after the
    holder's, its Lease written again by that Pi and DNS answering on `address` (port `dns_port`) within
    `serving_seconds`. `total_seconds` (default: step_seconds of the cluster's Nodes) bounds the whole step."""
    look = f"look with: sudo k3s kubectl -n {DAEMONSET_NAMESPACE} get pods -l {SELECTOR} -o wide"
    back = (
        f"the household has no DNS (nor DHCP in dhcp mode) until a kube-vip holds {address}; to go back, set kube-vip's "
        "pin or settings as they were and pulumi up (the roll replaces the new pods), or delete the holder's kube-vip pod by hand"
    )
    total = f"{total_seconds}" if total_seconds is not None else f"$(( {MARGIN_SECONDS} + {pod_seconds + steady_seconds} * count ))"
    watch_fields = '{.status.containerStatuses[0].restartCount} {.status.conditions[?(@.type=="Ready")].status} {.metadata.deletionTimestamp}{"\\n"}'
    return f"""set -eu
# iluvatar: kube-vip-services rolled one Pi at a time, the one holding the service address last (plans.netboot.vip_roll).
kc() {{ {kubectl} "$@"; }}
fail() {{ echo "iluvatar: $1; {look}" >&2; exit 1; }}
began=$(date +%s)
end=$(( began + {observed_seconds} ))
until seen=$(kc -n {DAEMONSET_NAMESPACE} get daemonset {DAEMONSET} -o jsonpath='{{.status.observedGeneration}} {{.metadata.generation}}') && [ "${{seen% *}}" = "${{seen#* }}" ]; do
  [ "$(date +%s)" -lt "$end" ] || fail "the DaemonSet controller has not seen kube-vip-services' template within {observed_seconds} s (observed and current generation: ${{seen:-none}})"
  sleep 1
done
current=$(kc -n {DAEMONSET_NAMESPACE} get controllerrevisions -l {SELECTOR} -o jsonpath='{{range .items[*]}}{{.revision}} {{.metadata.labels.controller-revision-hash}}{{"\\n"}}{{end}}' | sort -n | tail -n 1 | cut -d' ' -f2)
[ -n "$current" ] || fail "kube-vip-services has no revision recorded, so which pods run an older template is not known"
nodes=$(mktemp)
trap 'rm -f "$nodes"' EXIT
kc get nodes -o json > "$nodes" || fail "the Nodes cannot be read"
# The bound counts the cluster's Nodes, which can be more than the stack's Pis.
count=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1])).get("items") or []))' "$nodes")
deadline=$(( began + {total} ))
said_one=""
rolled_holder=""
down=""
while :; do
  holder=$(kc -n {NAMESPACE} get lease {LEASE} --ignore-not-found -o jsonpath='{{.spec.holderIdentity}}') || fail "the service address's Lease cannot be read"
  kc get nodes -o json > "$nodes" || fail "the Nodes cannot be read"
  plan=$(kc -n {DAEMONSET_NAMESPACE} get pods -l {SELECTOR} -o json | python3 -c {shlex.quote(PLAN_SCRIPT)} "$current" "${{holder:-}}" "$nodes") || fail "kube-vip's pods cannot be read"
  down=$(printf '%s\\n' "$plan" | awk '$3 == "down" {{printf " %s", $1}}')
  next=$(printf '%s\\n' "$plan" | awk '$3 != "down" && NF == 3 {{print; exit}}')
  [ -n "$next" ] || break
  read -r node pod state <<EOF
$next
EOF
  left=$(printf '%s\\n' "$plan" | awk '$3 != "down" && NF == 3 {{printf " %s", $1}}')
  [ "$(date +%s)" -lt "$deadline" ] || fail "the step's time is spent (the cluster counts $count Nodes); kube-vip on$left still runs an older template: pulumi up again finishes the roll"
  if [ -z "$said_one" ] && [ "$count" -eq 1 ]; then
    echo "iluvatar: the Ainur have one Pi, so no other kube-vip is replaced first to show the new one starts; the checks after it (its Lease renewed, DNS answering on {address}) are the only ones" >&2
  fi
  said_one=1
  case "$state" in
    lost)
      echo "iluvatar: $node is down (its kubelet stopped reporting, its Node's Ready is Unknown), so its kube-vip pod $pod, already deleted, would stay Terminating and hold the roll; its record is removed, and the DaemonSet starts $node's new kube-vip when it is back (nothing left for a later run)" >&2
      kc -n {DAEMONSET_NAMESPACE} delete pod "$pod" --force --grace-period=0 --wait=false >/dev/null 2>&1 || fail "the pod $pod on $node could not be removed; remove it by hand: sudo k3s kubectl -n {DAEMONSET_NAMESPACE} delete pod $pod --force --grace-period=0"
      continue ;;
    replace)
      what=$([ "$node" = "${{holder:-}}" ] && echo "it holds the service address, so it goes last: the household's DNS is away until its new kube-vip wins the released lease" || echo "it does not hold the service address")
      echo "iluvatar: kube-vip on $node runs an older template: its pod $pod is replaced ($what)" >&2
      kc -n {DAEMONSET_NAMESPACE} delete pod "$pod" --wait=false >/dev/null || fail "kube-vip's pod $pod on $node could not be deleted" ;;
  esac
  [ "$node" != "${{holder:-}}" ] || rolled_holder=$node
  end=$(( $(date +%s) + {pod_seconds} ))
  [ "$end" -le "$deadline" ] || end=$deadline
  until new=$(kc -n {DAEMONSET_NAMESPACE} get pods -l {SELECTOR} -o json | python3 -c {shlex.quote(READY_SCRIPT)} "$current" "$node"); do
    [ "$(date +%s)" -lt "$end" ] || fail "kube-vip's new pod on $node was not Ready within {pod_seconds} s$([ "$node" = "${{holder:-}}" ] && echo ": {back}" || true)"
    sleep 1
  done
  read -r name restarts <<EOF
$new
EOF
  echo "iluvatar: kube-vip on $node is Ready ($name): it must stay Ready with no restart for {steady_seconds} s" >&2
  # The pod's changes as they come (a watch), for the window only: `timeout` ends the watch, and no change is a pass.
  if ! why=$(timeout {steady_seconds} {kubectl} -n {DAEMONSET_NAMESPACE} get pod "$name" --watch -o jsonpath='{watch_fields}' 2>/dev/null | python3 -c {shlex.quote(STEADY_SCRIPT)} "$restarts" {steady_seconds} 2>&1); then
    fail "kube-vip's new pod $name on $node did not stay up: $why$([ "$node" = "${{holder:-}}" ] && echo "; {back}" || echo "; the Pis holding the service address keep their older kube-vip: set kube-vip's pin or settings as they were and pulumi up")"
  fi
  echo "iluvatar: kube-vip on $node runs the new template" >&2
done
if [ -n "$rolled_holder" ]; then
  # The election won again: a write of the Lease by that Pi after its new kube-vip stayed up (the old one is gone, so
  # it is the new one's), then DNS answering on the address it announces.
  before=$(kc -n {NAMESPACE} get lease {LEASE} -o jsonpath='{{.metadata.resourceVersion}}') || fail "the service address's Lease cannot be read: {back}"
  echo "iluvatar: waiting for kube-vip on $rolled_holder to renew the service address's Lease and for DNS to answer on {address}" >&2
  end=$(( $(date +%s) + {serving_seconds} ))
  until renewed=$(kc -n {NAMESPACE} get lease {LEASE} -o jsonpath='{{.metadata.resourceVersion}} {{.spec.holderIdentity}}') && [ "$renewed" != "$before $rolled_holder" ] && [ "${{renewed#* }}" = "$rolled_holder" ]; do
    [ "$(date +%s)" -lt "$end" ] || fail "kube-vip on $rolled_holder has not renewed the service address's Lease {NAMESPACE}/{LEASE} within {serving_seconds} s (holder now: ${{renewed#* }}): {back}"
    sleep 1
  done
  until python3 -c {shlex.quote(DNS_SCRIPT)} {address} {dns_port}; do
    [ "$(date +%s)" -lt "$end" ] || fail "DNS does not answer on the service address {address} within {serving_seconds} s after kube-vip on $rolled_holder renewed its Lease: {back}"
  done
  echo "iluvatar: kube-vip on $rolled_holder holds the service address again and DNS answers on {address}" >&2
fi
[ -z "$down" ] || fail "kube-vip on$down keeps its older template: the Node is not Ready, so its pod is left as it is; once it is back, pulumi up again replaces it"
"""


# Whether each Node whose Ready is True runs a Ready kube-vip of the DaemonSet (any revision), from `kubectl get pods
# -o json` (stdin) and the Nodes (argv[1], a file of `kubectl get nodes -o json`): the Nodes without one, a line each.
RUNNING_SCRIPT = r"""import json, sys
with open(sys.argv[1]) as f:
    nodes = json.load(f).get("items") or []
ready = {n["metadata"]["name"] for n in nodes
         if any(c.get("type") == "Ready" and c.get("status") == "True" for c in (n.get("status") or {}).get("conditions") or [])}
for pod in json.load(sys.stdin).get("items") or []:
    if pod["metadata"].get("deletionTimestamp"):
        continue
    if any(c.get("type") == "Ready" and c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions") or []):
        ready.discard((pod.get("spec") or {}).get("nodeName"))
for node in sorted(ready):
    print(node)
"""
# How long the wait for a kube-vip on every Ready Pi has: a first bring-up pulls its image on each.
RUNNING_SECONDS = POD_SECONDS


def running_script(kubectl: str = f"sudo {KUBECTL}", seconds: int = RUNNING_SECONDS) -> str:
    """The wait, before the router's DHCP is turned off for the Ainur's, until a Ready kube-vip runs on every Pi whose
    Node is Ready, within `seconds`: the DaemonSet is not awaited by Pulumi (OnDelete: plans.netboot.kube_vip), so on a
    first bring-up its image may still be pulling, and the household's time without a DHCP server would include it.
    A Ready kube-vip is one whose process started; its election is the netboot pod's own wait. Passes at once when they
    run, as on every later `up`."""
    return f"""set -eu
# iluvatar: kube-vip running on every Ready Pi before the router's DHCP is turned off (plans.netboot.vip_roll).
vip_nodes=$(mktemp)
trap 'rm -f "$vip_nodes"' EXIT
vip_end=$(( $(date +%s) + {seconds} ))
until {kubectl} get nodes -o json > "$vip_nodes" && vip_missing=$({kubectl} -n {DAEMONSET_NAMESPACE} get pods -l {SELECTOR} -o json | python3 -c {shlex.quote(RUNNING_SCRIPT)} "$vip_nodes") && [ -z "$vip_missing" ]; do
  if [ "$(date +%s)" -ge "$vip_end" ]; then
    echo "iluvatar: kube-vip does not run on $(echo ${{vip_missing:-the Pis (the API did not answer)}}) within {seconds} s, so the router's DHCP stays on (the Ainur could not announce the service address yet); look with: sudo k3s kubectl -n {DAEMONSET_NAMESPACE} get pods -l {SELECTOR} -o wide" >&2
    exit 1
  fi
  sleep 1
done
rm -f "$vip_nodes"
trap - EXIT
"""
