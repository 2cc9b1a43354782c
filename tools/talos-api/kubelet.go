package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	stdtls "crypto/tls"
	stdx509 "crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/constants"
)

// KubeletSpec scripts the nodes' kubelets. Without it no kubelet plays: a test writes the mirror
// pods itself. With it every configured node runs one, against the scenario's Kubernetes API
// (cluster.endpoint, signed in with a node client certificate from cluster.kubernetesCA, as a
// kubelet signs in: CN system:node:NAME, O system:nodes, so the API server's Node authorizer and
// NodeRestriction admission judge what it writes, as they judge a real kubelet).
type KubeletSpec struct {
	// HTTPCheckFrequencyMs is how often a kubelet polls Talos's static pod URL. Talos sets only the
	// URL (internal/app/machined/pkg/controllers/k8s/kubelet_spec.go:284 at v1.13.0 and v1.12.4,
	// config.StaticPodURL) and leaves the frequency to the kubelet's default, 20 s (Kubernetes
	// v1.34.1 pkg/kubelet/apis/config/v1beta1/defaults.go:83-84); a test scales it down.
	HTTPCheckFrequencyMs int `json:"httpCheckFrequencyMs"`
	// PodStartMs is how long after a boot the kubelet reports the containers of its static pods
	// started. Until then a mirror pod left from the boot before (the same pod: the same hash) keeps the
	// status that boot left it, Ready: nothing else writes a mirror pod's status, and the node
	// lifecycle controller marks pods not Ready only once the Node has been NotReady for its grace
	// (Kubernetes v1.34.1 pkg/controller/nodelifecycle/node_lifecycle_controller.go, MarkPodsNotReady).
	PodStartMs int `json:"podStartMs,omitempty"`
}

// What a kubelet does that the upgrader relies on, as Kubernetes v1.34.1 does it:
//
//   - it reads the static pod URL at start and then every HTTPCheckFrequency (pkg/kubelet/config/
//     http.go:58, wait.Until), and does nothing when the answer is the bytes it read last
//     (http.go:108-111): a pod Talos renders anew runs only from the next poll on;
//   - a static pod's UID and kubernetes.io/config.hash are a hash of the pod and the URL
//     (pkg/kubelet/config/common.go:60-91), its name is NAME-NODENAME (line 57);
//   - its mirror pod in the API is the pod with kubernetes.io/config.mirror set to that hash and the
//     Node as its controlling owner (pkg/kubelet/pod/mirror_client.go:69-107); a mirror pod whose hash
//     is not the static pod's is deleted (with its UID as precondition) and created anew
//     (pkg/kubelet/kubelet.go:3193-3224, tryReconcileMirrorPods), and none is made while the Node
//     does not exist (line 3214);
//   - a kubelet that starts registers its Node (noderegister.go), then reports its version and boot in
//     the Node's status.nodeInfo (kubeletVersion, bootID). Talos
//     restarts the kubelet when its spec changes (machine.kubelet.image, KubeletSpec), as at a boot;
//   - a container without a readiness probe counts as ready as soon as it runs (pkg/kubelet/prober/
//     prober_manager.go:298-306), and Talos gives kube-apiserver none (control_plane_static_pod.go:
//     455-566 at v1.13.0): a container that crash-loops (NodeSpec.CrashLoop) shows Ready each time it
//     starts, Waiting (CrashLoopBackOff) in between, its restartCount rising; the kubelet's back-off
//     (10 s, doubling: pkg/kubelet/kubelet.go:216) is scaled down here (crashRun, crashBackOff);
//   - after a boot it reports its static pods' containers started (PodStartMs), with the new start time.
//
// A new mirror pod's first status (Running, Ready) is kwok's (tools/kube_cluster.py: kwok's pod-ready
// stage, once per pod); every status after it is this kubelet's, written to pods/status as a kubelet
// writes it (the Node authorizer lets a node write its own pods' status).

// kubeletTick is how often a running kubelet looks whether its poll is due or Talos restarted it;
// mirrorSync how often it makes sure its mirror pods are there (a real kubelet reacts to its watch).
const (
	kubeletTick = 50 * time.Millisecond
	mirrorSync  = 250 * time.Millisecond
	// crashRun is how long a crash-looping container runs before it dies, crashBackOff how long the
	// kubelet waits before it starts it again.
	crashRun     = 400 * time.Millisecond
	crashBackOff = 600 * time.Millisecond
)

