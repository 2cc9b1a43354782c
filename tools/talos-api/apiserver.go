package main

import (
	stdtls "crypto/tls"
	stdx509 "crypto/x509"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/siderolabs/crypto/x509"
)

// A control plane's own kube-apiserver, as far as the upgrader asks it: /readyz at the node's address
// and its local port (the pod's --secure-port is APIServerConfig.LocalPort, the config's
// cluster.controlPlane.localAPIServerPort, 6443 by default: machinery v1.13.0
// v1alpha1_clusterconfig.go:130-136; and --bind-address 0.0.0.0: control_plane_static_pod.go:357-393
// at v1.13.0). It answers only while the node runs a kube-apiserver: Talos serves its pod and, with the
// kubelet played, the kubelet runs it and it is not in a crash loop's back-off (kubelet.go). Like a
// Talos cluster's API server it asks for a client certificate from the Kubernetes CA (anonymous-auth
// false, line 358) and serves one from it with the node's addresses and 127.0.0.1 in it
// (secrets/kubernetes_cert_sans.go:123-141); its readiness is scripted (NodeSpec.APIServerNotReady),
// and a failing /readyz answers as the API server's healthz does (k8s.io/apiserver v0.34.1
// pkg/server/healthz/healthz.go:282-313: a line per check, then "readyz check failed", status 500).

// startAPIServer serves the node's API server for this boot (called with the cluster's lock held).
func (n *Node) startAPIServer() {
	if !n.controlPlane() || n.maintenance || n.active == nil || n.active.Cluster() == nil {
		return
	}

	port := n.active.Cluster().LocalAPIServerPort()

	lis, err := net.Listen("tcp", net.JoinHostPort(n.ip, strconv.Itoa(port)))
	if err != nil {
		log.Printf("%s: kube-apiserver: %s", n.name, err)

		return
	}

	ca, err := x509.NewCertificateAuthorityFromCertificateAndKey(n.c.bundle.Certs.K8s)
	if err != nil {
		log.Printf("%s: kube-apiserver: %s", n.name, err)
		lis.Close() //nolint:errcheck

		return
	}

	kp, err := x509.NewKeyPair(ca,
		x509.CommonName("kube-apiserver"),
		x509.IPAddresses([]net.IP{net.ParseIP(n.ip), net.ParseIP("127.0.0.1")}),
		x509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth}),
		x509.NotAfter(time.Now().Add(24*time.Hour)),
	)
	if err != nil {
		log.Printf("%s: kube-apiserver: %s", n.name, err)
		lis.Close() //nolint:errcheck

		return
	}

	pool := stdx509.NewCertPool()
	pool.AppendCertsFromPEM(n.c.bundle.Certs.K8s.Crt)

	gen := n.gen
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig: &stdtls.Config{
			MinVersion: stdtls.VersionTLS12, Certificates: []stdtls.Certificate{*kp.Certificate},
			ClientCAs: pool, ClientAuth: stdtls.RequireAndVerifyClientCert,
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.serveAPI(gen, w, r) }),
	}

	go srv.ServeTLS(lis, "", "") //nolint:errcheck

	// It goes with the boot.
	go func() {
		for {
			time.Sleep(kubeletTick)

			n.c.mu.Lock()
			over := n.gen != gen || !n.up
			n.c.mu.Unlock()

			if over {
				srv.Close() //nolint:errcheck

				return
			}
		}
	}()
}

func (n *Node) serveAPI(gen int, w http.ResponseWriter, r *http.Request) {
	n.c.mu.Lock()
	running := n.gen == gen && n.up && n.apiServerRuns()
	notReady := n.spec.APIServerNotReady
	n.c.mu.Unlock()

	if !running {
		// No process listens: the connection goes with no answer.
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close() //nolint:errcheck

				return
			}
		}

		http.Error(w, "", http.StatusServiceUnavailable)

		return
	}

	if r.URL.Path != "/readyz" {
		http.NotFound(w, r)

		return
	}

	if notReady {
		http.Error(w, "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[+]poststarthook/start-apiserver-admission-initializer ok\nreadyz check failed", http.StatusInternalServerError)

		return
	}

	fmt.Fprint(w, "ok")
}

// apiServerRuns: the node runs a kube-apiserver now (called with the cluster's lock held). Without the
// kubelet played, as soon as Talos serves its pod.
func (n *Node) apiServerRuns() bool {
	if _, served := n.staticPods()[kubeAPIServer]; !served {
		return false
	}

	if n.c.sc.Cluster.Kubelet == nil {
		return true
	}

	return n.kubeletRuns[kubeAPIServer]
}
