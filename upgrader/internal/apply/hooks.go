package apply

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/report"
)

// afterHookRefs are this run's after hooks as the Node's mark names them.
func (r *applyRun) afterHookRefs() []string {
	refs := make([]string, 0, len(r.secrets.After))
	for _, job := range r.secrets.After {
		refs = append(refs, kube.JobRef(job))
	}

	return refs
}

// markAfterHooks writes on the Node the after hooks a disruption will owe, before the first before
// hook runs (a run killed while it runs may have set Ceph's noout already): none when it has no
// before hooks (then it runs no after hook either).
func (r *applyRun) markAfterHooks(ctx context.Context) ([]string, error) {
	owed := r.afterHookRefs()
	if len(r.secrets.Before) == 0 || len(owed) == 0 {
		return nil, nil
	}

	if err := r.kube.MarkAfterHooks(ctx, r.n.Name, owed); err != nil {
		return nil, &report.Failure{
			Node:   r.n.Name,
			Check:  "hook",
			Detail: fmt.Sprintf("the Node cannot be marked with the after hooks it will owe (%s), so no hook ran and nothing changed: %s", strings.Join(owed, ", "), report.FirstLine(err)),
			Look:   kube.NodeLook(r.n.Name),
		}
	}

	return owed, nil
}

// owedLook is how a person sees the after hooks a Node is owed.
func owedLook(node string) string {
	return fmt.Sprintf("kubectl get node %s -o jsonpath='{.metadata.annotations.%s}'; kubectl get jobs -A",
		node, strings.ReplaceAll(kube.AfterHooksAnnotation, ".", `\.`))
}

// owedNote says which after hooks are still owed, and who runs them.
func owedNote(refs []string) string {
	return fmt.Sprintf("the after hooks are still owed: Job %s, named in the Node's %s annotation; the next run of this step runs them",
		strings.Join(refs, ", Job "), kube.AfterHooksAnnotation)
}

// runAfterHooks runs the after hooks the Node is owed, then removes its mark: this disruption's own
// (ours: its before hooks ran), and any an earlier run that failed or was killed left named on the
// Node. An owed hook this run has no Job for (the hooks changed since) is a failure that names it:
// a person runs it, then removes the mark; carrying on would let the next host go down with noout
// still set.
func (r *applyRun) runAfterHooks(ctx context.Context, ours bool) error {
	n := r.n

	owed, err := r.kube.OwedAfterHooks(ctx, n.Name)
	if err != nil {
		return &report.Failure{Node: n.Name, Check: "hook", Detail: "the after hooks the Node is owed cannot be read: " + report.FirstLine(err), Look: owedLook(n.Name)}
	}

	if !ours && len(owed) == 0 {
		return nil
	}

	have := r.afterHookRefs()

	var missing []string

	for _, ref := range owed {
		if !slices.Contains(have, ref) {
			missing = append(missing, ref)
		}
	}

	if len(missing) > 0 {
		return &report.Failure{
			Node:  n.Name,
			Check: "hook",
			Detail: fmt.Sprintf("an earlier run of this step left after hooks owed that this run has no Job for: %s (the Node's %s annotation): "+
				"do by hand what they did (on a Ceph host: `ceph osd unset noout`, then wait until every placement group is active+clean), then remove the annotation",
				strings.Join(missing, ", "), kube.AfterHooksAnnotation),
			Look: fmt.Sprintf("%s; kubectl annotate node %s %s-", owedLook(n.Name), n.Name, kube.AfterHooksAnnotation),
		}
	}

	if !ours {
		report.Progress(n.Name, "an earlier run left after hooks owed (%s): running them", strings.Join(owed, ", "))
	}

	for _, job := range r.secrets.After {
		if !ours && !slices.Contains(owed, kube.JobRef(job)) {
			continue
		}

		if err := r.kube.RunJob(ctx, n.Name, job); err != nil {
			f := report.From(n.Name, "hook", "kubectl get jobs -A", report.Wrap("hook", "kubectl get jobs -A", err))
			if len(owed) > 0 {
				f.Detail += " (" + owedNote(owed) + ")"
			}

			return f
		}
	}

	if len(owed) == 0 {
		return nil
	}

	if err := r.kube.ClearAfterHooks(ctx, n.Name); err != nil {
		return &report.Failure{Node: n.Name, Check: "hook", Detail: "the after hooks ran, but the Node's mark cannot be removed (the next run runs them again): " + report.FirstLine(err), Look: owedLook(n.Name)}
	}

	return nil
}
