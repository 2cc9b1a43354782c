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
Pis that do not hold the address first, each new pod Ready before the next, the holder's last. The gap on the holder is
then its new kube-vip's start and one election, which takes the released lease at its first try
(leaderelection.go:308-330: release leaves no holder; a candidate refuses only a record with a holder, :455-458).

Killed at any moment, it leaves pods of the old template, pods of the new one, or a Pi whose old pod is gone and whose
new pod the DaemonSet controller is making anyway; every one is a state the next run reads from the cluster and
finishes: it deletes only pods whose template is not the DaemonSet's current one and waits for those already going. A
Pi whose Node is not Ready keeps its old pod (its kubelet would never confirm a deletion); the step rolls the others and
then fails naming it, so the next `up` runs it again."""

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
    "netboot-kube-vip-roll: the last deployment did not record kube-vip-services' template (an older Iluvatar): the step "
    "runs and replaces any pod of an older template, one Pi at a time, the Pi holding the service address last"
)
# How long each Pi's new kube-vip has to be Ready: its image is on the Pi for a change of settings, pulled for a new pin.
POD_SECONDS = 180
# How long the DaemonSet controller has to see the new template (its observedGeneration) and record its revision.
OBSERVED_SECONDS = 60

# The pods to replace, in order, from `kubectl get pods -o json` (stdin), the current revision's hash (argv[1]), the
# address's holder (argv[2]) and the Nodes (argv[3], a file of `kubectl get nodes -o json`): "<node> <pod> <state>" a
# line, state `replace` (an old pod on a Ready Node), `going` (an old pod already deleted: wait for its successor) or
# `down` (an old pod on a Node not Ready), the holder's line last. The DaemonSet labels each pod with its template's
# hash (controller-revision-hash: Kubernetes v1.35.1 pkg/controller/daemon/update.go:533 on the revision, util/daemonset_util.go:107-121 and daemon_controller.go:1007 on each pod it makes).
PLAN_SCRIPT = r"""import json, sys
current, holder = sys.argv[1], sys.argv[2]
with open(sys.argv[3]) as f:
    nodes = json.load(f).get("items") or []
ready = {n["metadata"]["name"] for n in nodes
         if any(c.get("type") == "Ready" and c.get("status") == "True" for c in (n.get("status") or {}).get("conditions") or [])}
lines = []
for pod in json.load(sys.stdin).get("items") or []:
    meta, node = pod["metadata"], (pod.get("spec") or {}).get("nodeName") or ""
    if not node or (meta.get("labels") or {}).get("controller-revision-hash") == current:
        continue
    state = "going" if meta.get("deletionTimestamp") else "replace" if node in ready else "down"
    lines.append((node == holder, node, meta["name"], state))
for _, node, name, state in sorted(lines):
    print(node, name, state)
"""

# Whether a Ready pod of the current revision runs on the Node argv[2] (hash argv[1]), from `kubectl get pods -o json`.
READY_SCRIPT = r"""import json, sys
current, node = sys.argv[1], sys.argv[2]
for pod in json.load(sys.stdin).get("items") or []:
    meta = pod["metadata"]
    if (pod.get("spec") or {}).get("nodeName") != node or meta.get("deletionTimestamp"):
        continue
    if (meta.get("labels") or {}).get("controller-revision-hash") != current:
        continue
    if any(c.get("type") == "Ready" and c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions") or []):
        sys.exit(0)
sys.exit(1)
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


def roll_script(kubectl: str = f"sudo {KUBECTL}", pod_seconds: int = POD_SECONDS, observed_seconds: int = OBSERVED_SECONDS) -> str:
    """Run over SSH on a valar (the one holding the API VIP) after the DaemonSet's update: replace each kube-vip pod of
    an older template, the holder of the service address last, each new one Ready within `pod_seconds` before the next."""
    look = f"look with: sudo k3s kubectl -n {DAEMONSET_NAMESPACE} get pods -l {SELECTOR} -o wide"
    return f"""set -eu
# iluvatar: kube-vip-services rolled one Pi at a time, the one holding the service address last (plans.netboot.vip_roll).
kc() {{ {kubectl} "$@"; }}
fail() {{ echo "iluvatar: $1; {look}" >&2; exit 1; }}
end=$(( $(date +%s) + {observed_seconds} ))
until seen=$(kc -n {DAEMONSET_NAMESPACE} get daemonset {DAEMONSET} -o jsonpath='{{.status.observedGeneration}} {{.metadata.generation}}') && [ "${{seen% *}}" = "${{seen#* }}" ]; do
  [ "$(date +%s)" -lt "$end" ] || fail "the DaemonSet controller has not seen kube-vip-services' template within {observed_seconds} s (observed and current generation: ${{seen:-none}})"
  sleep 1
done
current=$(kc -n {DAEMONSET_NAMESPACE} get controllerrevisions -l {SELECTOR} -o jsonpath='{{range .items[*]}}{{.revision}} {{.metadata.labels.controller-revision-hash}}{{"\\n"}}{{end}}' | sort -n | tail -n 1 | cut -d' ' -f2)
[ -n "$current" ] || fail "kube-vip-services has no revision recorded, so which pods run an older template is not known"
holder=$(kc -n {NAMESPACE} get lease {LEASE} --ignore-not-found -o jsonpath='{{.spec.holderIdentity}}') || fail "the service address's Lease cannot be read"
nodes=$(mktemp)
trap 'rm -f "$nodes"' EXIT
kc get nodes -o json > "$nodes" || fail "the Nodes cannot be read"
plan=$(kc -n {DAEMONSET_NAMESPACE} get pods -l {SELECTOR} -o json | python3 -c {shlex.quote(PLAN_SCRIPT)} "$current" "${{holder:-}}" "$nodes") || fail "kube-vip's pods cannot be read"
down=""
while read -r node pod state; do
  [ -n "$node" ] || continue
  case "$state" in
    down) down="$down $node"; continue ;;
    replace)
      what=$([ "$node" = "${{holder:-}}" ] && echo "it holds the service address, so it goes last: the household's DNS is away until its new kube-vip wins the released lease" || echo "it does not hold the service address")
      echo "iluvatar: kube-vip on $node runs an older template: its pod $pod is replaced ($what)" >&2
      kc -n {DAEMONSET_NAMESPACE} delete pod "$pod" --wait=false >/dev/null || fail "kube-vip's pod $pod on $node could not be deleted" ;;
  esac
  end=$(( $(date +%s) + {pod_seconds} ))
  until kc -n {DAEMONSET_NAMESPACE} get pods -l {SELECTOR} -o json | python3 -c {shlex.quote(READY_SCRIPT)} "$current" "$node"; do
    [ "$(date +%s)" -lt "$end" ] || fail "kube-vip's new pod on $node was not Ready within {pod_seconds} s"
    sleep 1
  done
  echo "iluvatar: kube-vip on $node runs the new template" >&2
done <<EOF
$plan
EOF
[ -z "$down" ] || fail "kube-vip on$down keeps its older template: the Node is not Ready, so its pod is left as it is; once it is back, pulumi up again replaces it"
"""