// crashLoop is one container's crash loop as the kubelet plays it.
type crashLoop struct {
	running  bool
	since    time.Time
	restarts int
}

// startKubelet runs the node's kubelet for this boot (called with the cluster's lock held).
func (n *Node) startKubelet() {
	k := n.c.sc.Cluster.Kubelet
	if k == nil || n.maintenance || n.active == nil {
		return
	}

	api, err := n.c.kubeClient(n.name)
	if err != nil {
		log.Printf("%s: kubelet: %s", n.name, err)

		return
	}

	// Talos's own client for the Node's labels and taints (noderegister.go): a control plane's is admin.
	talos := api
	if n.active.Machine().Type().IsControlPlane() {
		if talos, err = n.c.kubeAdminClient(); err != nil {
			log.Printf("%s: node apply: %s", n.name, err)

			return
		}
	}

	gen := n.gen
	period := time.Duration(k.HTTPCheckFrequencyMs) * time.Millisecond
	podStart := time.Duration(k.PodStartMs) * time.Millisecond
	n.kubeletRuns = map[string]bool{}

	go func() {
		var (
			image    string                    // the kubelet image it runs (a new one: Talos restarted it)
			restarts int                       // the control API's restarts it has seen
			data     []byte                    // what the last poll read
			taken    map[string]map[string]any // the static pods it runs: what it read then
			fresh    bool                      // taken from the last poll, not yet mirrored
			lastPoll time.Time                 // zero: a kubelet that starts polls at once (wait.Until)
			lastSync time.Time
			booted   = time.Now()
			started  bool                      // this boot's containers reported started
			loops    = map[string]*crashLoop{} // the containers that crash-loop, by component
			// The Node: registered by this kubelet process (registerWithAPIServer), next try and back-off;
			// what Talos last applied to it, and when it tries again.
			registered bool
			regAt      time.Time
			regStep    time.Duration
			applied    *nodeApply
			applyAt    time.Time
			applyStep  = registerFirst
		)

		for {
			n.c.mu.Lock()
			if n.gen != gen || !n.up {
				n.c.mu.Unlock()

				return
			}

			want, restarted, boot, ip := n.active.Machine().Kubelet().Image(), n.kubeletRestarts, n.bootID, n.ip
			reg, apply := n.nodeShape(imageTag(want))
			pods := n.staticPods()
			crashing := map[string]bool{}

			for _, name := range n.spec.CrashLoop {
				crashing[name] = true
			}

			startHeld := n.spec.PodStartHeld
			n.c.mu.Unlock()

			// A kubelet that starts (at the boot, or restarted by Talos) registers its Node first, then
			// reports its status: its version and boot.
			if want != image || restarted != restarts {
				image, restarts, data, lastPoll = want, restarted, nil, time.Time{}
				registered, regStep, regAt = false, registerFirst, time.Now().Add(registerFirst)
			}

			if !registered && !time.Now().Before(regAt) {
				if registered = api.register(reg); registered {
					api.reportVersion(n.name, imageTag(image), boot)
				} else {
					regStep = min(2*regStep, registerMost)
					regAt = time.Now().Add(regStep)
				}
			}

			// Talos applies the config's labels and taints to the Node once it is there, and again when the
			// config changes them.
			if registered && !sameApply(applied, &apply) && !time.Now().Before(applyAt) {
				if err := talos.applyNode(n.name, apply); err != nil {
					log.Printf("%s: node apply: %s", n.name, err)

					applyStep = min(2*applyStep, registerMost)
					applyAt = time.Now().Add(applyStep)
				} else {
					applied, applyStep = &apply, registerFirst
				}
			}

			if time.Since(lastPoll) >= period {
				lastPoll = time.Now()

				if raw, _ := json.Marshal(pods); !bytes.Equal(raw, data) { //nolint:errcheck
					// A container started anew (a pod taken for the first time, or changed) crash-loops
					// when its component is scripted to.
					for name, pod := range pods {
						if old, ok := taken[name]; ok && reflect.DeepEqual(old, pod) {
							continue
						}

						delete(loops, name)

						if crashing[name] {
							loops[name] = &crashLoop{running: true, since: time.Now()}
						}
					}

					data, taken, fresh = raw, pods, true
				}
			}

			// The kubelet syncs a static pod when it takes it, and again whenever its mirror pod goes
			// (HandlePodRemoves, handleMirrorPod): kwok, which deletes a deleted pod by name once more,
			// may take the new mirror pod with the old one.
			if fresh || time.Since(lastSync) >= mirrorSync {
				lastSync = time.Now()

				if api.takeStaticPods(n, taken) && fresh {
					fresh = false

					versions, annotations := map[string]any{}, map[string]any{}
					for name, pod := range taken {
						a := pod["metadata"].(map[string]any)["annotations"].(map[string]any)
						versions[name], annotations[name] = a[configVersionKey], a
					}

					if len(taken) > 0 {
						i := n.c.calls.begin(context.Background(), n.name, "kubelet/StaticPods", nil)
						n.c.calls.finish(i, map[string]any{"configVersions": versions, "annotations": annotations}, "OK")
					}
				}
			}

			// After a boot, once the containers have started: their status, the new start time (not while a
			// test holds them: NodeSpec.PodStartHeld).
			if !started && !startHeld && len(taken) > 0 && time.Since(booted) >= podStart {
				started = true

				for name := range taken {
					if loops[name] == nil {
						api.reportContainer(n.name, ip, name, true, time.Now(), 0)
					}
				}
			}

			for name, l := range loops {
				switch {
				case l.running && time.Since(l.since) >= crashRun:
					l.running, l.since = false, time.Now()
					l.restarts++
					api.reportContainer(n.name, ip, name, false, time.Time{}, l.restarts)
				case !l.running && time.Since(l.since) >= crashBackOff:
					l.running, l.since = true, time.Now()
					api.reportContainer(n.name, ip, name, true, l.since, l.restarts)
				}
			}

			n.c.mu.Lock()
			if n.gen == gen {
				for _, name := range controlPlaneComponents {
					_, runs := taken[name]
					n.kubeletRuns[name] = runs && (loops[name] == nil)
				}
			}
			n.c.mu.Unlock()

			time.Sleep(kubeletTick)
		}
	}()
}

