package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/wait"
)

// The labels Envoy Gateway puts on every object it makes for a Gateway, its proxy Service among them, naming the
// Gateway (v1.9.0 internal/gatewayapi/translator.go:37,42; helpers.go:272-277 GatewayOwnerLabels, set on the proxy's
// infrastructure at translator.go:639 and copied to the Service at internal/infrastructure/kubernetes/proxy/
// resource_provider.go:226,245-246), and the one it marks all its proxy objects with (proxy/resource.go:47-53). Labels
// are free text anyone who may make a Service can write, so they alone say nothing: Envoy Gateway finds a Gateway's
// Service by the owning labels in the Gateway's own namespace only, the namespace it makes the Service in when it runs
// in GatewayNamespace mode, as Arda's runs it (internal/provider/kubernetes/predicates.go:752-757 envoyObjectNamespace,
// :800-803 the List), and takes an existing object for its own only when it also carries managed-by envoy-gateway
// (internal/infrastructure/kubernetes/infra_resource.go:756-792 checkOwnership, ownedByGateway). The step looks the
// same way, so a Service an app namespace holds with these labels is neither waited for nor patched.
const (
	owningGatewayName      = "gateway.envoyproxy.io/owning-gateway-name"
	owningGatewayNamespace = "gateway.envoyproxy.io/owning-gateway-namespace"
	managedBy              = "app.kubernetes.io/managed-by"
	envoyGateway           = "envoy-gateway"
)

// gatewayRef is one Gateway, NAMESPACE/NAME.
type gatewayRef struct{ namespace, name string }

func (g gatewayRef) String() string { return g.namespace + "/" + g.name }

func (g gatewayRef) selector() string {
	return labels.SelectorFromSet(labels.Set{owningGatewayName: g.name, owningGatewayNamespace: g.namespace, managedBy: envoyGateway}).String()
}

// ParseReleaseNodePorts reads release-node-ports' arguments and stdin, contacting nothing; what it returns runs it.
//
// release-node-ports ends with no NodePort on the proxy Service of each gateway named. Envoy Gateway applies that
// Service by server-side apply with no nodePort field (v1.9.0 internal/infrastructure/kubernetes/infra_resource.go:427
// applyIfOwned, infra_client.go:28-31; the ports it writes: proxy/resource_provider.go:203-208), so
// `allocateLoadBalancerNodePorts: false` allocates none to a new Service but leaves the NodePorts an older one holds:
// the apply owns no nodePort, so it never removes one. This command removes them.
func ParseReleaseNodePorts(args []string, stdin io.Reader) (func(context.Context) error, error) {
	f := input.NewFlags("release-node-ports")
	gateways := f.String("gateways", "", "the Gateways (NAMESPACE/NAME, comma-separated) whose proxy Services must hold no NodePort")
	timeout := f.Timeout()

	if err := f.ParseArgs(args); err != nil {
		return nil, err
	}

	if err := input.RequireTimeout(*timeout); err != nil {
		return nil, err
	}

	if *gateways == "" {
		return nil, input.Usagef("--gateways is required")
	}

	r := release{}

	for _, g := range strings.Split(*gateways, ",") {
		ns, name, ok := strings.Cut(g, "/")
		if !ok || !input.ValidName(ns) || !input.ValidName(name) {
			return nil, input.Usagef("--gateways: %q is not NAMESPACE/NAME", g)
		}

		r.gateways = append(r.gateways, gatewayRef{ns, name})
	}

	var err error

	if r.s, err = input.ReadSecrets(stdin); err != nil {
		return nil, err
	}

	if err := r.s.Require("kubeconfig"); err != nil {
		return nil, err
	}

	return func(ctx context.Context) error { return r.run(ctx, *timeout) }, nil
}

// release is one release-node-ports: the kubeconfig on stdin and the gateways.
type release struct {
	s        *input.Secrets
	gateways []gatewayRef
}

func (r release) look() string {
	looks := make([]string, 0, len(r.gateways))
	for _, g := range r.gateways {
		looks = append(looks, fmt.Sprintf("kubectl get services -n %s -l %s -o yaml", g.namespace, g.selector()))
	}

	return strings.Join(looks, "; ")
}

// run polls until every gateway's proxy Service exists, allocates no NodePort and holds none, removing those it holds.
func (r release) run(ctx context.Context, timeout time.Duration) error {
	k, err := New(r.s.Kubeconfig, "")
	if err != nil {
		return input.Usagef("stdin: %s", err)
	}

	server := strings.TrimPrefix(strings.TrimPrefix(k.rest.Host, "https://"), "http://")

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	said := ""

	err = wait.Poll(ctx, time.Second, func(ctx context.Context) error {
		err := r.once(ctx, k, server)
		// Each reason to wait is said once, when it is new.
		if err != nil && err.Error() != said {
			report.Progress(server, "waiting: %s", err)

			said = err.Error()
		}

		return err
	})
	if err != nil {
		return report.From(server, "node-ports", r.look(), err)
	}

	names := make([]string, 0, len(r.gateways))
	for _, g := range r.gateways {
		names = append(names, g.String())
	}

	report.Progress(server, "no NodePort on the proxy Service of %s", strings.Join(names, ", "))

	return nil
}

