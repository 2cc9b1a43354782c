package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/client"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// runHealth is the bring-up gate: every check passes at once, or it names the one still failing.
func runHealth(ctx context.Context, args []string) error {
	f := newFlags("health")

	var cps, workers nodeList

	f.Var(&cps, "control-plane", "NAME=IP of a control plane (repeatable)")
	f.Var(&workers, "worker", "NAME=IP of a worker (repeatable)")
	endpoint := f.String("endpoint", "", "the Kubernetes API through the VIP, https://VIP:6443")
	stage := f.String("stage", "", "api (etcd, control plane pods, the API) or nodes (also every Node Ready)")
	timeout := f.timeout()

	if err := f.parse(args); err != nil {
		return err
	}

	if err := requireTimeout(*timeout); err != nil {
		return err
	}

	if len(cps) == 0 {
		return usagef("give at least one --control-plane NAME=IP")
	}

	if u, err := url.Parse(*endpoint); err != nil || u.Scheme != "https" || u.Host == "" {
		return usagef("--endpoint must be https://HOST:PORT")
	}

	if *stage != "api" && *stage != "nodes" {
		return usagef("--stage must be api or nodes")
	}

	seen := map[string]bool{}
	for _, n := range append(append(nodeList{}, cps...), workers...) {
		if seen[n.Name] {
			return usagef("node %s given twice", n.Name)
		}

		seen[n.Name] = true
	}

	t, s, err := talosSecrets()
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	h := &health{t: t, s: s, cps: cps, workers: workers, endpoint: *endpoint, nodes: *stage == "nodes", clients: map[string]*client.Client{}}
	defer h.close()

	said := ""

	err = poll(ctx, time.Second, func(ctx context.Context) error {
		err := h.once(ctx)
		if c, ok := err.(*check); ok && c.node+c.name != said { //nolint:errorlint
			progress(c.node, "waiting: %s: %s", c.name, c.err)

			said = c.node + c.name
		}

		return err
	})
	if err != nil {
		return failure(cps[0].Name, "health", etcdLook(cps[0]), err)
	}

	progress(strings.TrimPrefix(*endpoint, "https://"), "healthy: etcd (%d members), control plane, API%s", len(cps), map[bool]string{true: ", every Node Ready", false: ""}[h.nodes])

	return nil
}

type health struct {
	t        *Talos
	s        *Secrets
	cps      nodeList
	workers  nodeList
	endpoint string
	nodes    bool
	clients  map[string]*client.Client
	kube     *Kube
}

func (h *health) close() {
	for _, c := range h.clients {
		c.Close() //nolint:errcheck
	}
}

func (h *health) client(ctx context.Context, n Node) (*client.Client, error) {
	if c := h.clients[n.Name]; c != nil {
		return c, nil
	}

	c, err := h.t.connect(ctx, n)
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

		if _, err := version(ctx, c); err != nil {
			return &check{node: cp.Name, name: "talos-api", look: fmt.Sprintf("talosctl -n %s version", cp.IP), err: fmt.Errorf("%s", grpcMessage(err))}
		}
	}

	first := h.cps[0]
	c, _ := h.client(ctx, first) //nolint:errcheck

	members, err := h.t.etcdReport(ctx, first, c)
	if err != nil {
		return &check{node: first.Name, name: "etcd", look: etcdLook(first), err: err}
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
		return &check{node: first.Name, name: "etcd", look: etcdLook(first), err: fmt.Errorf("the members are %s, the control planes %s", strings.Join(sortedKeys(got), ", "), strings.Join(sortedKeys(want), ", "))}
	}

	if h.kube == nil {
		text := h.s.Kubeconfig
		if text == "" {
			if text, err = h.t.fetchKubeconfig(ctx, first, true); err != nil {
				return &check{node: first.Name, name: "kubeconfig", look: fmt.Sprintf("talosctl -n %s kubeconfig", first.IP), err: err}
			}
		}

		if h.kube, err = newKube(text, h.endpoint); err != nil {
			return &permanent{&check{node: first.Name, name: "kubeconfig", look: "kubectl config view", err: err}}
		}
	}

	if err := h.kube.readyz(ctx); err != nil {
		return &check{node: strings.TrimPrefix(h.endpoint, "https://"), name: "api", look: fmt.Sprintf("kubectl --server %s get --raw '/readyz?verbose'", h.endpoint), err: err}
	}

	for _, cp := range h.cps {
		if err := h.kube.staticPods(ctx, cp.Name, nil); err != nil {
			return &check{node: cp.Name, name: "control-plane-pods", look: fmt.Sprintf("kubectl -n kube-system get pods -o wide --field-selector spec.nodeName=%s", cp.Name), err: err}
		}
	}

	if h.nodes {
		for _, n := range append(append(nodeList{}, h.cps...), h.workers...) {
			if err := h.kube.nodeReady(ctx, n.Name); err != nil {
				return &check{node: n.Name, name: "node-ready", look: nodeLook(n.Name), err: fmt.Errorf("%s", firstLine(err))}
			}
		}
	}

	return nil
}