// reportContainer writes a static pod's container status to its mirror pod, as the kubelet's status
// manager does: running since `started` and Ready (no readiness probe), or waiting in CrashLoopBackOff
// after its last run; restartCount as counted.
func (k *kubeAPI) reportContainer(node, ip, component string, running bool, started time.Time, restarts int) {
	now := time.Now().UTC().Format(time.RFC3339)
	ready := "False"
	state := map[string]any{"waiting": map[string]any{"reason": "CrashLoopBackOff", "message": "back-off restarting failed container " + component}}

	if running {
		ready = "True"
		state = map[string]any{"running": map[string]any{"startedAt": started.UTC().Format(time.RFC3339)}}
	}

	status := map[string]any{
		"phase": "Running",
		// A host-network pod's address is the node's (kwok's pod-ready stage, which matches a pod without
		// one, then leaves the pod to this kubelet).
		"hostIP": ip, "podIP": ip, "hostIPs": []any{map[string]any{"ip": ip}}, "podIPs": []any{map[string]any{"ip": ip}},
		"conditions": []any{
			map[string]any{"type": "Initialized", "status": "True", "lastTransitionTime": now},
			map[string]any{"type": "Ready", "status": ready, "lastTransitionTime": now},
			map[string]any{"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
			map[string]any{"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
		},
		"containerStatuses": []any{map[string]any{
			"name": component, "image": "", "imageID": "", "ready": running, "started": running, "restartCount": restarts, "state": state,
		}},
	}

	path := "/api/v1/namespaces/kube-system/pods/" + component + "-" + strings.ToLower(node) + "/status"

	// The image is the pod's: read it, as the kubelet knows it.
	var pod struct {
		Spec struct {
			Containers []struct {
				Image string `json:"image"`
			} `json:"containers"`
		} `json:"spec"`
	}

	if _, err := k.do(http.MethodGet, strings.TrimSuffix(path, "/status"), "", nil, &pod); err != nil {
		return
	}

	if len(pod.Spec.Containers) > 0 {
		cs := status["containerStatuses"].([]any)[0].(map[string]any)
		cs["image"], cs["imageID"] = pod.Spec.Containers[0].Image, pod.Spec.Containers[0].Image
	}

	if _, err := k.do(http.MethodPatch, path, "application/merge-patch+json", map[string]any{"status": status}, nil); err != nil {
		log.Printf("%s: kubelet: reporting %s: %s", node, component, err)
	}
}

func imageTag(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}

	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[i+1:]
	}

	return ""
}

