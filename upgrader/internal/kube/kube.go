// Package kube is Kubernetes as the upgrader uses it (client-go and kubectl's drain): Node
// readiness, the control plane's static pods, cordon and drain, paused workloads, hook Jobs, and
// the commands that are Kubernetes alone (wait-kube's gates, kubernetes-preflight).
package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/client"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kubectl/pkg/drain"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/talos"
	"github.com/iluvatar/upgrader/internal/wait"
)

// Client is a Kubernetes client from a kubeconfig (stdin, or fetched through the Talos API).
type Client struct {
	rest *rest.Config
	cs   kubernetes.Interface

	mu sync.Mutex
	at map[string]*kubernetes.Clientset // by https://IP:PORT, for ReadyzAt
}

// New reads a kubeconfig; server, when given, replaces its API address (the VIP endpoint).
func New(kubeconfig, server string) (*Client, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(kubeconfig))
	if err != nil {
		return nil, fmt.Errorf("the kubeconfig is not usable: %s", report.FirstLine(err))
	}

	if server != "" {
		cfg.Host = server
	}

	cfg.Timeout = wait.CallTimeout
	// A drain evicts many pods; client-go's default 5 requests a second would make it slow.
	cfg.QPS, cfg.Burst = 50, 100
	cfg.WarningHandler = rest.NoWarnings{}

	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}

	return &Client{rest: cfg, cs: cs}, nil
}

// NodeLook is how a person looks at a Node.
func NodeLook(name string) string {
	return fmt.Sprintf("kubectl get node %s -o wide; kubectl describe node %s", name, name)
}

// NodeReady: the Node's Ready condition is True.
func (k *Client) NodeReady(ctx context.Context, name string) error {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	node, err := k.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}

	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return nil
			}

			return fmt.Errorf("Node %s is not Ready (%s: %s)", name, c.Reason, c.Message)
		}
	}

	return fmt.Errorf("Node %s reports no Ready condition", name)
}

// KubeletVersion is what the Node's kubelet reports.
func (k *Client) KubeletVersion(ctx context.Context, name string) (string, error) {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	node, err := k.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}

	return node.Status.NodeInfo.KubeletVersion, nil
}

// controlPlaneApps are Talos's static pods on a control plane (the k8s-app label they carry).
var controlPlaneApps = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// PodWant is what a control plane component's pod must be: "" and nil check nothing.
type PodWant struct {
	Image string
	// Annotations are the talos.dev/* annotations of the pod Talos serves now: the mirror pod carries
	// them once the kubelet runs that pod (its pod hash covers them all).
	Annotations map[string]string
	// Since: the container must have started at or after it (the node's boot: a mirror pod left from
	// the boot before keeps that boot's status until the kubelet of this one reports).
	Since time.Time
	// Stable: the container must have run this long since it last started (0: Ready is enough).
	Stable time.Duration
}

// StaticPods checks each control plane component's pod on the node: present and Ready, and as want
// says for those it names (nil: all three, as they are; a component want leaves out is not checked).
func (k *Client) StaticPods(ctx context.Context, node string, want map[string]PodWant) error {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	pods, err := k.cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{
		LabelSelector: "k8s-app in (kube-apiserver,kube-controller-manager,kube-scheduler)",
		FieldSelector: "spec.nodeName=" + node,
	})
	if err != nil {
		return err
	}

	for _, app := range controlPlaneApps {
		w, named := want[app]
		if want != nil && !named {
			continue
		}

		if err := checkStaticPod(pods.Items, node, app, w, time.Now()); err != nil {
			return err
		}
	}

	return nil
}