// runWaitKube is the generic Kubernetes gate (both clusters): one condition, polled until true.
func runWaitKube(ctx context.Context, args []string) error {
	f := newFlags("wait-kube")
	api := f.Bool("api", false, "the API server answers /readyz")
	nodes := f.String("nodes", "", "these Nodes (comma-separated) are Ready")
	admits := f.Bool("admits", false, "the API admits every manifest on stdin (a server-side dry-run create)")
	storageClass := f.String("storage-class", "", "this StorageClass exists and its CSI driver is registered on a node")
	timeout := f.timeout()

	if err := f.parse(args); err != nil {
		return err
	}

	if err := requireTimeout(*timeout); err != nil {
		return err
	}

	modes := 0
	for _, on := range []bool{*api, *nodes != "", *admits, *storageClass != ""} {
		if on {
			modes++
		}
	}

	if modes != 1 {
		return usagef("give exactly one of --api, --nodes, --admits, --storage-class")
	}

	s, err := readSecrets(os.Stdin)
	if err != nil {
		return err
	}

	if err := s.require("kubeconfig"); err != nil {
		return err
	}

	var manifests []map[string]any

	if *admits {
		if err := s.require("manifests"); err != nil {
			return err
		}

		for i, raw := range s.Manifests {
			obj, err := decodeManifest(raw)
			if err != nil {
				return usagef("stdin: manifest %d: %s", i, err)
			}

			manifests = append(manifests, obj)
		}
	}

	k, err := newKube(s.Kubeconfig, "")
	if err != nil {
		return usagef("stdin: %s", err)
	}

	server := strings.TrimPrefix(strings.TrimPrefix(k.rest.Host, "https://"), "http://")

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	switch {
	case *api:
		look := "kubectl get --raw '/readyz?verbose'"
		if err := poll(ctx, pollEvery, func(ctx context.Context) error { return k.readyz(ctx) }); err != nil {
			return &Failure{Node: server, Check: "api", Detail: err.Error(), Look: look}
		}

		progress(server, "API ready")
	case *nodes != "":
		names := strings.Split(*nodes, ",")
		for _, name := range names {
			if !nameRe.MatchString(name) {
				return usagef("--nodes: %q is not a node name", name)
			}
		}

		err := poll(ctx, pollEvery, func(ctx context.Context) error {
			for _, name := range names {
				if err := k.nodeReady(ctx, name); err != nil {
					return &check{node: name, name: "node-ready", look: nodeLook(name), err: fmt.Errorf("%s", firstLine(err))}
				}
			}

			return nil
		})
		if err != nil {
			return failure(names[0], "node-ready", nodeLook(names[0]), err)
		}

		progress(server, "Nodes Ready: %s", strings.Join(names, ", "))
	case *admits:
		if err := waitAdmits(ctx, k, server, manifests); err != nil {
			return err
		}
	default:
		if err := waitStorageClass(ctx, k, server, *storageClass); err != nil {
			return err
		}
	}

	return nil
}