// kubeAPI is a kubelet's client of the Kubernetes API.
type kubeAPI struct {
	server string
	client *http.Client
}

// kubeClient signs a node client certificate with the cluster's Kubernetes CA.
func (c *Cluster) kubeClient(node string) (*kubeAPI, error) {
	return c.kubeClientAs("system:node:"+node, "system:nodes")
}

// kubeAdminClient is the client a control plane's Talos signs itself in with to apply its Node's labels and
// taints: a certificate from the Kubernetes CA for CN admin, O system:masters (pkg/kubernetes/kubernetes.go:
// 139-174 at v1.13.0, NewTemporaryClientControlPlane; constants KubernetesAdminCertCommonName and
// KubernetesAdminCertOrganization). Talos dials the node's own API server; the stand-in the scenario's.
func (c *Cluster) kubeAdminClient() (*kubeAPI, error) {
	return c.kubeClientAs(constants.KubernetesAdminCertCommonName, constants.KubernetesAdminCertOrganization)
}

func (c *Cluster) kubeClientAs(cn, org string) (*kubeAPI, error) {
	if c.sc.Cluster.KubernetesCA == nil {
		return nil, fmt.Errorf("cluster.kubelet needs cluster.kubernetesCA (the API server's client CA)")
	}

	ca, err := x509.NewCertificateAuthorityFromCertificateAndKey(c.bundle.Certs.K8s)
	if err != nil {
		return nil, err
	}

	kp, err := x509.NewKeyPair(ca,
		x509.CommonName(cn),
		x509.Organization(org),
		x509.NotAfter(time.Now().Add(24*time.Hour)),
		x509.KeyUsage(stdx509.KeyUsageDigitalSignature|stdx509.KeyUsageKeyEncipherment),
		x509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth}),
	)
	if err != nil {
		return nil, err
	}

	pool := stdx509.NewCertPool()
	pool.AppendCertsFromPEM(c.bundle.Certs.K8s.Crt)

	tlsConfig := &stdtls.Config{MinVersion: stdtls.VersionTLS12, RootCAs: pool, Certificates: []stdtls.Certificate{*kp.Certificate}}

	return &kubeAPI{
		server: strings.TrimSuffix(c.sc.Cluster.Endpoint, "/"),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}},
	}, nil
}

func (k *kubeAPI) do(method, path, contentType string, body any, out any) (int, error) {
	var reader io.Reader

	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}

		reader = bytes.NewReader(raw)
	}

	req, err := http.NewRequest(method, k.server+path, reader)
	if err != nil {
		return 0, err
	}

	req.Header.Set("Accept", "application/json")

	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}

	resp, err := k.client.Do(req)
	if err != nil {
		return 0, err
	}

	defer resp.Body.Close() //nolint:errcheck

	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}

	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(raw)))
	}

	if out != nil {
		return resp.StatusCode, json.Unmarshal(raw, out)
	}

	return resp.StatusCode, nil
}

// reportVersion is a starting kubelet's Node status update: the version it runs, and the boot it runs in
// (status.nodeInfo.bootID: k8s.io/kubernetes v1.34.1 pkg/kubelet/nodestatus/setters.go:241-252, from
// cadvisor's MachineInfo.BootID, /proc/sys/kernel/random/boot_id, which Talos's boot ID is too).
func (k *kubeAPI) reportVersion(node, version, boot string) {
	body := map[string]any{"status": map[string]any{"nodeInfo": map[string]any{"kubeletVersion": version, "bootID": boot}}}

	if _, err := k.do(http.MethodPatch, "/api/v1/nodes/"+node+"/status", "application/merge-patch+json", body, nil); err != nil {
		log.Printf("%s: kubelet: reporting version %s: %s", node, version, err)

		return
	}

	log.Printf("%s: kubelet %s started", node, version)
}

