package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iluvatar/upgrader/internal/report"
)

// The discovery window: how long an unknown machine that PXE-boots is booted to be discovered. Closed, boot.ipxe
// sends it back to its firmware (`exit`), which boots its next device, its disk: a household PC with the network
// first in its boot order, or a second NIC of a known machine, is never taken over unless the user asked for it
// now. The window is one ConfigMap (`until`: Unix seconds), which the netboot pod's discovery-window loop reads and
// turns into the file boot.ipxe fetches (plans/netboot/window.py), closing it at `until` by the Pi's own clock.
const (
	MinWindow = time.Minute
	MaxWindow = 12 * time.Hour
)

// Window is what `--arm` and `--disarm` print: until when the window is open (0: closed), and where.
type Window struct {
	Until     int64  `json:"until"`
	APIServer string `json:"apiServer"`
	ConfigMap string `json:"configMap"`
}

// arm opens the window until now+o.arm, or closes it (--disarm), creating the ConfigMap when there is none.
func arm(ctx context.Context, o options, now time.Time, out io.Writer) error {
	cs, cfg, err := clientset(o)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, o.deadline)
	defer cancel()

	until := int64(0)
	if !o.disarm {
		until = now.Add(o.arm).Unix()
	}

	data := map[string]string{"until": strconv.FormatInt(until, 10)}
	cms := cs.CoreV1().ConfigMaps(o.namespace)
	name := fmt.Sprintf("ConfigMap %s/%s at %s", o.namespace, o.window, cfg.Host)

	cm, err := cms.Get(ctx, o.window, metav1.GetOptions{})

	switch {
	case apierrors.IsNotFound(err):
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{
				Name: o.window, Namespace: o.namespace,
				Labels: map[string]string{"app.kubernetes.io/part-of": "iluvatar", "app.kubernetes.io/name": "netboot"},
			},
			Data: data,
		}
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
	case err == nil:
		cm.Data = data
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	}

	if err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("%s: the API server has no namespace %s (is it the Ainur's, with the netboot service?)", name, o.namespace)
		}

		return fmt.Errorf("%s: %s", name, report.FirstLine(err))
	}

	return json.NewEncoder(out).Encode(Window{Until: until, APIServer: cfg.Host, ConfigMap: o.namespace + "/" + o.window})
}