// once is one look at every gateway's Services, in the gateway's namespace: nil when none allocates or holds a NodePort (each one held is
// removed on the way).
func (r release) once(ctx context.Context, k *Client, server string) error {
	for _, g := range r.gateways {
		cctx, cancel := wait.Call(ctx)
		services, err := k.cs.CoreV1().Services(g.namespace).List(cctx, metav1.ListOptions{LabelSelector: g.selector()})

		cancel()

		if err != nil {
			return report.Checkf("node-ports", r.look(), "the Services of gateway %s: %s", g, report.FirstLine(err))
		}

		if len(services.Items) == 0 {
			return report.Checkf("node-ports", r.look(), "gateway %s has no proxy Service yet (Envoy Gateway makes it once it accepts the Gateway)", g)
		}

		for i := range services.Items {
			if err := releaseService(ctx, k, server, g, &services.Items[i]); err != nil {
				return report.Wrap("node-ports", r.look(), err)
			}
		}
	}

	return nil
}

// releaseService removes every nodePort svc holds, once the Service itself allocates none: while
// allocateLoadBalancerNodePorts is unset or true, the API server gives an update that drops a NodePort the old one
// back (Kubernetes v1.35.1 pkg/registry/core/service/storage/storage.go:399,591-652, needsNodePort at :654-662), so the
// removal waits for Envoy Gateway to have applied the EnvoyProxy's envoyService.
func releaseService(ctx context.Context, k *Client, server string, g gatewayRef, svc *corev1.Service) error {
	name := svc.Namespace + "/" + svc.Name

	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		// Not the Service the EnvoyProxy's envoyService makes, whose type Envoy Gateway applies
		// (internal/infrastructure/kubernetes/resource/resource.go:26): said as it is, not as a late apply, and waited
		// on; a NodePort Service's NodePorts are not for the step to remove (the API server gives them back).
		return fmt.Errorf("Service %s of gateway %s is a %s, not the LoadBalancer the EnvoyProxy's envoyService makes", name, g, svc.Spec.Type)
	}

	if svc.Spec.AllocateLoadBalancerNodePorts == nil || *svc.Spec.AllocateLoadBalancerNodePorts {
		return fmt.Errorf("Service %s of gateway %s still allocates NodePorts (type %s, allocateLoadBalancerNodePorts %s): "+
			"Envoy Gateway has not applied the EnvoyProxy's envoyService to it yet", name, g, svc.Spec.Type, flag(svc.Spec.AllocateLoadBalancerNodePorts))
	}

	patch, held := nodePortRemoval(svc)
	if len(held) == 0 {
		return nil
	}

	cctx, cancel := wait.Call(ctx)
	defer cancel()

	patched, err := k.cs.CoreV1().Services(svc.Namespace).Patch(cctx, svc.Name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: "iluvatar-upgrader"})
	if err != nil {
		// A test of the patch failing (the Service changed since it was read) is one of these too: read it again.
		return fmt.Errorf("removing NodePorts %s from Service %s: %s", ports(held), name, report.FirstLine(err))
	}

	if _, still := nodePortRemoval(patched); len(still) > 0 {
		return fmt.Errorf("Service %s still holds NodePorts %s after their removal", name, ports(still))
	}

	report.Progress(server, "Service %s (gateway %s): NodePorts %s released", name, g, ports(held))

	return nil
}

// nodePortRemoval is the JSON patch that removes each nodePort svc holds, each removal behind tests of the port it is
// in (its index, port, protocol and nodePort as read), so a Service changed since is refused, never patched at the
// wrong index; and the NodePorts it removes.
func nodePortRemoval(svc *corev1.Service) ([]byte, []int32) {
	var ops []map[string]any

	var held []int32

	for i, p := range svc.Spec.Ports {
		if p.NodePort == 0 {
			continue
		}

		at := fmt.Sprintf("/spec/ports/%d", i)
		ops = append(ops,
			map[string]any{"op": "test", "path": at + "/port", "value": p.Port},
			map[string]any{"op": "test", "path": at + "/protocol", "value": p.Protocol},
			map[string]any{"op": "test", "path": at + "/nodePort", "value": p.NodePort},
			map[string]any{"op": "remove", "path": at + "/nodePort"},
		)
		held = append(held, p.NodePort)
	}

	if len(ops) == 0 {
		return nil, nil
	}

	patch, err := json.Marshal(ops)
	if err != nil {
		// Maps of strings and numbers always marshal.
		panic(err)
	}

	return patch, held
}

func ports(held []int32) string {
	sorted := append([]int32(nil), held...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })

	out := make([]string, 0, len(sorted))
	for _, p := range sorted {
		out = append(out, fmt.Sprint(p))
	}

	return strings.Join(out, ", ")
}

func flag(b *bool) string {
	if b == nil {
		return "unset"
	}

	return fmt.Sprint(*b)
}
