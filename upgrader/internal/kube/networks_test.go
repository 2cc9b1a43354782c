package kube

import (
	"context"
	"errors"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestClusterNetworks(t *testing.T) {
	service := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1"}}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "valinor"}, Spec: corev1.NodeSpec{PodCIDRs: []string{"10.244.3.0/24"}}}
	down := errors.New("connection refused")

	for _, tc := range []struct {
		name    string
		objects []runtime.Object
		fail    string // a resource whose get answers down
		want    Networks
		wantErr bool
	}{
		{name: "no Service and no Node: nothing runs yet"},
		{name: "the Service, no Node", objects: []runtime.Object{service}, want: Networks{ServiceIP: "10.96.0.1"}},
		{name: "a Node with no pod range yet", objects: []runtime.Object{service, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "valinor"}}},
			want: Networks{ServiceIP: "10.96.0.1", Node: true}},
		{name: "both", objects: []runtime.Object{service, node}, want: Networks{ServiceIP: "10.96.0.1", Node: true, PodCIDRs: []string{"10.244.3.0/24"}}},
		{name: "the Service unreadable is not taken for absent", objects: []runtime.Object{node}, fail: "services", wantErr: true},
		{name: "the Node unreadable is not taken for absent", objects: []runtime.Object{service}, fail: "nodes", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset(tc.objects...)
			if tc.fail != "" {
				cs.PrependReactor("get", tc.fail, func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, down })
			}

			got, err := (&Client{cs: cs}).ClusterNetworks(context.Background(), "valinor")
			if (err != nil) != tc.wantErr || (err == nil && !reflect.DeepEqual(got, tc.want)) {
				t.Errorf("ClusterNetworks = %+v, %v; want %+v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