// checkStaticPod is talosctl upgrade-k8s's checkPodStatus (pkg/cluster/kubernetes/talos_managed.go:
// 584-666 at v1.13.0), made stricter: a pod whose talos.dev/* annotations are not the ones Talos
// serves is still the old one (waiting); else it must be Ready, and its container running since the
// boot and for want.Stable. Ready alone says little: Talos gives kube-apiserver no readiness probe
// (control_plane_static_pod.go:455-566 at v1.13.0), and the kubelet counts a container without one
// ready as soon as it runs (Kubernetes v1.34.1 pkg/kubelet/prober/prober_manager.go:298-306), so an API
// server that crash-loops shows Ready each time it starts. A pod on its way out (the old mirror pod being
// replaced) counts as absent.
func checkStaticPod(pods []corev1.Pod, node, app string, want PodWant, now time.Time) error {
	var found *corev1.Pod

	for i := range pods {
		if pods[i].Labels["k8s-app"] == app && pods[i].DeletionTimestamp == nil {
			found = &pods[i]
		}
	}

	if found == nil {
		return fmt.Errorf("no %s pod on %s", app, node)
	}

	keys := make([]string, 0, len(want.Annotations))
	for k := range want.Annotations {
		keys = append(keys, k)
	}

	sort.Strings(keys)

	for _, k := range keys {
		if got := found.Annotations[k]; got != want.Annotations[k] {
			return fmt.Errorf("%s carries %s %s, not %s (what Talos serves now): the kubelet has not run the new static pod yet",
				found.Name, k, orNone(got), want.Annotations[k])
		}
	}

	if want.Image != "" {
		if got := podImage(found, app); got != want.Image {
			return fmt.Errorf("%s runs %s, not %s", found.Name, got, want.Image)
		}
	}

	c := containerStatus(found, app)

	if !podReady(found) || c == nil || c.State.Running == nil {
		return fmt.Errorf("%s is not Ready (%s)", found.Name, containerState(found, c))
	}

	started := c.State.Running.StartedAt.Time

	if !want.Since.IsZero() && started.Before(want.Since) {
		return fmt.Errorf("%s reports a container started %s, before the node's boot (%s): the kubelet of this boot has not reported it yet",
			found.Name, started.UTC().Format(time.RFC3339), want.Since.UTC().Format(time.RFC3339))
	}

	// startedAt is in whole seconds (metav1.Time, RFC 3339), by the node's clock (Talos keeps it in time):
	// the run is known to within a second, which Stable (30 s) dwarfs.
	if ran := now.Sub(started); want.Stable > 0 && ran < want.Stable {
		return fmt.Errorf("%s has run %s since it last started (%s): it counts once it has run %s untouched",
			found.Name, ran.Truncate(100*time.Millisecond), restarts(c), want.Stable)
	}

	return nil
}

func restarts(c *corev1.ContainerStatus) string {
	if c.RestartCount == 1 {
		return "restarted once"
	}

	if c.RestartCount > 0 {
		return fmt.Sprintf("restarted %d times", c.RestartCount)
	}

	return "never restarted"
}

// containerState says why a pod's container is not running and ready: what the kubelet reports.
func containerState(p *corev1.Pod, c *corev1.ContainerStatus) string {
	if c == nil {
		return "phase " + string(p.Status.Phase)
	}

	switch {
	case c.State.Waiting != nil:
		return fmt.Sprintf("%s, %s", c.State.Waiting.Reason, restarts(c))
	case c.State.Terminated != nil:
		return fmt.Sprintf("terminated: %s, %s", c.State.Terminated.Reason, restarts(c))
	}

	return fmt.Sprintf("running, not ready, %s", restarts(c))
}

func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == name {
			return &p.Status.ContainerStatuses[i]
		}
	}

	if len(p.Status.ContainerStatuses) > 0 {
		return &p.Status.ContainerStatuses[0]
	}

	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}

	return s
}

func podImage(p *corev1.Pod, container string) string {
	for _, c := range p.Spec.Containers {
		if c.Name == container {
			return c.Image
		}
	}

	if len(p.Spec.Containers) > 0 {
		return p.Spec.Containers[0].Image
	}

	return ""
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}

	return false
}

// Readyz asks the API server (through whatever address the client dials) whether it is ready.
func (k *Client) Readyz(ctx context.Context) error {
	return readyz(ctx, k.cs)
}