// waitAdmits dry-runs the creation of each manifest until the API admits all: a CRD established
// and a webhook answering both show here. AlreadyExists counts as admitted.
func waitAdmits(ctx context.Context, k *Kube, server string, manifests []map[string]any) error {
	dyn, err := dynamic.NewForConfig(k.rest)
	if err != nil {
		return err
	}

	cached := memory.NewMemCacheClient(k.cs.Discovery())
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(cached)
	admitted := make([]bool, len(manifests))
	said := make([]string, len(manifests))

	// Each manifest says once (per new reason) why it is not admitted yet.
	waiting := func(i int, err error) error {
		if msg := err.Error(); msg != said[i] {
			progress(server, "waiting: %s", msg)

			said[i] = msg
		}

		return err
	}

	err = poll(ctx, time.Second, func(ctx context.Context) error {
		for i, obj := range manifests {
			if admitted[i] {
				continue
			}

			u := &unstructured.Unstructured{Object: obj}
			what := fmt.Sprintf("%s %s", u.GetKind(), u.GetName())
			look := fmt.Sprintf("kubectl create --dry-run=server -f MANIFEST  # %s", what)

			gvk := schema.FromAPIVersionAndKind(u.GetAPIVersion(), u.GetKind())

			mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				// A CRD not established yet: ask discovery again next time.
				cached.Invalidate()
				mapper.Reset()

				return waiting(i, checkf("admits", look, "%s: the API does not serve %s yet", what, gvk))
			}

			var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
			if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
				ns := u.GetNamespace()
				if ns == "" {
					ns = "default"
				}

				ri = dyn.Resource(mapping.Resource).Namespace(ns)
			}

			cctx, cancel := callCtx(ctx)
			_, err = ri.Create(cctx, u.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldManager: "iluvatar-upgrader"})

			cancel()

			switch {
			case err == nil, apierrors.IsAlreadyExists(err):
				admitted[i] = true

				progress(server, "admits %s", what)
			case apierrors.IsInvalid(err):
				// The object itself is wrong for the served schema: waiting cannot fix it.
				return &permanent{checkf("admits", look, "%s is invalid: %s", what, firstLine(err))}
			default:
				return waiting(i, checkf("admits", look, "%s is not admitted yet: %s", what, firstLine(err)))
			}
		}

		return nil
	})
	if err != nil {
		return failure(server, "admits", "kubectl create --dry-run=server -f MANIFEST", err)
	}

	return nil
}

// nonCSI are provisioners with no CSI driver to wait for.
var nonCSI = map[string]bool{"kubernetes.io/no-provisioner": true, "rancher.io/local-path": true}

// waitStorageClass: the class exists, and its CSI driver is registered and listed by a CSINode.
func waitStorageClass(ctx context.Context, k *Kube, server, name string) error {
	look := fmt.Sprintf("kubectl get storageclass %s -o yaml; kubectl get csidrivers; kubectl get csinodes -o yaml", name)

	err := poll(ctx, pollEvery, func(ctx context.Context) error {
		cctx, cancel := callCtx(ctx)
		defer cancel()

		sc, err := k.cs.StorageV1().StorageClasses().Get(cctx, name, metav1.GetOptions{})
		if err != nil {
			return checkf("storage-class", look, "StorageClass %s: %s", name, firstLine(err))
		}

		if nonCSI[sc.Provisioner] {
			return nil
		}

		if _, err := k.cs.StorageV1().CSIDrivers().Get(cctx, sc.Provisioner, metav1.GetOptions{}); err != nil {
			return checkf("storage-class", look, "CSIDriver %s (StorageClass %s's provisioner): %s", sc.Provisioner, name, firstLine(err))
		}

		csiNodes, err := k.cs.StorageV1().CSINodes().List(cctx, metav1.ListOptions{})
		if err != nil {
			return checkf("storage-class", look, "CSINodes: %s", firstLine(err))
		}

		for _, n := range csiNodes.Items {
			for _, d := range n.Spec.Drivers {
				if d.Name == sc.Provisioner {
					return nil
				}
			}
		}

		return checkf("storage-class", look, "no CSINode lists driver %s yet (its node plugin is not running)", sc.Provisioner)
	})
	if err != nil {
		return failure(server, "storage-class", look, err)
	}

	progress(server, "StorageClass %s usable", name)

	return nil
}

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

