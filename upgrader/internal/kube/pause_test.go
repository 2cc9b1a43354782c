package kube

import (
	"context"
	"errors"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// argocd is the workload the program pauses (plans/bringup.py ARGOCD_CONTROLLER).
var argocd = Workload{Kind: "StatefulSet", Namespace: "argocd", Name: "argocd-application-controller"}

// controller is Argo CD's controller as the API holds it: replicas, the pause annotation ("" for none), no pod running.
func controller(replicas int32, annotation string) *appsv1.StatefulSet {
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: argocd.Name, Namespace: argocd.Namespace},
		Spec:       appsv1.StatefulSetSpec{Replicas: &replicas},
	}
	if annotation != "" {
		s.Annotations = map[string]string{PausedAnnotation: annotation}
	}

	return s
}

// scaled is the workload after the call: its replicas and annotation, or "absent".
func scaled(t *testing.T, cs *fake.Clientset) string {
	t.Helper()

	s, err := cs.AppsV1().StatefulSets(argocd.Namespace).Get(context.Background(), argocd.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "absent"
	}

	if err != nil {
		t.Fatal(err)
	}

	a, ok := s.Annotations[PausedAnnotation]
	if !ok {
		a = "none"
	}

	return fmt.Sprintf("replicas %d, annotation %s", *s.Spec.Replicas, a)
}

func writes(cs *fake.Clientset) int {
	n := 0

	for _, a := range cs.Actions() {
		if a.GetVerb() != "get" {
			n++
		}
	}

	return n
}

// forbidden is an answer other than NotFound: the workload may exist, so it is not taken for absent.
var forbidden = apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "statefulsets"}, argocd.Name, errors.New("no rights"))

func TestResume(t *testing.T) {
	for _, tc := range []struct {
		name   string
		object *appsv1.StatefulSet
		fail   error
		want   string
		writes int
		err    string
	}{
		{name: "absent (Argo CD not installed yet): nothing to resume", want: "absent"},
		{name: "present, never paused: left as it is", object: controller(1, ""), want: "replicas 1, annotation none"},
		{name: "paused by an earlier run: scaled back, annotation dropped", object: controller(0, "3"), want: "replicas 3, annotation none", writes: 1},
		{name: "paused with an annotation that is no number: refused", object: controller(0, "three"), want: "replicas 0, annotation three",
			err: `StatefulSet/argocd/argocd-application-controller: annotation iluvatar.dev/paused-replicas="three" is not a number`},
		{name: "the API refuses to say (Forbidden): a failure, not absence", object: controller(0, "3"), fail: forbidden, want: "replicas 0, annotation 3",
			err: `statefulsets.apps "argocd-application-controller" is forbidden: no rights`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var objects []runtime.Object
			if tc.object != nil {
				objects = append(objects, tc.object)
			}

			cs := fake.NewClientset(objects...)
			if tc.fail != nil {
				cs.PrependReactor("get", "statefulsets", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tc.fail })
			}

			err := (&Client{cs: cs}).Resume(context.Background(), "talos-3", argocd)
			if fmt.Sprint(err) != map[bool]string{true: "<nil>", false: tc.err}[tc.err == ""] {
				t.Fatalf("Resume: %v; want %q", err, tc.err)
			}

			if got, w := writes(cs), tc.writes; got != w {
				t.Errorf("%d writes; want %d", got, w)
			}

			cs.ClearActions()
			cs.ReactionChain = cs.ReactionChain[len(cs.ReactionChain)-1:] // the tracker alone: read what is stored

			if got := scaled(t, cs); got != tc.want {
				t.Errorf("after Resume: %s; want %s", got, tc.want)
			}
		})
	}
}

