package kube

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"k8s.io/kubectl/pkg/drain"
)

// TestADrainEndedByItsBoundSaysKubectlsTimeout is the product's main PodDisruptionBudget case against a real API
// server: nobody stops the step, and its own bound ends a drain the budget holds. The bound ends once the first
// eviction was refused (its context ended with the cause a deadline gives, context.DeadlineExceeded), not on the
// clock, so the drain is where the test means whatever the machine's load. kubectl retries the refused eviction 5 s
// later, meets the ended context (k8s.io/kubectl v0.34.1 pkg/drain/drain.go:292-296) and says its global timeout;
// drainEnded, finding no signal (wait.StoppedBy), keeps kubectl's words. Drain's own body with the test's refusal
// callback in place of its progress line (report.Progress). tests/upgrader/test_disrupt.py runs it with a node whose
// one pod the budget holds; `go test ./...` alone skips it.
func TestADrainEndedByItsBoundSaysKubectlsTimeout(t *testing.T) {
	kubeconfig, node := os.Getenv("ILUVATAR_LIVE_KUBECONFIG"), os.Getenv("ILUVATAR_LIVE_NODE")
	namespace, pod := os.Getenv("ILUVATAR_LIVE_NAMESPACE"), os.Getenv("ILUVATAR_LIVE_POD")
	if kubeconfig == "" {
		t.Skip("run by tests/upgrader/test_disrupt.py against its control plane")
	}

	text, err := os.ReadFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}

	k, err := New(string(text), "")
	if err != nil {
		t.Fatal(err)
	}

	ctx, end := context.WithCancelCause(context.Background())
	defer end(nil)

	var (
		mu   sync.Mutex
		said []string
	)

	d := k.drainer(ctx, node, 10*time.Minute)
	d.Client = refusalsSaid(k.cs, func(namespace, pod, reason string) {
		mu.Lock()
		said = append(said, namespace+"/"+pod+": "+reason)
		mu.Unlock()
		end(context.DeadlineExceeded)
	})

	err = drainEnded(ctx, drain.RunNodeDrain(d, node))

	want := fmt.Sprintf(`error when evicting pods/%q -n %q: global timeout reached: 10m0s`, pod, namespace)
	if err == nil || err.Error() != want {
		t.Fatalf("the drain ended with %v, want %q", err, want)
	}

	mu.Lock()
	defer mu.Unlock()

	if len(said) != 1 {
		t.Fatalf("refusals said: %q, want one", said)
	}
}