type objectMeta struct {
	Metadata struct {
		UID         string            `json:"uid"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
}

// takeStaticPods reconciles the mirror pods with the static pods the kubelet runs; false when the API
// could not be written (it tries again).
func (k *kubeAPI) takeStaticPods(n *Node, pods map[string]map[string]any) bool {
	var node objectMeta

	if code, err := k.do(http.MethodGet, "/api/v1/nodes/"+n.name, "", nil, &node); err != nil {
		if code != http.StatusNotFound {
			log.Printf("%s: kubelet: %s", n.name, err)
		}

		return false
	}

	// The kubelet knows its pods from a watch of those bound to it (the Node authorizer lets a node
	// list pods only with that field selector, AuthorizeNodeWithSelectors).
	var bound struct {
		Items []struct {
			Metadata struct {
				Name        string            `json:"name"`
				Namespace   string            `json:"namespace"`
				UID         string            `json:"uid"`
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		} `json:"items"`
	}

	if _, err := k.do(http.MethodGet, "/api/v1/pods?fieldSelector=spec.nodeName%3D"+n.name, "", nil, &bound); err != nil {
		log.Printf("%s: kubelet: %s", n.name, err)

		return false
	}

	mirrors := map[string]objectMeta{}

	for _, p := range bound.Items {
		if p.Metadata.Namespace == "kube-system" {
			var m objectMeta
			m.Metadata.UID, m.Metadata.Annotations = p.Metadata.UID, p.Metadata.Annotations
			mirrors[p.Metadata.Name] = m
		}
	}

	ok := true

	for name, pod := range pods {
		if err := k.mirror(n.name, node.Metadata.UID, name, pod, mirrors); err != nil {
			log.Printf("%s: kubelet: %s", n.name, err)

			ok = false
		}
	}

	return ok
}

// mirror is tryReconcileMirrorPods for one static pod: keep a mirror pod of its hash, else replace it.
func (k *kubeAPI) mirror(node, nodeUID, name string, pod map[string]any, mirrors map[string]objectMeta) error {
	const source = "http://127.0.0.1:50001/static-pods" // Talos's static pod URL (the hash covers it, common.go:70)

	raw, err := json.Marshal(pod)
	if err != nil {
		return err
	}

	sum := sha256.Sum256(append(raw, []byte("url:"+source)...))
	hash := hex.EncodeToString(sum[:16])
	podName := name + "-" + strings.ToLower(node)
	path := "/api/v1/namespaces/kube-system/pods/" + podName

	existing, found := mirrors[podName]

	switch {
	case !found:
	case existing.Metadata.Annotations["kubernetes.io/config.mirror"] == hash:
		return nil
	default:
		zero := 0
		del := map[string]any{"gracePeriodSeconds": zero, "preconditions": map[string]any{"uid": existing.Metadata.UID}}

		if code, err := k.do(http.MethodDelete, path, "application/json", del, nil); err != nil && code != http.StatusNotFound && code != http.StatusConflict {
			return err
		}
	}

	var mirror map[string]any
	if err := json.Unmarshal(raw, &mirror); err != nil {
		return err
	}

	meta := mirror["metadata"].(map[string]any)
	annotations := meta["annotations"].(map[string]any)
	annotations["kubernetes.io/config.hash"] = hash
	annotations["kubernetes.io/config.mirror"] = hash
	annotations["kubernetes.io/config.source"] = "http"
	annotations["kubernetes.io/config.seen"] = time.Now().UTC().Format(time.RFC3339Nano)
	meta["name"] = podName
	meta["ownerReferences"] = []any{map[string]any{"apiVersion": "v1", "kind": "Node", "name": node, "uid": nodeUID, "controller": true}}
	mirror["spec"].(map[string]any)["nodeName"] = node

	// The old mirror pod may still be going: create until the name is free.
	for range 100 {
		code, err := k.do(http.MethodPost, "/api/v1/namespaces/kube-system/pods", "application/json", mirror, nil)
		if code != http.StatusConflict {
			return err
		}

		time.Sleep(20 * time.Millisecond)
	}

	return fmt.Errorf("%s: the old mirror pod never went", podName)
}
