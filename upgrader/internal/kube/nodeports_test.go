package kube

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestReleaseNodePortsArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{args: []string{"--gateways", "networking/envoy-internal,networking/envoy-external", "--timeout", "10m"}},
		{args: []string{"--timeout", "10m"}, err: "--gateways is required"},
		{args: []string{"--gateways", "envoy-internal", "--timeout", "10m"}, err: `--gateways: "envoy-internal" is not NAMESPACE/NAME`},
		{args: []string{"--gateways", "networking/Envoy", "--timeout", "10m"}, err: `--gateways: "networking/Envoy" is not NAMESPACE/NAME`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := ParseReleaseNodePorts(tc.args, strings.NewReader(`{"kubeconfig": "k"}`))
			if fmt.Sprint(err) != map[bool]string{true: "<nil>", false: tc.err}[tc.err == ""] {
				t.Fatalf("ParseReleaseNodePorts(%q) = %v; want %q", tc.args, err, tc.err)
			}
		})
	}
}

func TestTheGatewaysSelectorIsEnvoyGatewaysOwningAndManagedByLabels(t *testing.T) {
	got := gatewayRef{"networking", "envoy-internal"}.selector()
	want := "app.kubernetes.io/managed-by=envoy-gateway,gateway.envoyproxy.io/owning-gateway-name=envoy-internal," +
		"gateway.envoyproxy.io/owning-gateway-namespace=networking"

	if got != want {
		t.Fatalf("selector = %q; want %q", got, want)
	}
}

func TestAServiceOfOtherTypeIsSaidForWhatItIsAndNotTouched(t *testing.T) {
	g := gatewayRef{"networking", "envoy-external"}

	for _, tc := range []struct {
		spec corev1.ServiceSpec
		want string
	}{
		{
			spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP},
			want: "Service networking/envoy-external of gateway networking/envoy-external is a ClusterIP, not the LoadBalancer the EnvoyProxy's envoyService makes",
		},
		{
			spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Port: 80, NodePort: 31080}}},
			want: "Service networking/envoy-external of gateway networking/envoy-external is a NodePort, not the LoadBalancer the EnvoyProxy's envoyService makes",
		},
	} {
		svc := &corev1.Service{Spec: tc.spec}
		svc.Namespace, svc.Name = "networking", "envoy-external"

		// No client: a Service of another type is never read again nor patched.
		if err := releaseService(t.Context(), nil, "", g, svc); fmt.Sprint(err) != tc.want {
			t.Fatalf("releaseService(%s) = %v; want %q", tc.spec.Type, err, tc.want)
		}
	}
}

func TestTheRemovalTestsEachPortItRemovesFrom(t *testing.T) {
	svc := &corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
		{Name: "http-80", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 31080},
		{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53},
		{Name: "https-443", Protocol: corev1.ProtocolTCP, Port: 443, NodePort: 30443},
	}}}

	patch, held := nodePortRemoval(svc)
	want := `[{"op":"test","path":"/spec/ports/0/port","value":80},{"op":"test","path":"/spec/ports/0/protocol","value":"TCP"},` +
		`{"op":"test","path":"/spec/ports/0/nodePort","value":31080},{"op":"remove","path":"/spec/ports/0/nodePort"},` +
		`{"op":"test","path":"/spec/ports/2/port","value":443},{"op":"test","path":"/spec/ports/2/protocol","value":"TCP"},` +
		`{"op":"test","path":"/spec/ports/2/nodePort","value":30443},{"op":"remove","path":"/spec/ports/2/nodePort"}]`

	if string(patch) != want || fmt.Sprint(held) != "[31080 30443]" {
		t.Fatalf("nodePortRemoval = %s, %v; want %s, [31080 30443]", patch, held, want)
	}

	if patch, held := nodePortRemoval(&corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}); patch != nil || held != nil {
		t.Fatalf("nodePortRemoval of a Service holding none = %s, %v; want nothing", patch, held)
	}
}
