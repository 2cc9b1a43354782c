package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/report"
)

// afterHookRefs are this run's after hooks as the mark names them.
func (r *applyRun) afterHookRefs() []string {
	refs := make([]string, 0, len(r.secrets.After))
	for _, job := range r.secrets.After {
		refs = append(refs, kube.JobRef(job))
	}

	return refs
}

// owedNames are the names the node's owed hooks may be kept under: its own, and the one it had when this
// step last reached it (a renamed machine keeps its step; what its old name was owed is its own).
func (r *applyRun) owedNames() []string {
	names := []string{r.n.Name}
	if r.rec != nil && r.rec.Node != "" && r.rec.Node != r.n.Name {
		names = append(names, r.rec.Node)
	}

	return names
}

// owed reads the after hooks owed under every name of the node.
func (r *applyRun) owed(ctx context.Context) ([]string, error) {
	return r.owedWith(ctx, r.kube)
}

func (r *applyRun) owedWith(ctx context.Context, k *kube.Client) ([]string, error) {
	var all []string

	for _, name := range r.owedNames() {
		refs, err := k.OwedAfterHooks(ctx, name)
		if err != nil {
			return nil, err
		}

		for _, ref := range refs {
			if !slices.Contains(all, ref) {
				all = append(all, ref)
			}
		}
	}

	return all, nil
}

// markAfterHooks writes the after hooks a disruption will owe, before the first before hook runs (a run
// killed while it runs may have set Ceph's noout already): none when it has no before hooks (then it runs
// no after hook either).
func (r *applyRun) markAfterHooks(ctx context.Context) ([]string, error) {
	owed := r.afterHookRefs()
	if len(r.secrets.Before) == 0 || len(owed) == 0 {
		return nil, nil
	}

	if err := r.kube.MarkAfterHooks(ctx, r.n.Name, owed); err != nil {
		return nil, &report.Failure{
			Node:   r.n.Name,
			Check:  "hook",
			Detail: fmt.Sprintf("the after hooks it will owe (%s) cannot be written down, so no hook ran and nothing changed: %s", strings.Join(owed, ", "), report.FirstLine(err)),
			Look:   kube.OwedLook(),
		}
	}

	return owed, nil
}

// owedNote says which after hooks are still owed, and who runs them.
func owedNote(node string, refs []string) string {
	return fmt.Sprintf("the after hooks are still owed: Job %s, kept in ConfigMap %s/%s under %s; the next run of this step runs them",
		strings.Join(refs, ", Job "), kube.OwedNamespace, kube.OwedConfigMap, node)
}

// noteBound bounds reading what is owed for a failure's note (the step's own bound may be spent).
const noteBound = 5 * time.Second

// noteOwed adds to a failure the after hooks the node is still owed, so that no failure leaves noout set without
// saying so: read afresh, through the step's Kubernetes client, or one from the kubeconfig the control planes
// hand out when the step failed before it had one (the machine did not answer, say).
func (r *applyRun) noteOwed(err error) error {
	var f *report.Failure
	if r.noKube || r.t == nil || !errors.As(err, &f) || strings.Contains(f.Detail, kube.OwedConfigMap) {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), noteBound)
	defer cancel()

	k := r.kube
	if k == nil {
		text := r.secrets.Kubeconfig
		if text == "" {
			text, _ = r.t.FetchKubeconfig(ctx, r.n, false) //nolint:errcheck // a note on a failure
		}

		if k, _ = kube.New(text, ""); k == nil { //nolint:errcheck
			return err
		}
	}

	if owed, _ := r.owedWith(ctx, k); len(owed) > 0 { //nolint:errcheck // a note on a failure
		f.Detail += " (" + owedNote(r.n.Name, owed) + ")"
	}

	return err
}

// runOwedHooks runs, right after the machine is back, the after hooks an earlier run left owed, before any
// health check that may fail and stop the step (noout left set would outlast it). The Node an earlier run left
// cordoned is uncordoned first, as a disruption's own undo does: a hook's pod needs a node to run on, and a
// cluster of one machine has no other (a Node that is not Ready is tainted not-ready, and takes no pod either).
func (r *applyRun) runOwedHooks(ctx context.Context) error {
	if r.kube == nil {
		return nil
	}

	if err := r.uncordonLeft(ctx); err != nil {
		return err
	}

	return r.runAfterHooks(ctx, false)
}

// runAfterHooks runs the after hooks the node is owed, then removes its entry: this disruption's own (ours:
// its before hooks ran), and any an earlier run that failed or was killed left owed. First every before hook
// is stopped (kube.StopJob): one still pending could otherwise set noout after the after hook unset it. An
// owed hook this run has no Job for (the hooks changed since) is a failure that names it: a person runs it,
// then removes the entry; carrying on would let the next host go down with noout still set.
func (r *applyRun) runAfterHooks(ctx context.Context, ours bool) error {
	n := r.n

	owed, err := r.owed(ctx)
	if err != nil {
		return &report.Failure{Node: n.Name, Check: "hook", Detail: "the after hooks the node is owed cannot be read: " + report.FirstLine(err), Look: kube.OwedLook()}
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
			Detail: fmt.Sprintf("an earlier run of this step left after hooks owed that this run has no Job for: %s (ConfigMap %s/%s, under %s): "+
				"do by hand what they did (on a Ceph host: `ceph osd unset noout`, then wait until every placement group is active+clean), then remove the entry",
				strings.Join(missing, ", "), kube.OwedNamespace, kube.OwedConfigMap, strings.Join(r.owedNames(), " or ")),
			Look: fmt.Sprintf("%s; %s", kube.OwedLook(), kube.OwedForget(n.Name)),
		}
	}

	if !ours {
		report.Progress(n.Name, "an earlier run left after hooks owed (%s): running them", strings.Join(owed, ", "))
	}

	for _, job := range r.secrets.Before {
		if err := r.kube.StopJob(ctx, n.Name, job); err != nil {
			return r.hookFailure(err, owed)
		}
	}

	for _, job := range r.secrets.After {
		if !ours && !slices.Contains(owed, kube.JobRef(job)) {
			continue
		}

		if err := r.kube.RunJob(ctx, n.Name, job); err != nil {
			return r.hookFailure(err, owed)
		}
	}

	for _, name := range r.owedNames() {
		if err := r.kube.ClearAfterHooks(ctx, name); err != nil {
			return &report.Failure{Node: n.Name, Check: "hook", Detail: "the after hooks ran, but their entry cannot be removed (the next run runs them again): " + report.FirstLine(err), Look: kube.OwedLook()}
		}
	}

	return nil
}

func (r *applyRun) hookFailure(err error, owed []string) error {
	f := report.From(r.n.Name, "hook", "kubectl get jobs -A", report.Wrap("hook", "kubectl get jobs -A", err))
	if len(owed) > 0 {
		f.Detail += " (" + owedNote(r.n.Name, owed) + ")"
	}

	return f
}
