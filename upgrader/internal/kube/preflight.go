package kube

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/talos"
	"github.com/iluvatar/upgrader/internal/wait"
)

var semverRe = regexp.MustCompile(`^v?(\d+)\.(\d+)\.(\d+)`)

type kversion struct{ major, minor, patch int }

func parseKVersion(v string) (kversion, bool) {
	m := semverRe.FindStringSubmatch(v)
	if m == nil {
		return kversion{}, false
	}

	a, _ := strconv.Atoi(m[1]) //nolint:errcheck
	b, _ := strconv.Atoi(m[2]) //nolint:errcheck
	c, _ := strconv.Atoi(m[3]) //nolint:errcheck

	return kversion{a, b, c}, true
}

func (v kversion) String() string { return fmt.Sprintf("v%d.%d.%d", v.major, v.minor, v.patch) }

func (v kversion) less(o kversion) bool {
	if v.major != o.major {
		return v.major < o.major
	}

	if v.minor != o.minor {
		return v.minor < o.minor
	}

	return v.patch < o.patch
}

// ParsePreflight reads kubernetes-preflight's arguments and stdin, contacting nothing; what it
// returns runs it.
//
// kubernetes-preflight checks a Kubernetes upgrade before it starts: every API server at most
// one minor behind the target and never ahead of it, and no API removed by the target still
// requested (the API server's apiserver_requested_deprecated_apis, as talosctl upgrade-k8s reads it).
func ParsePreflight(args []string, stdin io.Reader) (func(context.Context) error, error) {
	f := input.NewFlags("kubernetes-preflight")
	to := f.String("to", "", "the target Kubernetes version, vX.Y.Z")
	onTheWay := f.Bool("on-the-way", false, "a path's step on the way (not the stack's own version): every API server already past --to means the step is done, not a downgrade")
	timeout := f.Timeout()

	if err := f.ParseArgs(args); err != nil {
		return nil, err
	}

	if err := input.RequireTimeout(*timeout); err != nil {
		return nil, err
	}

	target, ok := parseKVersion(*to)
	if !ok || !strings.HasPrefix(*to, "v") {
		return nil, input.Usagef("--to must be vX.Y.Z")
	}

	s, err := input.ReadSecrets(stdin)
	if err != nil {
		return nil, err
	}

	// Before a rollout the kubeconfig Pulumi holds comes later in the run than this check (it is read
	// once the cluster passes its gate): a talosconfig alone fetches the admin kubeconfig from the
	// talosconfig's endpoints, the control planes, as `talosctl kubeconfig` does.
	if s.Kubeconfig == "" && s.Talosconfig == "" {
		return nil, input.Usagef("stdin: give a kubeconfig, or a talosconfig to fetch one with")
	}

	return func(ctx context.Context) error { return preflight(ctx, s, target, *onTheWay, *timeout) }, nil
}

// preflight is kubernetes-preflight: the kubeconfig read (or fetched with the talosconfig), then the
// API servers asked within timeout.
func preflight(ctx context.Context, s *input.Secrets, target kversion, onTheWay bool, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	text := s.Kubeconfig
	if text == "" {
		t, err := talos.New(s)
		if err != nil {
			return err
		}

		if text, err = t.FetchKubeconfig(ctx, input.Node{Name: "the talosconfig's endpoints"}, false); err != nil {
			return &report.Failure{Node: "the talosconfig's endpoints", Check: "kubeconfig", Detail: report.FirstLine(err), Look: "talosctl kubeconfig -"}
		}
	}

	k, err := New(text, "")
	if err != nil {
		return input.Usagef("stdin: %s", err)
	}

	server := strings.TrimPrefix(strings.TrimPrefix(k.rest.Host, "https://"), "http://")

	var (
		running map[string]kversion
		metrics []byte
	)

	if err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		var err error
		if running, err = apiServerVersions(ctx, k); err != nil {
			return report.Checkf("versions", "kubectl version; kubectl -n kube-system get pods -l k8s-app=kube-apiserver -o wide", "%s", report.FirstLine(err))
		}

		cctx, cancel := wait.Call(ctx)
		defer cancel()

		if metrics, err = k.cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(cctx); err != nil {
			return report.Checkf("removed-apis", "kubectl get --raw /metrics | grep apiserver_requested_deprecated_apis", "/metrics: %s", report.FirstLine(err))
		}

		return nil
	}); err != nil {
		return report.From(server, "versions", "kubectl version", err)
	}

	where := sortedVersionKeys(running)

	// A path's step on the way run again after the cluster moved past it (its stdin changed: the talosconfig renewed,
	// a patch fixed): the step is done. Refusing it as a downgrade would stop every later run on a step whose advice
	// ("set kubernetesVersion to what runs") the stack already follows.
	if onTheWay && len(where) > 0 {
		pastAll := true

		for _, w := range where {
			if !target.less(running[w]) {
				pastAll = false
			}
		}

		if pastAll {
			report.Progress(server, "API servers run %s, past %s: a step on the way the cluster already took, nothing to check", describeVersions(running), target)

			return nil
		}
	}

	for _, w := range where {
		v := running[w]

		switch {
		case target.major != v.major:
			return &report.Failure{Node: w, Check: "version-skew", Detail: fmt.Sprintf("runs %s; %s is another major version", v, target), Look: "kubectl version"}
		case target.less(v):
			return &report.Failure{Node: w, Check: "version-skew", Detail: fmt.Sprintf(
				"runs %s; %s would be a downgrade, which Kubernetes does not support: set iluvatar:arda.kubernetesVersion to %s (what runs; a failed upgrade leaves it running) and run pulumi up again", v, target, v), Look: "kubectl version"}
		case target.minor > v.minor+1:
			return &report.Failure{Node: w, Check: "version-skew", Detail: fmt.Sprintf("runs %s; %s skips a minor version: upgrade to v%d.%d first", v, target, v.major, v.minor+1), Look: "kubectl version"}
		}
	}

	removed, later := requestedDeprecatedAPIs(metrics, target)
	if len(later) > 0 {
		report.Progress(server, "still requested, deprecated, removed after %s: %s", target, strings.Join(later, ", "))
	}

	if len(removed) > 0 {
		return &report.Failure{
			Node:   server,
			Check:  "removed-apis",
			Detail: fmt.Sprintf("still requested, removed by %s: %s", target, strings.Join(removed, ", ")),
			Look:   "kubectl get --raw /metrics | grep apiserver_requested_deprecated_apis",
		}
	}

	report.Progress(server, "ready for %s: API servers run %s; no API removed by it is requested", target, describeVersions(running))

	return nil
}

