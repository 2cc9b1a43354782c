// Health: the node and its Kubernetes part healthy again, and what an earlier run left to finish.

package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/talos"
	"github.com/iluvatar/upgrader/internal/wait"
)

// healthy waits until the node is what a finished step leaves: Talos running and ready, its etcd
// member started and healthy with no alarm, and (with Kubernetes) its Node Ready, running the
// kubelet and control plane images its config names.
func (r *applyRun) healthy(ctx context.Context) error {
	images := k8sImages(r.cfg, r.controlPlane())
	said := ""

	err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		err := r.healthOnce(ctx, images)
		if err != nil {
			var c *report.Check
			if errors.As(err, &c) && c.Name != said {
				report.Progress(r.n.Name, "waiting: %s: %s", c.Name, c.Err)

				said = c.Name
			}
		}

		return err
	})
	if err != nil {
		return report.From(r.n.Name, "health", r.talosLook("get machinestatus"), err)
	}

	if r.etcdBefore != "" && r.etcdNow != "" && r.etcdNow != r.etcdBefore {
		// Its upgrade moved its etcd (Talos runs its own default: talos.EtcdVersions): each member's version at this
		// check, the mixed period of a roll across etcd minors seen one member at a time.
		report.Progress(r.n.Name, "its etcd moved from %s to %s; members: %s", r.etcdBefore, r.etcdNow, r.etcdSeen)
	}

	report.Progress(r.n.Name, "healthy")

	return nil
}

func (r *applyRun) healthOnce(ctx context.Context, images map[string]string) error {
	ms, err := talos.MachineStatus(ctx, r.c)
	if err != nil {
		return report.Checkf("machine-status", r.talosLook("get machinestatus"), "%s", talos.Message(err))
	}

	if _, err := r.machineReady(ctx, ms); err != nil {
		return err
	}

	if !r.bootstrapped {
		return nil
	}

	if r.controlPlane() {
		members, versions, err := r.t.EtcdVersions(ctx, r.n, r.c)
		if err != nil {
			return report.Checkf("etcd", talos.EtcdLook(r.n), "%s", err)
		}

		r.etcdSeen, r.etcdNow = strings.Join(talos.MemberVersions(members, versions), ", "), versions[r.n.Name]

		found := false
		for _, m := range members {
			found = found || m.GetHostname() == r.n.Name
		}

		if !found {
			return report.Checkf("etcd", talos.EtcdLook(r.n), "%s is not an etcd member (members: %s)", r.n.Name, strings.Join(talos.MemberNames(members), ", "))
		}
	}

	if r.kube == nil {
		return nil
	}

	if err := r.nodeCheck(ctx); err != nil {
		return err
	}

	if want := kube.TagOf(images["kubelet"]); want != "" {
		got, err := r.kube.KubeletVersion(ctx, r.n.Name)
		if err != nil {
			return report.Checkf("kubelet", kube.NodeLook(r.n.Name), "%s", report.FirstLine(err))
		}

		if got != want {
			return report.Checkf("kubelet", kube.NodeLook(r.n.Name), "the kubelet reports %s, the config names %s", got, want)
		}
	}

	if r.controlPlane() {
		if err := r.podsHealthy(ctx); err != nil {
			return err
		}
	}

	return nil
}

// uncordonLeft uncordons the Node an earlier, interrupted run left cordoned (it failed, or was stopped,
// after the reboot).
func (r *applyRun) uncordonLeft(ctx context.Context) error {
	left, err := r.kube.LeftCordoned(ctx, r.n.Name)
	if err != nil {
		return &report.Failure{Node: r.n.Name, Check: "uncordon", Detail: report.FirstLine(err), Look: kube.NodeLook(r.n.Name)}
	}

	if left {
		if err := r.kube.Cordon(ctx, r.n.Name, false); err != nil {
			return &report.Failure{Node: r.n.Name, Check: "uncordon", Detail: report.FirstLine(err), Look: kube.NodeLook(r.n.Name)}
		}

		report.Progress(r.n.Name, "uncordoned (an earlier run left it cordoned)")
	}

	return nil
}

// resumeLeftovers uncordons the Node, runs the after hooks owed, and restores the workloads an earlier,
// interrupted run left cordoned, owed and paused (the first two are done already when runOwedHooks ran).
func (r *applyRun) resumeLeftovers(ctx context.Context) error {
	if r.kube == nil {
		return nil
	}

	if err := r.uncordonLeft(ctx); err != nil {
		return err
	}

	if err := r.runAfterHooks(ctx, false); err != nil {
		return err
	}

	for _, w := range r.pauses {
		if err := r.kube.Resume(ctx, r.n.Name, w); err != nil {
			return &report.Failure{Node: r.n.Name, Check: "resume", Detail: fmt.Sprintf("%s: %s", w, report.FirstLine(err)), Look: fmt.Sprintf("kubectl -n %s get %s %s -o yaml", w.Namespace, strings.ToLower(w.Kind), w.Name)}
		}
	}

	return nil
}
