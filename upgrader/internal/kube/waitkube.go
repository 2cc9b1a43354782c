package kube

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/wait"
)

// ParseWaitKube reads wait-kube's arguments and stdin, contacting nothing; what it returns runs it.
//
// wait-kube is the generic Kubernetes gate (both clusters): one condition, polled until true.
func ParseWaitKube(args []string, stdin io.Reader) (func(context.Context) error, error) {
	f := input.NewFlags("wait-kube")
	api := f.Bool("api", false, "the API server answers /readyz")
	nodes := f.String("nodes", "", "these Nodes (comma-separated) are Ready")
	admits := f.Bool("admits", false, "the API admits every manifest on stdin (a server-side dry-run create)")
	storageClass := f.String("storage-class", "", "this StorageClass exists and its CSI driver is registered on a node")
	timeout := f.Timeout()

	if err := f.ParseArgs(args); err != nil {
		return nil, err
	}

	if err := input.RequireTimeout(*timeout); err != nil {
		return nil, err
	}

	modes := 0
	for _, on := range []bool{*api, *nodes != "", *admits, *storageClass != ""} {
		if on {
			modes++
		}
	}

	if modes != 1 {
		return nil, input.Usagef("give exactly one of --api, --nodes, --admits, --storage-class")
	}

	g := gate{api: *api, admits: *admits, storageClass: *storageClass}

	if *nodes != "" {
		g.names = strings.Split(*nodes, ",")
		for _, name := range g.names {
			if !input.ValidName(name) {
				return nil, input.Usagef("--nodes: %q is not a node name", name)
			}
		}
	}

	var err error

	if g.s, err = input.ReadSecrets(stdin); err != nil {
		return nil, err
	}

	if err := g.s.Require("kubeconfig"); err != nil {
		return nil, err
	}

	if *admits {
		if err := g.s.Require("manifests"); err != nil {
			return nil, err
		}
	}

	return func(ctx context.Context) error { return g.run(ctx, *timeout) }, nil
}

// gate is one wait-kube: the kubeconfig (and manifests) on stdin and the one condition.
type gate struct {
	s            *input.Secrets
	api          bool
	names        []string
	admits       bool
	storageClass string
}

// run is the gate: the kubeconfig read, then the condition polled within timeout.
func (g gate) run(ctx context.Context, timeout time.Duration) error {
	k, err := New(g.s.Kubeconfig, "")
	if err != nil {
		return input.Usagef("stdin: %s", err)
	}

	server := strings.TrimPrefix(strings.TrimPrefix(k.rest.Host, "https://"), "http://")

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	switch {
	case g.api:
		look := "kubectl get --raw '/readyz?verbose'"
		if err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error { return k.Readyz(ctx) }); err != nil {
			return &report.Failure{Node: server, Check: "api", Detail: err.Error(), Look: look}
		}

		report.Progress(server, "API ready")
	case g.names != nil:
		names := g.names

		err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
			for _, name := range names {
				if err := k.NodeReady(ctx, name); err != nil {
					return &report.Check{Node: name, Name: "node-ready", Look: NodeLook(name), Err: fmt.Errorf("%s", report.FirstLine(err))}
				}
			}

			return nil
		})
		if err != nil {
			return report.From(names[0], "node-ready", NodeLook(names[0]), err)
		}

		report.Progress(server, "Nodes Ready: %s", strings.Join(names, ", "))
	case g.admits:
		if err := waitAdmits(ctx, k, server, g.s.Objects); err != nil {
			return err
		}
	default:
		if err := waitStorageClass(ctx, k, server, g.storageClass); err != nil {
			return err
		}
	}

	return nil
}

// waitAdmits dry-runs the creation of each manifest until the API admits all: a CRD established
// and a webhook answering both show here. AlreadyExists counts as admitted.
func waitAdmits(ctx context.Context, k *Client, server string, manifests []map[string]any) error {
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
			report.Progress(server, "waiting: %s", msg)

			said[i] = msg
		}

		return err
	}

	err = wait.Poll(ctx, time.Second, func(ctx context.Context) error {
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

				return waiting(i, report.Checkf("admits", look, "%s: the API does not serve %s yet", what, gvk))
			}

			var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
			if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
				ns := u.GetNamespace()
				if ns == "" {
					ns = "default"
				}

				ri = dyn.Resource(mapping.Resource).Namespace(ns)
			}

			cctx, cancel := wait.Call(ctx)
			_, err = ri.Create(cctx, u.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldManager: "iluvatar-upgrader"})

			cancel()

			switch {
			case err == nil, apierrors.IsAlreadyExists(err):
				admitted[i] = true

				report.Progress(server, "admits %s", what)
			case apierrors.IsInvalid(err):
				// The object itself is wrong for the served schema: waiting cannot fix it.
				return wait.Stop(report.Checkf("admits", look, "%s is invalid: %s", what, report.FirstLine(err)))
			default:
				return waiting(i, report.Checkf("admits", look, "%s is not admitted yet: %s", what, report.FirstLine(err)))
			}
		}

		return nil
	})
	if err != nil {
		return report.From(server, "admits", "kubectl create --dry-run=server -f MANIFEST", err)
	}

	return nil
}

// nonCSI are provisioners with no CSI driver to wait for.
var nonCSI = map[string]bool{"kubernetes.io/no-provisioner": true, "rancher.io/local-path": true,
	// local-path-provisioner v0.0.30's chart names its provisioner cluster.local/<release> (Arda's local-path class).
	"cluster.local/local-path-provisioner": true}

// waitStorageClass: the class exists, and its CSI driver is registered and listed by a CSINode.
func waitStorageClass(ctx context.Context, k *Client, server, name string) error {
	look := fmt.Sprintf("kubectl get storageclass %s -o yaml; kubectl get csidrivers; kubectl get csinodes -o yaml", name)

	err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		cctx, cancel := wait.Call(ctx)
		defer cancel()

		sc, err := k.cs.StorageV1().StorageClasses().Get(cctx, name, metav1.GetOptions{})
		if err != nil {
			return report.Checkf("storage-class", look, "StorageClass %s: %s", name, report.FirstLine(err))
		}

		if nonCSI[sc.Provisioner] {
			return nil
		}

		if _, err := k.cs.StorageV1().CSIDrivers().Get(cctx, sc.Provisioner, metav1.GetOptions{}); err != nil {
			return report.Checkf("storage-class", look, "CSIDriver %s (StorageClass %s's provisioner): %s", sc.Provisioner, name, report.FirstLine(err))
		}

		csiNodes, err := k.cs.StorageV1().CSINodes().List(cctx, metav1.ListOptions{})
		if err != nil {
			return report.Checkf("storage-class", look, "CSINodes: %s", report.FirstLine(err))
		}

		for _, n := range csiNodes.Items {
			for _, d := range n.Spec.Drivers {
				if d.Name == sc.Provisioner {
					return nil
				}
			}
		}

		return report.Checkf("storage-class", look, "no CSINode lists driver %s yet (its node plugin is not running)", sc.Provisioner)
	})
	if err != nil {
		return report.From(server, "storage-class", look, err)
	}

	report.Progress(server, "StorageClass %s usable", name)

	return nil
}
