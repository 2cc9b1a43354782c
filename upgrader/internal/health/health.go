// Package health is the bring-up gate: etcd on every control plane, their static pods, the API
// through the VIP and, at its second stage, every Node Ready, all at once.
package health

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/client"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/talos"
	"github.com/iluvatar/upgrader/internal/wait"
)

// Parse reads health's arguments and stdin, contacting nothing; what it returns is the bring-up
// gate: every check passes at once, or it names the one still failing.
func Parse(args []string, stdin io.Reader) (func(context.Context) error, error) {
	f := input.NewFlags("health")

	var cps, workers input.NodeList

	f.Var(&cps, "control-plane", "NAME=IP of a control plane (repeatable)")
	f.Var(&workers, "worker", "NAME=IP of a worker (repeatable)")
	endpoint := f.String("endpoint", "", "the Kubernetes API through the VIP, https://VIP:6443")
	stage := f.String("stage", "", "api (etcd, control plane pods, the API) or nodes (also every Node Ready)")
	timeout := f.Timeout()

	if err := f.ParseArgs(args); err != nil {
		return nil, err
	}

	if err := input.RequireTimeout(*timeout); err != nil {
		return nil, err
	}

	if len(cps) == 0 {
		return nil, input.Usagef("give at least one --control-plane NAME=IP")
	}

	if u, err := url.Parse(*endpoint); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, input.Usagef("--endpoint must be https://HOST:PORT")
	}

	if *stage != "api" && *stage != "nodes" {
		return nil, input.Usagef("--stage must be api or nodes")
	}

	seen := map[string]bool{}
	for _, n := range append(append(input.NodeList{}, cps...), workers...) {
		if seen[n.Name] {
			return nil, input.Usagef("node %s given twice", n.Name)
		}

		seen[n.Name] = true
	}

	s, err := talos.ReadStdin(stdin)
	if err != nil {
		return nil, err
	}

	h := &health{s: s, cps: cps, workers: workers, endpoint: *endpoint, nodes: *stage == "nodes", clients: map[string]*client.Client{}}

	return func(ctx context.Context) error { return h.run(ctx, *timeout) }, nil
}

// run is the gate: the talosconfig read, then every check polled within timeout.
func (h *health) run(ctx context.Context, timeout time.Duration) error {
	var err error

	if h.t, err = talos.New(h.s); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	defer h.close()

	said := ""

	err = wait.Poll(ctx, time.Second, func(ctx context.Context) error {
		err := h.once(ctx)
		if c, ok := err.(*report.Check); ok && c.Node+c.Name != said { //nolint:errorlint
			report.Progress(c.Node, "waiting: %s: %s", c.Name, c.Err)

			said = c.Node + c.Name
		}

		return err
	})
	if err != nil {
		return report.From(h.cps[0].Name, "health", talos.EtcdLook(h.cps[0]), err)
	}

	report.Progress(strings.TrimPrefix(h.endpoint, "https://"), "healthy: etcd (%d members), control plane, API%s", len(h.cps), map[bool]string{true: ", every Node Ready", false: ""}[h.nodes])

	return nil
}

type health struct {
	t        *talos.Talosconfig
	s        *input.Secrets
	cps      input.NodeList
	workers  input.NodeList
	endpoint string
	nodes    bool
	clients  map[string]*client.Client
	kube     *kube.Client
}

func (h *health) close() {
	for _, c := range h.clients {
		c.Close() //nolint:errcheck
	}
}

func (h *health) client(ctx context.Context, n input.Node) (*client.Client, error) {
	if c := h.clients[n.Name]; c != nil {
		return c, nil
	}

	c, err := h.t.Connect(ctx, n)
	if err != nil {
		return nil, err
	}

	h.clients[n.Name] = c

	return c, nil
}

func (h *health) once(ctx context.Context) error {
	for _, cp := range h.cps {
		c, err := h.client(ctx, cp)
		if err != nil {
			return err
		}

		if _, err := talos.Version(ctx, c); err != nil {
			return &report.Check{Node: cp.Name, Name: "talos-api", Look: fmt.Sprintf("talosctl -n %s version", cp.IP), Err: fmt.Errorf("%s", talos.Message(err))}
		}
	}

	first := h.cps[0]
	c, _ := h.client(ctx, first) //nolint:errcheck

	members, err := h.t.EtcdReport(ctx, first, c)
	if err != nil {
		return &report.Check{Node: first.Name, Name: "etcd", Look: talos.EtcdLook(first), Err: err}
	}

	want := map[string]bool{}
	for _, cp := range h.cps {
		want[cp.Name] = true
	}

	got := map[string]bool{}
	for _, m := range members {
		got[m.GetHostname()] = true
	}

	if fmt.Sprint(sortedKeys(want)) != fmt.Sprint(sortedKeys(got)) {
		return &report.Check{Node: first.Name, Name: "etcd", Look: talos.EtcdLook(first), Err: fmt.Errorf("the members are %s, the control planes %s", strings.Join(sortedKeys(got), ", "), strings.Join(sortedKeys(want), ", "))}
	}

	if h.kube == nil {
		text := h.s.Kubeconfig
		if text == "" {
			if text, err = h.t.FetchKubeconfig(ctx, first, true); err != nil {
				return &report.Check{Node: first.Name, Name: "kubeconfig", Look: fmt.Sprintf("talosctl -n %s kubeconfig", first.IP), Err: err}
			}
		}

		if h.kube, err = kube.New(text, h.endpoint); err != nil {
			return wait.Stop(&report.Check{Node: first.Name, Name: "kubeconfig", Look: "kubectl config view", Err: err})
		}
	}

	if err := h.kube.Readyz(ctx); err != nil {
		return &report.Check{Node: strings.TrimPrefix(h.endpoint, "https://"), Name: "api", Look: fmt.Sprintf("kubectl --server %s get --raw '/readyz?verbose'", h.endpoint), Err: err}
	}

	for _, cp := range h.cps {
		if err := h.kube.StaticPods(ctx, cp.Name, nil); err != nil {
			return &report.Check{Node: cp.Name, Name: "control-plane-pods", Look: fmt.Sprintf("kubectl -n kube-system get pods -o wide --field-selector spec.nodeName=%s", cp.Name), Err: err}
		}
	}

	if h.nodes {
		for _, n := range append(append(input.NodeList{}, h.cps...), h.workers...) {
			if err := h.kube.NodeReady(ctx, n.Name); err != nil {
				return &report.Check{Node: n.Name, Name: "node-ready", Look: kube.NodeLook(n.Name), Err: fmt.Errorf("%s", report.FirstLine(err))}
			}
		}
	}

	return nil
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}

	sort.Strings(out)

	return out
}
