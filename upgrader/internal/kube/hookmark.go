package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/iluvatar/upgrader/internal/wait"
)

// The after hooks a disruption of a node still owes are kept in one ConfigMap, a key per node (its name),
// NAMESPACE/NAME of each Job, comma-separated. A node's entry is written before the first before hook runs
// and removed only once every after hook completed, so a run that fails or is killed anywhere in between (a
// before hook running, cordoned, draining, rebooting, back, an after hook running) leaves it, and the next
// run of the node's step runs them: Ceph's noout is cluster-wide, and left set it would let the next Ceph
// host go down while the data is still degraded.
//
// Not on the Node object: a Node goes with the machine's disk (a reflashed control plane's apply deletes its
// old Node before the hand-over, a reset's delete removes it, a renamed machine registers a new one), and a
// mark on it went with it, leaving noout set for good. The ConfigMap outlives every Node.
const (
	OwedNamespace = "kube-system"
	OwedConfigMap = "iluvatar-after-hooks"
)

// OwedLook is how a person sees the after hooks the nodes are owed.
func OwedLook() string {
	return fmt.Sprintf("kubectl -n %s get configmap %s -o yaml; kubectl get jobs -A", OwedNamespace, OwedConfigMap)
}

// OwedForget is how a person removes a node's entry, once they did by hand what its hooks do.
func OwedForget(node string) string {
	return fmt.Sprintf(`kubectl -n %s patch configmap %s --type=json -p '[{"op":"remove","path":"/data/%s"}]'`, OwedNamespace, OwedConfigMap, node)
}

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

// OwedAfterHooks are the after hooks a disruption of the node still owes.
func (k *Client) OwedAfterHooks(ctx context.Context, node string) ([]string, error) {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	cm, err := k.cs.CoreV1().ConfigMaps(OwedNamespace).Get(ctx, OwedConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}

	if err != nil {
		return nil, err
	}

	return ParseAfterHooks(cm.Data[node]), nil
}

// MarkAfterHooks adds jobs to the node's entry (an earlier run's owed hooks stay named).
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

	return k.setOwed(ctx, node, &mark)
}

// ClearAfterHooks removes the node's entry: every hook it named completed.
func (k *Client) ClearAfterHooks(ctx context.Context, node string) error {
	return k.setOwed(ctx, node, nil)
}

// setOwed sets the node's entry, or removes it (nil: a merge patch's null), making the ConfigMap when it
// is not there yet. A merge patch of one key leaves the other nodes' entries alone.
func (k *Client) setOwed(ctx context.Context, node string, mark *string) error {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	cms := k.cs.CoreV1().ConfigMaps(OwedNamespace)

	body, err := json.Marshal(map[string]any{"data": map[string]any{node: mark}})
	if err != nil {
		return err
	}

	for range 3 {
		_, err = cms.Patch(ctx, OwedConfigMap, types.MergePatchType, body, metav1.PatchOptions{FieldManager: "iluvatar-upgrader"})
		if !apierrors.IsNotFound(err) {
			return err
		}

		if mark == nil {
			return nil // nothing owed anywhere
		}

		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: OwedConfigMap, Namespace: OwedNamespace}, Data: map[string]string{node: *mark}}

		_, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: "iluvatar-upgrader"})
		if !apierrors.IsAlreadyExists(err) {
			return err
		}
		// made meanwhile (another node's step): patch it
	}

	return err
}

// Left is a node an earlier run left down or owing, and why.
type Left struct {
	Node string
	Why  string
}

// LeftDrained lists the nodes an earlier run left down or owing: a Node the upgrader cordoned and never
// uncordoned (its mark), or a node whose disruption still owes its after hooks (Ceph's noout set, Argo CD
// paused). A stopped run leaves them so on purpose (the machine's next boot brings a change), and taking a
// second machine down beside one would put two Ceph hosts' OSDs down at once, and its after hooks would unset
// noout, cluster-wide, while the first is still down. Sorted by node; except is left out.
func (k *Client) LeftDrained(ctx context.Context, except string) ([]Left, error) {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	found := map[string][]string{}

	nodes, err := k.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}

	for _, n := range nodes.Items {
		if n.Name != except && n.Annotations[cordonedAnnotation] == "true" {
			found[n.Name] = append(found[n.Name], "cordoned by the upgrader")
		}
	}

	cm, err := k.cs.CoreV1().ConfigMaps(OwedNamespace).Get(ctx, OwedConfigMap, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}

	if err == nil {
		for name, mark := range cm.Data {
			if name != except && len(ParseAfterHooks(mark)) > 0 {
				found[name] = append(found[name], "owes its after hooks ("+mark+")")
			}
		}
	}

	out := make([]Left, 0, len(found))
	for _, name := range slices.Sorted(maps.Keys(found)) {
		out = append(out, Left{Node: name, Why: strings.Join(found[name], ", ")})
	}

	return out, nil
}