// apiServerVersions: each kube-apiserver pod's image tag (Talos's static pods), else what /version says.
func apiServerVersions(ctx context.Context, k *Client) (map[string]kversion, error) {
	cctx, cancel := wait.Call(ctx)
	defer cancel()

	out := map[string]kversion{}

	pods, err := k.cs.CoreV1().Pods("kube-system").List(cctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-apiserver"})
	if err != nil {
		return nil, err
	}

	for i := range pods.Items {
		// A pod on its way out (an old static pod being replaced) serves nothing any more.
		if pods.Items[i].DeletionTimestamp != nil {
			continue
		}

		if v, ok := parseKVersion(TagOf(podImage(&pods.Items[i], "kube-apiserver"))); ok {
			out[pods.Items[i].Spec.NodeName] = v
		}
	}

	if len(out) > 0 {
		return out, nil
	}

	info, err := k.cs.Discovery().ServerVersion()
	if err != nil {
		return nil, err
	}

	v, ok := parseKVersion(info.GitVersion)
	if !ok {
		return nil, fmt.Errorf("the API server reports version %q", info.GitVersion)
	}

	out["api"] = v

	return out, nil
}

func sortedVersionKeys(m map[string]kversion) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}

	sort.Strings(keys)

	return keys
}

func describeVersions(m map[string]kversion) string {
	var parts []string
	for _, k := range sortedVersionKeys(m) {
		parts = append(parts, fmt.Sprintf("%s (%s)", m[k], k))
	}

	return strings.Join(parts, ", ")
}

var metricLabelRe = regexp.MustCompile(`(\w+)="([^"]*)"`)

// requestedDeprecatedAPIs reads the apiserver_requested_deprecated_apis lines: those whose
// removed_release is the target's minor or earlier (APIs still requested that the target no
// longer serves), and those removed later (or with no release named, as a deprecated CRD version).
func requestedDeprecatedAPIs(metrics []byte, target kversion) (removed, later []string) {
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(metrics))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)

	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_requested_deprecated_apis{") {
			continue
		}

		labels := map[string]string{}
		for _, m := range metricLabelRe.FindAllStringSubmatch(line[:strings.LastIndex(line, "}")+1], -1) {
			labels[m[1]] = m[2]
		}

		gv := labels["version"]
		if labels["group"] != "" {
			gv = labels["group"] + "/" + labels["version"]
		}

		resource := labels["resource"]
		if labels["subresource"] != "" {
			resource += "/" + labels["subresource"]
		}

		api := fmt.Sprintf("%s %s (removed in %s)", gv, resource, labels["removed_release"])
		if labels["removed_release"] == "" {
			api = fmt.Sprintf("%s %s (no removal release named)", gv, resource)
		}
		if seen[api] {
			continue
		}

		seen[api] = true

		if rel, ok := parseKVersion(labels["removed_release"] + ".0"); ok && (rel.major < target.major || (rel.major == target.major && rel.minor <= target.minor)) {
			removed = append(removed, api)
		} else {
			later = append(later, api)
		}
	}

	sort.Strings(removed)
	sort.Strings(later)

	return removed, later
}