// runKubernetesPreflight checks a Kubernetes upgrade before it starts: every API server at most
// one minor behind the target and never ahead of it, and no API removed by the target still
// requested (the API server's apiserver_requested_deprecated_apis, as talosctl upgrade-k8s reads it).
func runKubernetesPreflight(ctx context.Context, args []string) error {
	f := newFlags("kubernetes-preflight")
	to := f.String("to", "", "the target Kubernetes version, vX.Y.Z")
	timeout := f.timeout()

	if err := f.parse(args); err != nil {
		return err
	}

	if err := requireTimeout(*timeout); err != nil {
		return err
	}

	target, ok := parseKVersion(*to)
	if !ok || !strings.HasPrefix(*to, "v") {
		return usagef("--to must be vX.Y.Z")
	}

	s, err := readSecrets(os.Stdin)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	// Before a rollout the kubeconfig Pulumi holds comes later in the run than this check (it is read
	// once the cluster passes its gate): a talosconfig alone fetches the admin kubeconfig from the
	// talosconfig's endpoints, the control planes, as `talosctl kubeconfig` does.
	text := s.Kubeconfig
	if text == "" {
		if s.Talosconfig == "" {
			return usagef("stdin: give a kubeconfig, or a talosconfig to fetch one with")
		}

		t, err := newTalos(s)
		if err != nil {
			return err
		}

		if text, err = t.fetchKubeconfig(ctx, Node{Name: "the talosconfig's endpoints"}, false); err != nil {
			return &Failure{Node: "the talosconfig's endpoints", Check: "kubeconfig", Detail: firstLine(err), Look: "talosctl kubeconfig -"}
		}
	}

	k, err := newKube(text, "")
	if err != nil {
		return usagef("stdin: %s", err)
	}

	server := strings.TrimPrefix(strings.TrimPrefix(k.rest.Host, "https://"), "http://")

	var (
		running map[string]kversion
		metrics []byte
	)

	if err := poll(ctx, pollEvery, func(ctx context.Context) error {
		var err error
		if running, err = apiServerVersions(ctx, k); err != nil {
			return checkf("versions", "kubectl version; kubectl -n kube-system get pods -l k8s-app=kube-apiserver -o wide", "%s", firstLine(err))
		}

		cctx, cancel := callCtx(ctx)
		defer cancel()

		if metrics, err = k.cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(cctx); err != nil {
			return checkf("removed-apis", "kubectl get --raw /metrics | grep apiserver_requested_deprecated_apis", "/metrics: %s", firstLine(err))
		}

		return nil
	}); err != nil {
		return failure(server, "versions", "kubectl version", err)
	}

	where := sortedVersionKeys(running)
	for _, w := range where {
		v := running[w]

		switch {
		case target.major != v.major:
			return &Failure{Node: w, Check: "version-skew", Detail: fmt.Sprintf("runs %s; %s is another major version", v, target), Look: "kubectl version"}
		case target.less(v):
			return &Failure{Node: w, Check: "version-skew", Detail: fmt.Sprintf("runs %s; %s would be a downgrade, which Kubernetes does not support", v, target), Look: "kubectl version"}
		case target.minor > v.minor+1:
			return &Failure{Node: w, Check: "version-skew", Detail: fmt.Sprintf("runs %s; %s skips a minor version: upgrade to v%d.%d first", v, target, v.major, v.minor+1), Look: "kubectl version"}
		}
	}

	removed, later := requestedDeprecatedAPIs(metrics, target)
	if len(later) > 0 {
		progress(server, "still requested, deprecated, removed after %s: %s", target, strings.Join(later, ", "))
	}

	if len(removed) > 0 {
		return &Failure{
			Node:   server,
			Check:  "removed-apis",
			Detail: fmt.Sprintf("still requested, removed by %s: %s", target, strings.Join(removed, ", ")),
			Look:   "kubectl get --raw /metrics | grep apiserver_requested_deprecated_apis",
		}
	}

	progress(server, "ready for %s: API servers run %s; no API removed by it is requested", target, describeVersions(running))

	return nil
}

// apiServerVersions: each kube-apiserver pod's image tag (Talos's static pods), else what /version says.
func apiServerVersions(ctx context.Context, k *Kube) (map[string]kversion, error) {
	cctx, cancel := callCtx(ctx)
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

		if v, ok := parseKVersion(tagOf(podImage(&pods.Items[i], "kube-apiserver"))); ok {
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
