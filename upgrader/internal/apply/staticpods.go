package apply

import (
	"context"

	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"

	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/staticpods"
)

// A control plane's health after a change must see the new static pods, not the old ones, and each of
// them running: the wait is staticpods.Watch (what Talos serves, what the kubelet runs, the node's own
// API server ready).

// watch is the node's static pod watch, made at its first use (after a reboot: anew, nothing pending).
func (r *applyRun) watch() *staticpods.Watch {
	if r.pods == nil {
		r.pods = staticpods.Now(r.c, r.kube, r.n.Name, r.n.IP, r.stable)
	}

	r.pods.Use(r.c, r.kube, r.n.IP) // the node may have moved, its client been made anew

	return r.pods
}

// noteChanging reads, before a change Talos applies without a reboot, the pods Talos serves and which
// of them the change renders anew: Talos renders them after the apply returns, so the pods read just
// after may still be the old ones (talosctl waits for the resource's Updated event,
// talos_managed.go:334-345).
func (r *applyRun) noteChanging(ctx context.Context, active coreconfig.Provider) error {
	if err := r.watch().Before(ctx, active, r.cfg); err != nil {
		return report.From(r.n.Name, "static-pods", "", err)
	}

	return nil
}

// podsHealthy is one look at the control plane's pods (staticpods.Watch.Check).
func (r *applyRun) podsHealthy(ctx context.Context) error {
	return r.watch().Check(ctx, r.cfg)
}