// ReadyzAt asks one control plane's own API server, at its address and local port, whether it is
// ready: the endpoint (a VIP, a load balancer) answers from whichever API server it reaches. The
// certificate is checked for the endpoint's name, which Talos puts in every API server's certificate
// (secrets/kubernetes_cert_sans.go:123 at v1.13.0).
func (k *Client) ReadyzAt(ctx context.Context, ip string, port int) error {
	at := "https://" + net.JoinHostPort(ip, strconv.Itoa(port))

	k.mu.Lock()
	cs, ok := k.at[at]

	if !ok {
		cfg := rest.CopyConfig(k.rest)
		if u, err := url.Parse(cfg.Host); err == nil && cfg.TLSClientConfig.ServerName == "" {
			cfg.TLSClientConfig.ServerName = u.Hostname()
		}

		cfg.Host = at

		var err error
		if cs, err = kubernetes.NewForConfig(cfg); err != nil {
			k.mu.Unlock()

			return err
		}

		if k.at == nil {
			k.at = map[string]*kubernetes.Clientset{}
		}

		k.at[at] = cs
	}
	k.mu.Unlock()

	return readyz(ctx, cs)
}

func readyz(ctx context.Context, cs kubernetes.Interface) error {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("/readyz: %s", report.FirstLine(err))
	}

	if strings.TrimSpace(string(body)) != "ok" {
		return fmt.Errorf("/readyz answered %q", strings.TrimSpace(string(body)))
	}

	return nil
}

// drainer is kubectl's drain with talosctl's settings: evictions (which honour
// PodDisruptionBudgets, retried until the timeout), DaemonSets left, emptyDir data dropped.
func (k *Client) drainer(ctx context.Context, node string, timeout time.Duration) *drain.Helper {
	return &drain.Helper{
		Ctx:                 ctx,
		Client:              k.cs,
		Force:               true,
		GracePeriodSeconds:  -1,
		IgnoreAllDaemonSets: true,
		DeleteEmptyDirData:  true,
		Timeout:             timeout,
		Out:                 io.Discard,
		ErrOut:              io.Discard,
		OnPodDeletionOrEvictionFinished: func(pod *corev1.Pod, usingEviction bool, err error) {
			if err == nil {
				report.Progress(node, "drain: %s/%s evicted", pod.Namespace, pod.Name)
			}
		},
	}
}

// cordonedAnnotation marks a Node the upgrader cordoned, so a run that dies after the reboot (the
// Node left cordoned, as it says) is uncordoned by the next run of the node's step; a Node a person
// cordoned carries no mark and is left as it is.
const cordonedAnnotation = "iluvatar.dev/cordoned"

// Cordon cordons a Node and marks it ours, or uncordons it and removes the mark. The mark goes on
// before the cordon and comes off after the uncordon, so a run killed in between leaves a Node the
// next run uncordons, never one cordoned without the mark.
func (k *Client) Cordon(ctx context.Context, node string, on bool) error {
	if on {
		if err := k.markCordoned(ctx, node, "true"); err != nil {
			return err
		}
	}

	n, err := k.cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return err
	}

	if err := drain.RunCordonOrUncordon(k.drainer(ctx, node, wait.CallTimeout), n, on); err != nil {
		return err
	}

	if on {
		return nil
	}

	return k.markCordoned(ctx, node, nil)
}

// markCordoned sets the cordon mark, or removes it (nil: a merge patch's null).
func (k *Client) markCordoned(ctx context.Context, node string, mark any) error {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{cordonedAnnotation: mark}}})
	if err != nil {
		return err
	}

	_, err = k.cs.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, body, metav1.PatchOptions{FieldManager: "iluvatar-upgrader"})

	return err
}

// LeftCordoned says whether an earlier run cordoned the Node and never uncordoned it.
func (k *Client) LeftCordoned(ctx context.Context, node string) (bool, error) {
	n, err := k.cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return false, err
	}

	return n.Annotations[cordonedAnnotation] == "true", nil
}