func TestPause(t *testing.T) {
	for _, tc := range []struct {
		name      string
		object    *appsv1.StatefulSet
		namespace bool // its namespace exists (always, when the object does)
		fail      error
		want      string
		found     bool
		writes    int
		err       string
	}{
		{name: "absent with its namespace (Argo CD not installed yet): nothing to pause, nothing created", want: "absent"},
		{name: "absent from a namespace that exists (a wrong name): refused, nothing created", namespace: true, want: "absent",
			err: "StatefulSet/argocd/argocd-application-controller is not in namespace argocd, which exists: the workload to pause is named wrongly " +
				"(renamed, or another kind, by its chart's values?), and a drain with it running is what pausing it prevents; nothing was cordoned"},
		{name: "present: scaled to 0, its replicas written down", object: controller(2, ""), want: "replicas 0, annotation 2", found: true, writes: 1},
		{name: "paused by an earlier run: the replicas written then kept", object: controller(0, "3"), want: "replicas 0, annotation 3", found: true, writes: 1},
		{name: "the API refuses to say (Forbidden): a failure, not absence", object: controller(2, ""), fail: forbidden, want: "replicas 2, annotation none",
			err: `statefulsets.apps "argocd-application-controller" is forbidden: no rights`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var objects []runtime.Object
			if tc.object != nil {
				objects = append(objects, tc.object)
			}

			if tc.object != nil || tc.namespace {
				objects = append(objects, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: argocd.Namespace}})
			}

			cs := fake.NewClientset(objects...)
			if tc.fail != nil {
				cs.PrependReactor("get", "statefulsets", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tc.fail })
			}

			found, err := (&Client{cs: cs}).Pause(context.Background(), "talos-3", argocd)
			if fmt.Sprint(err) != map[bool]string{true: "<nil>", false: tc.err}[tc.err == ""] {
				t.Fatalf("Pause: %v; want %q", err, tc.err)
			}

			if found != tc.found {
				t.Errorf("Pause found the workload: %v; want %v", found, tc.found)
			}

			if got, w := writes(cs), tc.writes; got != w {
				t.Errorf("%d writes; want %d", got, w)
			}

			cs.ReactionChain = cs.ReactionChain[len(cs.ReactionChain)-1:]

			if got := scaled(t, cs); got != tc.want {
				t.Errorf("after Pause: %s; want %s", got, tc.want)
			}
		})
	}
}

func TestDrainEnded(t *testing.T) {
	// kubectl's aggregated error as k8s.io/kubectl v0.34.1 pkg/drain/drain.go:295, 357 and 376 write it.
	timedOut1 := errors.New(`error when evicting pods/"guarded-1" -n "apps": global timeout reached: 44m27.6s`)
	kubectls := utilerrors.NewAggregate([]error{timedOut1})
	webhook := errors.New(`error when evicting pods/"web-0" -n "shop": admission webhook "deny.example" denied the request: no`)
	mixed := utilerrors.NewAggregate([]error{
		webhook,
		errors.New(`error when evicting pods/"guarded-2" -n "apps": global timeout reached: 44m27.6s`),
		fmt.Errorf(`error when waiting for pod %q in namespace %q to terminate: %v`, "cache-7", "apps", context.Canceled),
		timedOut1,
	})
	signalled := func() context.Context {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(errors.New("SIGTERM"))

		return ctx
	}
	timedOut := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 0)
		defer cancel()

		return ctx
	}

	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want string
	}{
		{name: "stopped by a signal: the signal and the pod, not kubectl's global timeout", ctx: signalled(), err: kubectls, want: "stopped: SIGTERM (still evicting apps/guarded-1)"},
		{
			name: "stopped by a signal: every pod cut short, sorted; a webhook's refusal as kubectl wrote it",
			ctx:  signalled(), err: mixed,
			want: "stopped: SIGTERM (still evicting apps/cache-7, apps/guarded-1, apps/guarded-2); " + webhook.Error(),
		},
		{
			name: "stopped by a signal while an eviction read its answer: the pod, not client-go's words",
			ctx:  signalled(),
			err: utilerrors.NewAggregate([]error{errors.New(`error when evicting pods/"guarded-1" -n "apps": ` +
				"unexpected error when reading response body. Please retry. Original error: context canceled")}),
			want: "stopped: SIGTERM (still evicting apps/guarded-1)",
		},
		{name: "stopped by a signal, only a refusal: the refusal kept", ctx: signalled(), err: utilerrors.NewAggregate([]error{webhook}), want: "stopped: SIGTERM; " + webhook.Error()},
		{name: "stopped while listing the pods: the signal", ctx: signalled(), err: fmt.Errorf("list pods: %w", context.Canceled), want: "stopped: SIGTERM"},
		{name: "the command's --timeout ended: kubectl's own words (its timeout is what was left of ours)", ctx: timedOut(), err: kubectls, want: kubectls.Error()},
		{name: "ctx alive (an API refusal): kubectl's own words", ctx: context.Background(), err: kubectls, want: kubectls.Error()},
		{name: "drained, then a signal: drained", ctx: signalled(), want: "<nil>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fmt.Sprint(drainEnded(tc.ctx, tc.err)); got != tc.want {
				t.Fatalf("got %q; want %q", got, tc.want)
			}
		})
	}
}
