// kube-vip-election: the service address's election as kube-vip v0.9.2 runs it for one Service, on a lab Pi
// (tests/netns/test_service_address.py), with client-go's own leader election and transport rather than a model of them.
//
//   - pkg/manager/servicesLeader.go:47-60, :83-113: a Lease lock `kubevip-<service>` in the Service's namespace, the
//     node's name as identity, RunOrDie with ReleaseOnCancel and the configured lease, renew deadline and retry period;
//     on leading the address goes on the interface, on stopping it is deleted; pkg/manager/watch_endpoints.go:288-306:
//     the election starts again at once whenever it returns.
//   - pkg/k8s/client.go:17, :34-65: a rest.Config with a 10 s Timeout, so every request is bounded by it, and client-go's
//     transport: every request on one HTTP/2 connection to the API server, redialled only once that one is closed.
//   - pkg/arp/arp.go:78-96, pkg/vip/arp.go:70-115: while the address is held, a gratuitous ARP every 3 s (vip_arpRate's
//     default), a reply whose target hardware address is its own, then a request, alternately.
//
// Each dial to the API server is logged with its local address (`dialed`), so a test can black-hole that connection, and
// each update of the Lease (`renewed`, or `update failed`).
// One JSON line per event on standard output, as tests/netns/election.py writes them.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

var out sync.Mutex

func logEvent(event string, extra map[string]any) {
	line := map[string]any{"t": float64(time.Now().UnixNano()) / 1e9, "event": event}
	for k, v := range extra {
		line[k] = v
	}
	b, _ := json.Marshal(line)
	out.Lock()
	defer out.Unlock()
	fmt.Println(string(b))
}

// gratuitousARP sends one of kube-vip's gratuitous ARPs for ip from eth0 (pkg/vip/arp.go:70-115, sendARP :117-150).
func gratuitousARP(ip net.IP, request bool) error {
	iface, err := net.InterfaceByName("eth0")
	if err != nil {
		return err
	}
	op, target := uint16(2), []byte(iface.HardwareAddr)
	if request {
		op, target = 1, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	}
	msg := make([]byte, 8, 28)
	binary.BigEndian.PutUint16(msg[0:], 1)
	binary.BigEndian.PutUint16(msg[2:], 0x0800)
	msg[4], msg[5] = 6, 4
	binary.BigEndian.PutUint16(msg[6:], op)
	msg = append(msg, iface.HardwareAddr...)
	msg = append(msg, ip.To4()...)
	msg = append(msg, target...)
	msg = append(msg, ip.To4()...)
	proto := uint16(syscall.ETH_P_ARP)
	proto = proto<<8 | proto>>8
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, int(proto))
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	ll := syscall.SockaddrLinklayer{Protocol: proto, Ifindex: iface.Index, Hatype: 1, Halen: 6}
	copy(ll.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	return syscall.Sendto(fd, msg, 0, &ll)
}

// loggedLock is the Lease lock kube-vip uses, saying when an update (a renewal) went through or failed.
type loggedLock struct {
	*resourcelock.LeaseLock
}

func (l loggedLock) Update(ctx context.Context, record resourcelock.LeaderElectionRecord) error {
	err := l.LeaseLock.Update(ctx, record)
	if err != nil {
		logEvent("update failed", map[string]any{"error": err.Error()})
	} else if record.HolderIdentity == l.Identity() {
		logEvent("renewed", nil)
	}
	return err
}

func announce(ctx context.Context, ip net.IP) {
	request := false
	for {
		if err := gratuitousARP(ip, request); err != nil {
			logEvent("arp failed", map[string]any{"error": err.Error()})
		}
		request = !request
		select {
		case <-ctx.Done():
			return
		case <-time.After(3 * time.Second):
		}
	}
}

func main() {
	host := flag.String("host", "", "API server address")
	port := flag.String("port", "", "API server port")
	ca := flag.String("ca", "", "API server CA file")
	tokenFile := flag.String("token-file", "", "service account token file")
	namespace := flag.String("namespace", "", "the Service's namespace")
	lease := flag.String("lease", "", "the Lease's name")
	identity := flag.String("identity", "", "this node's name")
	address := flag.String("address", "", "the service address")
	election := flag.String("election", "", "vip_leaseduration, vip_renewdeadline, vip_retryperiod as JSON")
	flag.Parse()

	var timings map[string]string
	if err := json.Unmarshal([]byte(*election), &timings); err != nil {
		panic(err)
	}
	seconds := func(key string) time.Duration {
		n, err := strconv.Atoi(timings[key])
		if err != nil {
			panic(err)
		}
		return time.Duration(n) * time.Second
	}
	token, err := os.ReadFile(*tokenFile)
	if err != nil {
		panic(err)
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	config := &rest.Config{
		Host:            "https://" + net.JoinHostPort(*host, *port),
		BearerToken:     string(token),
		TLSClientConfig: rest.TLSClientConfig{CAFile: *ca},
		// kube-vip's own: pkg/k8s/client.go:62-65.
		QPS:     100,
		Burst:   250,
		Timeout: 10 * time.Second,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if err == nil {
				logEvent("dialed", map[string]any{"local": conn.LocalAddr().String()})
			}
			return conn, err
		},
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		panic(err)
	}
	ip := net.ParseIP(*address)
	for { // watch_endpoints.go:288-306: started again at once whenever it returns
		lock := loggedLock{&resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Name: *lease, Namespace: *namespace},
			Client:     client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: *identity},
		}}
		var arpCancel context.CancelFunc
		active := false
		leaderelection.RunOrDie(context.Background(), leaderelection.LeaderElectionConfig{
			Lock:            lock,
			ReleaseOnCancel: true,
			LeaseDuration:   seconds("vip_leaseduration"),
			RenewDeadline:   seconds("vip_renewdeadline"),
			RetryPeriod:     seconds("vip_retryperiod"),
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					logEvent("leading", nil)
					if err := exec.Command("ip", "addr", "replace", *address+"/32", "dev", "eth0").Run(); err != nil {
						logEvent("address failed", map[string]any{"error": err.Error()})
						return
					}
					active = true
					var arpCtx context.Context
					arpCtx, arpCancel = context.WithCancel(context.Background())
					go announce(arpCtx, ip)
					logEvent("address added", nil)
				},
				OnStoppedLeading: func() {
					logEvent("stopped leading", nil)
					if active {
						arpCancel()
						_ = exec.Command("ip", "addr", "del", *address+"/32", "dev", "eth0").Run()
						logEvent("address deleted", nil)
					}
				},
				OnNewLeader: func(holder string) {
					if holder != *identity {
						logEvent("held", map[string]any{"holder": holder})
					}
				},
			},
		})
	}
}
