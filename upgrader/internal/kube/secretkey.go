package kube

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/report"
)

// What secret-key finds.
const (
	SecretKeyPresent     = "present"     // the Secret holds the key, not empty
	SecretKeyAbsent      = "absent"      // the API answered: no such Secret, or no such key in it (or an empty one)
	SecretKeyUnreachable = "unreachable" // the API did not answer within the deadline, or refused the read

	DeploymentAvailable   = "available"   // its rollout is finished and a pod of it is available (Ready)
	DeploymentUnavailable = "unavailable" // the API answered: no such Deployment, no available pod, or a rollout not finished
)

// ParseSecretKey reads secret-key's arguments and stdin, contacting nothing; what it returns runs it.
//
// secret-key says whether one key of one Secret is there, without printing anything of its value; it never fails on
// what it finds (only on bad arguments). The program asks it at `pulumi preview` and `pulumi up` whether the headscale
// flavour's subnet router still has its node (containerboot's device_id in its state Secret).
func ParseSecretKey(args []string, stdin io.Reader) (func(context.Context) error, error) {
	f := input.NewFlags("secret-key")
	namespace := f.String("namespace", "", "the Secret's namespace")
	secret := f.String("secret", "", "the Secret's name")
	key := f.String("key", "", "the key of its data")
	deployment := f.String("deployment", "", "a Deployment in the same namespace whose availability to report too")
	deadline := f.Duration("deadline", 3*time.Second, "how long the API has to answer")

	if err := f.ParseArgs(args); err != nil {
		return nil, err
	}

	for flag, v := range map[string]string{"--namespace": *namespace, "--secret": *secret, "--key": *key} {
		if !input.ValidName(v) && !(flag == "--key" && validDataKey(v)) {
			return nil, input.Usagef("%s: %q is not a Kubernetes name", flag, v)
		}
	}

	if *deployment != "" && !input.ValidName(*deployment) {
		return nil, input.Usagef("--deployment: %q is not a Kubernetes name", *deployment)
	}

	if *deadline <= 0 {
		return nil, input.Usagef("--deadline must be positive")
	}

	s, err := input.ReadSecrets(stdin)
	if err != nil {
		return nil, err
	}

	if err := s.Require("kubeconfig"); err != nil {
		return nil, err
	}

	return func(ctx context.Context) error {
		out := map[string]string{"secret": SecretKeyUnreachable}
		if *deployment != "" {
			out["deployment"] = SecretKeyUnreachable
		}

		if c, err := New(s.Kubeconfig, ""); err != nil {
			report.Progress(*secret, "%s", report.FirstLine(err))
		} else {
			dctx, cancel := context.WithTimeout(ctx, *deadline)
			out["secret"] = secretKeyState(dctx, c.cs, *namespace, *secret, *key)

			if *deployment != "" {
				out["deployment"] = deploymentState(dctx, c.cs, *namespace, *deployment)
			}

			cancel()
		}

		return json.NewEncoder(os.Stdout).Encode(out)
	}, nil
}

// validDataKey: a Secret's data key (letters, digits, '-', '_', '.'), as device_id is.
func validDataKey(v string) bool {
	if v == "" || len(v) > 253 {
		return false
	}

	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}

	return true
}

// secretKeyState is what secret-key prints for one read of the Secret.
func secretKeyState(ctx context.Context, cs kubernetes.Interface, namespace, secret, key string) string {
	got, err := cs.CoreV1().Secrets(namespace).Get(ctx, secret, metav1.GetOptions{})

	switch {
	case apierrors.IsNotFound(err):
		return SecretKeyAbsent
	case err != nil:
		report.Progress(secret, "%s", report.FirstLine(err))

		return SecretKeyUnreachable
	case len(got.Data[key]) == 0:
		return SecretKeyAbsent
	default:
		return SecretKeyPresent
	}
}

// deploymentState is what secret-key prints for one read of the Deployment: available when `kubectl rollout status`
// calls its rollout finished (staging/src/k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go,
// DeploymentStatusViewer.Status: the newest generation observed, every replica updated, none old left, the updated
// ones available), with every wanted replica, and at least one, available (an available pod is a Ready one for
// minReadySeconds, 0 here). The
// headscale router's pod is Ready only once containerboot's /healthz says it has a tailnet address, so a router that
// *starts* without its node (Headscale forgot or expired it; device_id stays in its state Secret) is `unavailable`
// here. One whose node Headscale forgets while it runs stays Ready: tailscaled keeps its state Running on a control
// error (ipn/ipnlocal/local.go:1821-1831 at tailscale v1.102.3; headscale v0.27.1 answers its map poll 404,
// hscontrol/noise.go:297-305) and /healthz keeps the last netmap's addresses (cmd/containerboot/main.go:900-901), so
// this reads `available` until the pod restarts (docs/remote-access.md says how to restart it).
func deploymentState(ctx context.Context, cs kubernetes.Interface, namespace, name string) string {
	got, err := cs.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})

	switch {
	case apierrors.IsNotFound(err):
		return DeploymentUnavailable
	case err != nil:
		report.Progress(name, "%s", report.FirstLine(err))

		return SecretKeyUnreachable
	}

	want := int32(1)
	if got.Spec.Replicas != nil {
		want = *got.Spec.Replicas
	}

	st := got.Status
	if st.ObservedGeneration < got.Generation || st.UpdatedReplicas < want || st.Replicas > st.UpdatedReplicas ||
		st.AvailableReplicas < want || st.AvailableReplicas < 1 {
		return DeploymentUnavailable
	}

	return DeploymentAvailable
}
