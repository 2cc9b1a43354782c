package reset

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/report"
)

// runOwed: a node that leaves the cluster takes its Node object and its apply step with it, but what a
// disruption of it still owes (Ceph's noout, set by a run that failed or was stopped) is the cluster's: left
// owed, nothing would ever run it. So it runs now, from stdin's hooks (Pulumi hands a delete its apply's stdin):
// the before hooks stopped first (kube.StopJob), then each owed after hook, then the entry removed. An owed
// hook stdin has no Job for fails the delete, naming it, before the Node goes: a person does what it does.
func runOwed(ctx context.Context, k *kube.Client, node string, s *input.Secrets) error {
	owed, err := k.OwedAfterHooks(ctx, node)
	if err != nil {
		return &report.Failure{Node: node, Check: "hook", Detail: "the after hooks it may still owe cannot be read, so it was not removed from Kubernetes: " + report.FirstLine(err), Look: kube.OwedLook()}
	}

	if len(owed) == 0 {
		return nil
	}

	var have, missing []string
	for _, job := range s.After {
		have = append(have, kube.JobRef(job))
	}

	for _, ref := range owed {
		if !slices.Contains(have, ref) {
			missing = append(missing, ref)
		}
	}

	if len(missing) > 0 {
		return &report.Failure{
			Node:  node,
			Check: "hook",
			Detail: fmt.Sprintf("a disruption of it left after hooks owed that this delete has no Job for: %s (ConfigMap %s/%s, under %s): "+
				"do by hand what they did (on a Ceph host: `ceph osd unset noout`), then remove the entry and run the delete again",
				strings.Join(missing, ", "), kube.OwedNamespace, kube.OwedConfigMap, node),
			Look: fmt.Sprintf("%s; %s", kube.OwedLook(), kube.OwedForget(node)),
		}
	}

	report.Progress(node, "a disruption of it left after hooks owed (%s): running them before it leaves", strings.Join(owed, ", "))

	fail := func(err error) error {
		f := report.From(node, "hook", "kubectl get jobs -A", report.Wrap("hook", "kubectl get jobs -A", err))
		f.Detail += fmt.Sprintf(" (still owed: Job %s, kept in ConfigMap %s/%s under %s; the delete runs them again)", strings.Join(owed, ", Job "), kube.OwedNamespace, kube.OwedConfigMap, node)

		return f
	}

	for _, job := range s.Before {
		if err := k.StopJob(ctx, node, job); err != nil {
			return fail(err)
		}
	}

	for _, job := range s.After {
		if slices.Contains(owed, kube.JobRef(job)) {
			if err := k.RunJob(ctx, node, job); err != nil {
				return fail(err)
			}
		}
	}

	if err := k.ClearAfterHooks(ctx, node); err != nil {
		return &report.Failure{Node: node, Check: "hook", Detail: "its after hooks ran, but their entry cannot be removed: " + report.FirstLine(err), Look: kube.OwedLook()}
	}

	return nil
}

// noEtcdYet: every one of the control planes holds no etcd data (talos.AskEtcdOf), so etcd was never
// bootstrapped; one that cannot be told counts as holding some.
func (r *resetRun) noEtcdYet(ctx context.Context, cps []input.Node) bool {
	for _, cp := range cps {
		if !r.t.AskEtcdOf(ctx, cp).Empty {
			return false
		}
	}

	return true
}
