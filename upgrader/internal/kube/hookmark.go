package kube

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// AfterHooksAnnotation names, on a Node, the after hooks a disruption of it still owes (NAMESPACE/NAME
// of each Job, comma-separated). It is written before the first before hook runs and removed only
// once every after hook completed, so a run that fails or is killed anywhere in between (a before
// hook running, cordoned, draining, rebooting, back, an after hook running) leaves it, and the next
// run of the node's step runs them: Ceph's noout is cluster-wide, and left set it would let the
// next Ceph host go down while the data is still degraded.
const AfterHooksAnnotation = "iluvatar.dev/after-hooks"

// JobRef is how the mark names a hook Job: NAMESPACE/NAME (an empty namespace is RunJob's default).
func JobRef(job batchv1.Job) string {
	ns := job.Namespace
	if ns == "" {
		ns = "default"
	}

	return ns + "/" + job.Name
}

// ParseAfterHooks is the Jobs a mark names (none for an empty or absent one).
func ParseAfterHooks(mark string) []string {
	var refs []string

	for _, ref := range strings.Split(mark, ",") {
		if ref = strings.TrimSpace(ref); ref != "" && !slices.Contains(refs, ref) {
			refs = append(refs, ref)
		}
	}

	return refs
}

// OwedAfterHooks are the after hooks the Node's mark says a disruption still owes.
func (k *Client) OwedAfterHooks(ctx context.Context, node string) ([]string, error) {
	n, err := k.cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}

	return ParseAfterHooks(n.Annotations[AfterHooksAnnotation]), nil
}

// MarkAfterHooks adds jobs to the Node's mark (an earlier run's owed hooks stay named).
func (k *Client) MarkAfterHooks(ctx context.Context, node string, jobs []string) error {
	owed, err := k.OwedAfterHooks(ctx, node)
	if err != nil {
		return err
	}

	for _, j := range jobs {
		if !slices.Contains(owed, j) {
			owed = append(owed, j)
		}
	}

	mark := strings.Join(owed, ",")

	return k.annotateNode(ctx, node, &mark)
}

// ClearAfterHooks removes the mark: every hook it named completed.
func (k *Client) ClearAfterHooks(ctx context.Context, node string) error {
	return k.annotateNode(ctx, node, nil)
}

// annotateNode sets the mark, or removes it (nil: a merge patch's null).
func (k *Client) annotateNode(ctx context.Context, node string, mark *string) error {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{AfterHooksAnnotation: mark}}})
	if err != nil {
		return err
	}

	_, err = k.cs.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, body, metav1.PatchOptions{FieldManager: "iluvatar-upgrader"})

	return err
}