// Drain evicts the Node's pods (kubectl's drain, bounded by timeout: what is left of the command's --timeout),
// saying once per pod why an eviction it retries was refused (refusalsSaid: a PodDisruptionBudget's).
//
// kubectl's drain ends its evictions on ctx's end with "global timeout reached: <timeout>" whatever ended
// it (k8s.io/kubectl v0.34.1 pkg/drain/drain.go:277 and 293-296: its own context.WithTimeout over ours): a
// drain ended by a signal says so instead, with the pods it was still evicting.
func (k *Client) Drain(ctx context.Context, node string, timeout time.Duration) error {
	d := k.drainer(ctx, node, timeout)
	d.Client = refusalsSaid(k.cs, func(namespace, pod, reason string) {
		report.Progress(node, "drain: %s/%s: eviction refused, retried every 5s: %s", namespace, pod, reason)
	})

	return drainEnded(ctx, drain.RunNodeDrain(d, node))
}

// kubectl's entries for a pod whose eviction ctx's end cut short: one still refused (a PodDisruptionBudget's
// 429, retried until then; drain.go:293-296), or whose eviction call was cut while it read the answer (client-go
// v0.34.1 rest/request.go:1197, "... Original error: context canceled", which drain.go writes with %v), and one
// accepted whose pod had not yet gone (waitForDelete ends with ctx's error, drain.go:340-357). All are quoted with
// %q; a pod's name and namespace hold no quote.
var (
	evictionCutShort = regexp.MustCompile(`^error when evicting pods/"([^"]+)" -n "([^"]+)": (global timeout reached: \S+|.*: context canceled)$`)
	deletionCutShort = regexp.MustCompile(`^error when waiting for pod "([^"]+)" in namespace "([^"]+)" to terminate: context canceled$`)
)

// drainEnded is the drain's error as the upgrader says it: stopped by ctx's cause (a signal), or kubectl's own
// (the command's --timeout, an API refusal).
//
// Stopped, kubectl's aggregated error (drain.go:362-376, one entry per pod that did not leave) is said as
// "stopped: SIGTERM (still evicting NS/POD, ...)", the pods sorted (the entries come in the order their
// goroutines ended); an entry that is not the stop's own (a webhook's refusal of one pod, say) is kept
// as kubectl wrote it, after it: the signal did not cause it.
func drainEnded(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}

	stopped := wait.StoppedBy(ctx)
	if stopped == nil {
		return err
	}

	entries := []error{err}

	var agg utilerrors.Aggregate
	if errors.As(err, &agg) {
		entries = agg.Errors()
	}

	var evicting, others []string

	for _, e := range entries {
		m := evictionCutShort.FindStringSubmatch(e.Error())
		if m == nil {
			m = deletionCutShort.FindStringSubmatch(e.Error())
		}

		switch {
		case m != nil:
			evicting = append(evicting, m[2]+"/"+m[1])
		case errors.Is(e, context.Canceled):
			// A call of the drain's own cut short by the stop (listing the node's pods, say): nothing of its own to say.
		default:
			others = append(others, e.Error())
		}
	}

	msg := fmt.Sprintf("stopped: %s", stopped)
	if len(evicting) > 0 {
		sort.Strings(evicting)
		msg += " (still evicting " + strings.Join(evicting, ", ") + ")"
	}

	for _, o := range others {
		msg += "; " + o
	}

	return errors.New(msg)
}

// PausedAnnotation keeps a paused workload's replicas on the workload itself, so a run that dies
// halfway leaves a trace and the next run restores them.
const PausedAnnotation = "iluvatar.dev/paused-replicas"

// Workload is one --pause KIND/NAMESPACE/NAME (Deployment or StatefulSet).
type Workload struct {
	Kind, Namespace, Name string
}

func (w Workload) String() string { return fmt.Sprintf("%s/%s/%s", w.Kind, w.Namespace, w.Name) }

// ParseWorkload is one --pause value.
func ParseWorkload(v string) (Workload, error) {
	parts := strings.Split(v, "/")
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		return Workload{}, fmt.Errorf("--pause %q is not KIND/NAMESPACE/NAME", v)
	}

	switch strings.ToLower(parts[0]) {
	case "deployment", "deployments", "deploy":
		parts[0] = "Deployment"
	case "statefulset", "statefulsets", "sts":
		parts[0] = "StatefulSet"
	default:
		return Workload{}, fmt.Errorf("--pause %q: only a Deployment or a StatefulSet can be paused", v)
	}

	return Workload{Kind: parts[0], Namespace: parts[1], Name: parts[2]}, nil
}

