package main

import (
	stdtls "crypto/tls"
	stdx509 "crypto/x509"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
	secretsres "github.com/siderolabs/talos/pkg/machinery/resources/secrets"
)

// A control plane's own kube-apiserver, as far as the upgrader asks it: /readyz at the node's address
// and its local port (the pod's --secure-port is APIServerConfig.LocalPort, the config's
// cluster.controlPlane.localAPIServerPort, 6443 by default: machinery v1.13.0
// v1alpha1_clusterconfig.go:130-136; and --bind-address 0.0.0.0: control_plane_static_pod.go:357-393
// at v1.13.0). It answers only while the node runs a kube-apiserver: Talos serves its pod and, with the
// kubelet played, the kubelet runs it and it is not in a crash loop's back-off (kubelet.go). Like a
// Talos cluster's API server it asks for a client certificate from the Kubernetes CA (anonymous-auth
// false, line 358) and serves one from it with the names Talos gives it (apiServerSANs); its readiness
// is scripted (NodeSpec.APIServerNotReady),
// and a failing /readyz answers as the API server's healthz does (k8s.io/apiserver v0.34.1
// pkg/server/healthz/healthz.go:282-313: a line per check, then "readyz check failed", status 500).

// startAPIServer serves the node's API server for this boot (called with the cluster's lock held). It
// listens until the boot ends: goDown closes it (stopAPIServer) under the same lock, before any later
// boot can run, so the next boot's Listen finds the port free. (Closing it from a goroutine that looked
// every kubeletTick whether the boot had ended left the port bound when the node came back within that
// tick: a power cycle of 0 ms, or a busy lock. The next boot's Listen then failed "address already in
// use", and that boot had no API server at all, until its next reboot.)
func (n *Node) startAPIServer() {
	if !n.controlPlane() || n.maintenance || n.active == nil || n.active.Cluster() == nil {
		return
	}

	port := n.active.Cluster().LocalAPIServerPort()

	dnsNames, ips, err := n.apiServerSANs()
	if err != nil {
		log.Printf("%s: kube-apiserver: %s", n.name, err)

		return
	}

	ca, err := x509.NewCertificateAuthorityFromCertificateAndKey(n.c.bundle.Certs.K8s)
	if err != nil {
		log.Printf("%s: kube-apiserver: %s", n.name, err)

		return
	}

	kp, err := x509.NewKeyPair(ca,
		x509.CommonName("kube-apiserver"),
		x509.DNSNames(dnsNames),
		x509.IPAddresses(ips),
		x509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth}),
		x509.NotAfter(time.Now().Add(24*time.Hour)),
	)
	if err != nil {
		log.Printf("%s: kube-apiserver: %s", n.name, err)

		return
	}

	lis, err := net.Listen("tcp", net.JoinHostPort(n.ip, strconv.Itoa(port)))

	// A serve goroutine of the boot before that the test hook holds runs now, once this boot has tried to listen.
	if n.serveHeld != nil {
		close(n.serveHeld)
		n.serveHeld = nil
	}

	if err != nil {
		log.Printf("%s: kube-apiserver: %s", n.name, err)

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
	n.apiSrv, n.apiLis = srv, lis

	// The test hook (NodeSpec.APIServerServeHeld): the first boot's serve goroutine waits until the next boot has
	// tried to listen, the order in which the race below is lost.
	var held chan struct{}
	if n.spec.APIServerServeHeld && !n.serveHeldUsed {
		held = make(chan struct{})
		n.serveHeld, n.serveHeldUsed = held, true
	}

	go func() {
		if held != nil {
			<-held
		}

		srv.ServeTLS(lis, "", "") //nolint:errcheck
	}()
}

// stopAPIServer closes this boot's API server, its listener and every connection, at once (called with the
// cluster's lock held, where the boot ends), so the port is free when it returns. The listener is closed here,
// not left to http.Server.Close: Close closes only the listeners Serve has tracked, and Serve tracks its listener
// in the goroutine startAPIServer starts (Go 1.26 net/http/server.go:3411-3417, Serve: trackListener after `defer l.Close()`);
// a Close that runs before that goroutine does finds none, and the goroutine closes the listener later, on its
// way out, so a boot back at once found the port bound. Closing a listener twice is harmless (net.TCPListener.Close
// reports an error, nothing else), and it returns once the socket is closed (internal/poll FD.Close waits for it).
func (n *Node) stopAPIServer() {
	if n.apiSrv != nil {
		n.apiSrv.Close() //nolint:errcheck
		n.apiSrv = nil
	}

	if n.apiLis != nil {
		n.apiLis.Close() //nolint:errcheck
		n.apiLis = nil
	}
}

// apiServerSANs are the names Talos gives the API server's certificate, as its KubernetesCertSANsController
// makes them (internal/app/machined/pkg/controllers/secrets/kubernetes_cert_sans.go:118-143 at v1.13.0): the
// cluster endpoint's host (line 123: the VIP, or the name, clients reach the API by, and check the certificate
// for), cluster.apiServer.certSANs (124), the in-cluster names of the kubernetes Service and localhost
// (126-132), the node's hostname and FQDN (134-137), the kubernetes Service's IP (139: the first address of the
// service subnet, config Network().APIServerIPs, from the root secrets: secrets/root.go:100-105), the node's
// addresses (140) and 127.0.0.1 (141), sorted (143). The spec is Talos's own type, CertSANSpec (machinery
// resources/secrets/cert_sans.go), whose Append files an IP as an IP address and a name as a DNS name.
func (n *Node) apiServerSANs() ([]string, []net.IP, error) {
	cluster := n.active.Cluster()

	apiServerIPs, err := cluster.Network().APIServerIPs()
	if err != nil {
		return nil, nil, fmt.Errorf("the kubernetes Service's IP: %w", err)
	}

	nodeIP, err := netip.ParseAddr(n.ip)
	if err != nil {
		return nil, nil, err
	}

	var spec secretsres.CertSANSpec

	spec.Append(cluster.Endpoint().Hostname())
	spec.Append(cluster.CertSANs()...)
	spec.AppendDNSNames(
		"kubernetes",
		"kubernetes.default",
		"kubernetes.default.svc",
		"kubernetes.default.svc."+cluster.Network().DNSDomain(),
		"localhost",
	)

	// The stand-in's HostnameStatus has no domain (node.go, writeConfigs): its FQDN is the hostname.
	hostname := network.HostnameStatusSpec{Hostname: n.hostname()}
	spec.Append(hostname.Hostname, hostname.FQDN())
	spec.AppendIPs(apiServerIPs...)
	spec.AppendIPs(nodeIP)
	spec.AppendIPs(netip.MustParseAddr("127.0.0.1"))
	spec.Sort()

	return spec.DNSNames, spec.StdIPs(), nil
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
