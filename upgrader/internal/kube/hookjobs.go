package kube

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/wait"
)

// StopJob makes sure a hook Job can no longer act: a Job that finished (a terminal condition, no pod
// active or terminating) is left as it is; one still pending or running (a run stopped while `ceph osd set
// noout` waited for its pod) is deleted with foreground propagation, and waited for until it is gone, which
// the garbage collector lets happen only once every pod it owns is deleted (its pods carry
// blockOwnerDeletion). Run before the after hooks: RunJob replaces only a Job of its own name, so a before
// hook's pod that started late could otherwise set noout after the after hook unset it, and nothing would
// unset it again.
func (k *Client) StopJob(ctx context.Context, node string, job batchv1.Job) error {
	if job.Namespace == "" {
		job.Namespace = "default"
	}

	jobs := k.cs.BatchV1().Jobs(job.Namespace)
	ref := JobRef(job)

	cctx, cancel := wait.Call(ctx)
	got, err := jobs.Get(cctx, job.Name, metav1.GetOptions{})

	cancel()

	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	case finished(got):
		return nil
	}

	report.Progress(node, "hook: Job %s has not finished: deleting it and its pods before the after hooks run (it could still do what they undo)", ref)

	foreground := metav1.DeletePropagationForeground

	if err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		cctx, cancel := wait.Call(ctx)
		defer cancel()

		err := jobs.Delete(cctx, job.Name, metav1.DeleteOptions{PropagationPolicy: &foreground})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}

		_, err = jobs.Get(cctx, job.Name, metav1.GetOptions{})

		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return err
		}

		return fmt.Errorf("the Job %s is still being deleted (its pods go first)", ref)
	}); err != nil {
		return err
	}

	report.Progress(node, "hook: Job %s and its pods are gone", ref)

	return nil
}

// finished: the Job has a terminal condition and no pod left active or terminating.
func finished(j *batchv1.Job) bool {
	if j.Status.Active > 0 || (j.Status.Terminating != nil && *j.Status.Terminating > 0) {
		return false
	}

	for _, c := range j.Status.Conditions {
		if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) {
			return true
		}
	}

	return false
}
