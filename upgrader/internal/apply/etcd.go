// etcd around a change: the snapshot before it, and the quorum checks before a control plane goes down.

package apply

import (
	"context"
	"strings"

	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/talos"
)

// memberID is the node's own etcd member ID (0 when it cannot be read).
func (r *applyRun) memberID(ctx context.Context) uint64 {
	if st, err := talos.EtcdStatus(ctx, r.c); err == nil && st.GetMemberId() != 0 {
		return st.GetMemberId()
	}

	members, err := talos.EtcdMembers(ctx, r.c)
	if err != nil {
		return 0
	}

	for _, m := range members {
		if m.GetHostname() == r.n.Name {
			return m.GetId()
		}
	}

	return 0
}

// takeSnapshot saves etcd to the operator's machine (a control plane of a bootstrapped cluster only).
func (r *applyRun) takeSnapshot(ctx context.Context) error {
	n := r.n

	if !r.controlPlane() || !r.bootstrapped {
		report.Progress(n.Name, "no etcd snapshot: %s", map[bool]string{true: "etcd is not bootstrapped yet", false: "not a control plane"}[r.controlPlane()])

		return nil
	}

	if err := talos.SaveSnapshot(ctx, r.c, r.snapshot); err != nil {
		return &report.Failure{Node: n.Name, Check: "etcd-snapshot", Detail: talos.Message(err), Look: r.talosLook("etcd snapshot " + r.snapshot)}
	}

	report.Progress(n.Name, "etcd snapshot saved to %s", r.snapshot)

	return nil
}

// etcdPreflight refuses to change a control plane unless etcd is healthy and, before taking it
// down, keeps its quorum without this member.
func (r *applyRun) etcdPreflight(ctx context.Context, down bool) error {
	n := r.n

	members, versions, err := r.t.EtcdVersions(ctx, n, r.c)
	if err != nil {
		return &report.Failure{Node: n.Name, Check: "etcd", Detail: "etcd is not healthy, so this control plane is left untouched: " + err.Error(), Look: talos.EtcdLook(n)}
	}

	r.etcdBefore = versions[n.Name]

	if !down {
		report.Progress(n.Name, "etcd healthy: %d members (%s)", len(members), strings.Join(talos.MemberVersions(members, versions), ", "))

		return nil
	}

	// A single member cannot keep quorum through anything: a one-control-plane cluster accepts
	// that its API pauses (Talos allows it too); two members lose quorum with either one down.
	switch len(members) {
	case 2:
		return &report.Failure{Node: n.Name, Check: "etcd", Detail: "etcd has 2 members: taking one down loses quorum (add a third control plane, or remove one)", Look: talos.EtcdLook(n)}
	case 1:
		report.Progress(n.Name, "etcd has a single member: the Kubernetes API pauses while this node is down")
	default:
		report.Progress(n.Name, "etcd healthy: %d members (%s), quorum kept without this one", len(members), strings.Join(talos.MemberVersions(members, versions), ", "))
	}

	return nil
}
