package apply

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// bootReadTries bounds bootReported's retries of an answer that is not NotFound (a wait.Every apart).
const bootReadTries = 10

// bootReported: the Node's kubelet reports the boot it runs in (status.nodeInfo.bootID), read before a
// reboot, so that after it the step waits for the Node of the new boot (waitNodeOfThisBoot). No Node (NotFound)
// reports none: the kubelet of the new boot registers it afresh. Any other error is asked again, up to
// bootReadTries times a wait.Every apart, and then is the answer: a single transient error must not skip the
// wait, and with it let the old boot's Ready pass for the new one. A Node that exists with no boot ID was not
// written by a kubelet (every kubelet reports one: k8s.io/kubernetes v1.34.1 pkg/kubelet/nodestatus/
// setters.go:241-252): nothing to wait for.
func bootReported(ctx context.Context, every time.Duration, get func(context.Context) (string, error)) (bool, error) {
	var last error

	for range bootReadTries {
		id, err := get(ctx)

		switch {
		case err == nil:
			return id != "", nil
		case apierrors.IsNotFound(err):
			return false, nil
		}

		last = err

		select {
		case <-ctx.Done():
			return false, last
		case <-time.After(every):
		}
	}

	return false, last
}
