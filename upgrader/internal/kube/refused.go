package kube

import (
	"context"
	"errors"
	"sync"

	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	policyv1client "k8s.io/client-go/kubernetes/typed/policy/v1"
)

// refusalsSaid is the clientset kubectl's drain evicts with, which says why an eviction the drain keeps
// retrying was refused: once per pod and reason, through say.
//
// The API server refuses an eviction a PodDisruptionBudget does not allow with 429 Too Many Requests, the
// budget's own words in a cause of type DisruptionBudget ("The disruption budget NAME needs 1 healthy pods and
// has 1 currently": k8s.io/kubernetes v1.35.1 pkg/registry/core/pod/storage/eviction.go:436-459). kubectl's drain
// retries a 429 every 5 s until its timeout, and writes it only to its ErrOut (k8s.io/kubectl v0.34.1
// pkg/drain/drain.go:318-320), which says the StatusError's message alone, not its causes. A drain held by a
// budget would otherwise be silent until the step's --timeout ends it, and a person waiting on it would not know
// which budget to look at. Each reason once per pod: the retries every 5 s would repeat it, and a reason that
// changes (the budget "still being processed by the server" at first, eviction.go:418-419) is new.
//
// The drain evicts through PolicyV1 on an API server that serves policy/v1 evictions (drain.go:152-162; every
// Kubernetes since 1.22, and the upgrader's own kube-apiserver 1.35); the rest of the clientset is k8s's own.
func refusalsSaid(cs kubernetes.Interface, say func(namespace, pod, reason string)) kubernetes.Interface {
	return &refusalsClientset{Interface: cs, refusals: &refusals{say: say, said: map[[3]string]bool{}}}
}

// refusals says each refusal once; the drain evicts each pod from a goroutine of its own (drain.go:279-280).
type refusals struct {
	say func(namespace, pod, reason string)

	mu   sync.Mutex
	said map[[3]string]bool
}

func (r *refusals) seen(namespace, pod string, err error) {
	if !apierrors.IsTooManyRequests(err) {
		return
	}

	reason := err.Error()

	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Details != nil {
		for _, c := range status.Status().Details.Causes {
			if c.Type == policyv1.DisruptionBudgetCause && c.Message != "" {
				reason = c.Message

				break
			}
		}
	}

	key := [3]string{namespace, pod, reason}

	r.mu.Lock()
	first := !r.said[key]
	r.said[key] = true
	r.mu.Unlock()

	if first {
		r.say(namespace, pod, reason)
	}
}

type refusalsClientset struct {
	kubernetes.Interface

	refusals *refusals
}

func (c *refusalsClientset) PolicyV1() policyv1client.PolicyV1Interface {
	return &refusalsPolicyV1{PolicyV1Interface: c.Interface.PolicyV1(), refusals: c.refusals}
}

type refusalsPolicyV1 struct {
	policyv1client.PolicyV1Interface

	refusals *refusals
}

func (p *refusalsPolicyV1) Evictions(namespace string) policyv1client.EvictionInterface {
	return &refusalsEvictions{EvictionInterface: p.PolicyV1Interface.Evictions(namespace), refusals: p.refusals}
}

type refusalsEvictions struct {
	policyv1client.EvictionInterface

	refusals *refusals
}

func (e *refusalsEvictions) Evict(ctx context.Context, eviction *policyv1.Eviction) error {
	err := e.EvictionInterface.Evict(ctx, eviction)
	if err != nil {
		e.refusals.seen(eviction.Namespace, eviction.Name, err)
	}

	return err
}
