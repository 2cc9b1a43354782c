package kube

import (
	"context"
	"errors"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// budgetRefusal is the API server's answer to an eviction a PodDisruptionBudget does not allow
// (k8s.io/kubernetes v1.35.1 pkg/registry/core/pod/storage/eviction.go:436-459).
func budgetRefusal(cause string) error {
	err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
	err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{Type: policyv1.DisruptionBudgetCause, Message: cause})

	return err
}

func TestRefusedEvictionsAreSaidOncePerPodAndReason(t *testing.T) {
	needs := "The disruption budget guarded needs 1 healthy pods and has 1 currently"
	processing := "The disruption budget guarded is still being processed by the server."
	forbidden := apierrors.NewForbidden(corev1.Resource("pods"), "webhooked", errors.New("a webhook said no"))
	answers := map[string][]error{
		// Refused by its budget as kubectl retries it every 5 s, then for another reason, then evicted.
		"guarded": {budgetRefusal(processing), budgetRefusal(needs), budgetRefusal(needs), budgetRefusal(needs), nil},
		// A 429 without the budget's cause: its own message.
		"throttled": {apierrors.NewTooManyRequests("Too many requests, please try again later.", 0)},
		// Not a refusal kubectl retries: the drain ends with it, and its failure says it.
		"webhooked": {forbidden},
		"free":      {nil},
	}
	cs := fake.NewClientset()
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		name := a.(k8stesting.CreateAction).GetObject().(*policyv1.Eviction).Name
		err := answers[name][0]
		answers[name] = answers[name][1:]

		return true, nil, err
	})

	var said []string

	evictions := refusalsSaid(cs, func(namespace, pod, reason string) { said = append(said, namespace+"/"+pod+": "+reason) }).PolicyV1()

	for _, pod := range []string{"guarded", "throttled", "guarded", "webhooked", "guarded", "free", "guarded", "guarded"} {
		want := apierrors.ReasonForError(answers[pod][0])

		err := evictions.Evictions("shire").Evict(context.Background(), &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: "shire"}})
		// The drain gets the API's own error: it is what kubectl retries, or ends with.
		if apierrors.ReasonForError(err) != want {
			t.Fatalf("evicting %s: %v; want reason %q", pod, err, want)
		}
	}

	if want := []string{
		"shire/guarded: " + processing,
		"shire/throttled: Too many requests, please try again later.",
		"shire/guarded: " + needs,
	}; !reflect.DeepEqual(said, want) {
		t.Fatalf("said %q; want %q", said, want)
	}
}
