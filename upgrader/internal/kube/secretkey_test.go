package kube

import (
	"context"
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestSecretKeyState(t *testing.T) {
	state := func(data map[string][]byte) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "subnet-router-state", Namespace: "remote-access"}, Data: data}
	}

	for _, tc := range []struct {
		name   string
		object *corev1.Secret
		fail   error
		want   string
	}{
		{name: "logged in: device_id written", object: state(map[string][]byte{"device_id": []byte("3"), "_machinekey": []byte("x")}), want: SecretKeyPresent},
		{name: "the Secret deleted", want: SecretKeyAbsent},
		{name: "never logged in: no device_id", object: state(map[string][]byte{"_machinekey": []byte("x")}), want: SecretKeyAbsent},
		{name: "an empty device_id", object: state(map[string][]byte{"device_id": {}}), want: SecretKeyAbsent},
		{name: "the API refuses", fail: errors.New("connection refused"), want: SecretKeyUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var objects []runtime.Object
			if tc.object != nil {
				objects = append(objects, tc.object)
			}

			cs := fake.NewClientset(objects...)
			if tc.fail != nil {
				cs.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tc.fail })
			}

			if got := secretKeyState(context.Background(), cs, "remote-access", "subnet-router-state", "device_id"); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDeploymentState(t *testing.T) {
	one := int32(1)
	router := func(generation int64, status appsv1.DeploymentStatus) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "subnet-router", Namespace: "remote-access", Generation: generation},
			Spec:       appsv1.DeploymentSpec{Replicas: &one},
			Status:     status,
		}
	}
	rolled := appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}

	for _, tc := range []struct {
		name   string
		object *appsv1.Deployment
		fail   error
		want   string
	}{
		{name: "rolled out, its pod Ready", object: router(2, rolled), want: DeploymentAvailable},
		{name: "its pod not Ready (a router that restarted without its node: device_id kept, never logged in)", object: router(2, appsv1.DeploymentStatus{
			ObservedGeneration: 2, Replicas: 1, UpdatedReplicas: 1, UnavailableReplicas: 1,
		}), want: DeploymentUnavailable},
		{name: "a new generation not yet observed", object: router(3, rolled), want: DeploymentUnavailable},
		{name: "an old pod still there", object: router(2, appsv1.DeploymentStatus{
			ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 1, AvailableReplicas: 1,
		}), want: DeploymentUnavailable},
		{name: "the Deployment deleted", want: DeploymentUnavailable},
		{name: "the API refuses", fail: errors.New("connection refused"), want: SecretKeyUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var objects []runtime.Object
			if tc.object != nil {
				objects = append(objects, tc.object)
			}

			cs := fake.NewClientset(objects...)
			if tc.fail != nil {
				cs.PrependReactor("get", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tc.fail })
			}

			if got := deploymentState(context.Background(), cs, "remote-access", "subnet-router"); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseSecretKeyRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{name: "no namespace", args: []string{"--secret", "s", "--key", "device_id"}, stdin: `{"kubeconfig": "x"}`, want: `--namespace: "" is not a Kubernetes name`},
		{name: "a bad key", args: []string{"--namespace", "n", "--secret", "s", "--key", "a b"}, stdin: `{"kubeconfig": "x"}`, want: `--key: "a b"`},
		{name: "no kubeconfig", args: []string{"--namespace", "n", "--secret", "s", "--key", "device_id"}, stdin: `{}`, want: "kubeconfig"},
		{name: "a bad deployment", args: []string{"--namespace", "n", "--secret", "s", "--key", "k", "--deployment", "A_B"}, stdin: `{"kubeconfig": "x"}`, want: `--deployment: "A_B"`},
		{name: "a zero deadline", args: []string{"--namespace", "n", "--secret", "s", "--key", "k", "--deadline", "0s"}, stdin: `{"kubeconfig": "x"}`, want: "--deadline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSecretKey(tc.args, strings.NewReader(tc.stdin))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}