// scaleOf reads a workload's replicas and annotations.
func (k *Client) scaleOf(ctx context.Context, w Workload) (replicas int32, annotations map[string]string, ready int32, err error) {
	switch w.Kind {
	case "Deployment":
		d, err := k.cs.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return 0, nil, 0, err
		}

		return ptrOr(d.Spec.Replicas, 1), d.Annotations, d.Status.Replicas, nil
	default:
		s, err := k.cs.AppsV1().StatefulSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return 0, nil, 0, err
		}

		return ptrOr(s.Spec.Replicas, 1), s.Annotations, s.Status.Replicas, nil
	}
}

func ptrOr(p *int32, def int32) int32 {
	if p == nil {
		return def
	}

	return *p
}

// patch merges spec.replicas and the annotation in one request (a null annotation removes it).
func (k *Client) patch(ctx context.Context, w Workload, replicas int32, annotation *string) error {
	body, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{PausedAnnotation: annotation}},
		"spec":     map[string]any{"replicas": replicas},
	})
	if err != nil {
		return err
	}

	switch w.Kind {
	case "Deployment":
		_, err = k.cs.AppsV1().Deployments(w.Namespace).Patch(ctx, w.Name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: "iluvatar-upgrader"})
	default:
		_, err = k.cs.AppsV1().StatefulSets(w.Namespace).Patch(ctx, w.Name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: "iluvatar-upgrader"})
	}

	return err
}

// Pause scales a workload to 0, first writing its replicas down; a workload already carrying the
// annotation (an earlier run that died) keeps the replicas written then. It says whether it found the
// workload: one it found may carry the annotation now (even when it fails after), so it must be resumed.
//
// A workload whose namespace does not exist yet is not installed yet (the first `pulumi up` makes Argo CD's
// namespace and release after every machine's step that may drain a node): nothing to pause. One missing
// from a namespace that exists is a wrong name (a chart's values renamed it, or made it another kind), and
// a drain with it running is what pausing it prevents: refused, before the node is cordoned.
func (k *Client) Pause(ctx context.Context, node string, w Workload) (bool, error) {
	replicas, annotations, _, err := k.scaleOf(ctx, w)
	if apierrors.IsNotFound(err) {
		_, nsErr := k.cs.CoreV1().Namespaces().Get(ctx, w.Namespace, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(nsErr):
			report.Progress(node, "pause: %s is not installed yet (no namespace %s): nothing to pause", w, w.Namespace)

			return false, nil
		case nsErr != nil:
			return false, nsErr
		default:
			return false, fmt.Errorf("%s is not in namespace %s, which exists: the workload to pause is named wrongly (renamed, or another kind, by its chart's values?), and a drain with it running is what pausing it prevents; nothing was cordoned", w, w.Namespace)
		}
	}

	if err != nil {
		return false, err
	}

	saved, already := annotations[PausedAnnotation]
	if already {
		report.Progress(node, "pause: %s was paused by an earlier run (%s replicas to restore)", w, saved)
	} else {
		saved = strconv.Itoa(int(replicas))
		report.Progress(node, "pause: %s scaled from %d to 0", w, replicas)
	}

	if err := k.patch(ctx, w, 0, &saved); err != nil {
		return true, err
	}

	// Paused means stopped: wait until no pod of it runs.
	return true, wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		_, _, running, err := k.scaleOf(ctx, w)
		if err != nil {
			return err
		}

		if running > 0 {
			return fmt.Errorf("%s still has %d pods", w, running)
		}

		return nil
	})
}

// Resume restores a workload paused by this or an earlier run, and drops the annotation. A workload
// that does not exist (yet) is nothing to resume: no run paused it. Every machine step that starts
// after the bootstrap resumes what an earlier run may have left paused, and on the first `pulumi up`
// that is before Argo CD is installed.
func (k *Client) Resume(ctx context.Context, node string, w Workload) error {
	_, annotations, _, err := k.scaleOf(ctx, w)
	if apierrors.IsNotFound(err) {
		report.Progress(node, "resume: %s does not exist (yet): nothing to resume", w)

		return nil
	}

	if err != nil {
		return err
	}

	saved, ok := annotations[PausedAnnotation]
	if !ok {
		return nil
	}

	replicas, err := strconv.Atoi(saved)
	if err != nil {
		return fmt.Errorf("%s: annotation %s=%q is not a number", w, PausedAnnotation, saved)
	}

	if err := k.patch(ctx, w, int32(replicas), nil); err != nil {
		return err
	}

	report.Progress(node, "resume: %s scaled back to %d", w, replicas)

	return nil
}

// RunJob runs one hook Job (from stdin, input.Secrets.Before and After) to completion: an earlier
// run's Job of the same name is replaced.
func (k *Client) RunJob(ctx context.Context, node string, job batchv1.Job) error {
	if job.Namespace == "" {
		job.Namespace = "default"
	}

	jobs := k.cs.BatchV1().Jobs(job.Namespace)
	background := metav1.DeletePropagationBackground

	if err := jobs.Delete(ctx, job.Name, metav1.DeleteOptions{PropagationPolicy: &background}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}

	if err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		_, err := jobs.Get(ctx, job.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}

		if err == nil {
			return fmt.Errorf("the earlier Job %s/%s is still being deleted", job.Namespace, job.Name)
		}

		return err
	}); err != nil {
		return err
	}

	job.ResourceVersion = ""
	if _, err := jobs.Create(ctx, &job, metav1.CreateOptions{FieldManager: "iluvatar-upgrader"}); err != nil {
		return err
	}

	report.Progress(node, "hook: Job %s/%s started", job.Namespace, job.Name)

	return wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		got, err := jobs.Get(ctx, job.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}

		for _, c := range got.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				continue
			}

			switch c.Type { //nolint:exhaustive
			case batchv1.JobComplete:
				report.Progress(node, "hook: Job %s/%s completed", job.Namespace, job.Name)

				return nil
			case batchv1.JobFailed:
				return wait.Stop(fmt.Errorf("Job %s/%s failed: %s", job.Namespace, job.Name, c.Message))
			}
		}

		return fmt.Errorf("Job %s/%s has not completed", job.Namespace, job.Name)
	})
}

// From is the kubeconfig from stdin, else the admin kubeconfig a control plane hands out.
func From(ctx context.Context, s *input.Secrets, c *client.Client) (*Client, error) {
	text := s.Kubeconfig

	if text == "" {
		cctx, cancel := wait.Call(ctx)
		raw, err := c.Kubeconfig(cctx)

		cancel()

		if err != nil {
			return nil, fmt.Errorf("no kubeconfig on stdin, and the control plane hands none out: %s", talos.Message(err))
		}

		text = string(raw)
	}

	return New(text, "")
}

// DeleteNode deletes a node's Kubernetes Node object, retrying what the API answers while it is
// busy or unreachable (bounded by ctx); absent is success.
func DeleteNode(ctx context.Context, k *Client, name string) error {
	gone := false

	err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		cctx, cancel := wait.Call(ctx)
		defer cancel()

		err := k.cs.CoreV1().Nodes().Delete(cctx, name, metav1.DeleteOptions{})

		switch {
		case err == nil:
			return nil
		case apierrors.IsNotFound(err):
			gone = true

			return nil
		case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
			return wait.Stop(err)
		}

		return err
	})
	if err != nil {
		return err
	}

	if gone {
		report.Progress(name, "no Node %s in Kubernetes: nothing to delete", name)
	} else {
		report.Progress(name, "Node %s deleted from Kubernetes", name)
	}

	return nil
}

// TagOf is an image's tag (the kubelet's version in Talos's kubelet image).
func TagOf(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}

	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[i+1:]
	}

	return ""
}
