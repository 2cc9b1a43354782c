// Package discovery is `upgrader discover`, what `iluvatar discover` reads: the netboot service's leases, from the
// Ainur's API with the user's own kubeconfig, and what each machine waiting in Talos's maintenance mode says it is.
//
// It only reads. The leases are one ConfigMap (plans/netboot/leases.py keeps dnsmasq's lease file there), read
// with client-go as kubectl reads it (the kubeconfig's loading rules, its exec plugins and OIDC included). A
// machine is asked as `talosctl get disks --insecure` asks it (cmd/talosctl/pkg/talos/global/client.go:133-165 at
// v1.13.0: TLS that verifies nothing, no client certificate, the machine itself as the endpoint), over the resource
// API's List and Get, which Talos serves in maintenance mode to anyone with the reader role (internal/app/resources/
// access.go:25-65; maintenance roles: v1.12.4 internal/app/machined/pkg/controllers/runtime/maintenance_service.go:
// 129-132, v1.13.0 api_service_config.go:110-118 with internal/app/apid/service.go:119-121), and Version, which a
// Talos 1.13 machine answers a reader (internal/app/machined/pkg/system/services/machined.go:112) and a 1.12 one
// refuses, Unimplemented "API is not implemented in maintenance mode" (internal/app/maintenance/server.go:161-165,
// 384-389): recorded, not a failure.
//
// The answer is one JSON object on stdout: {"leases": [...], "machines": [...]}; nothing on the LAN is changed.
//
// Every string in it came from a machine (or from a DHCP client, through dnsmasq's lease file), which anyone on the
// LAN can be: each is made printable before it is encoded (Printable), so a model or a manufacturer with a newline
// cannot become a line of the stack file `iluvatar discover --write` edits.
package discovery

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/resources/block"
	"github.com/siderolabs/talos/pkg/machinery/resources/hardware"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/report"
)

// Lease is one line of dnsmasq's lease file: `<expiry> <mac> <ip> <hostname|*> <client-id|*>` (expiry 0: infinite).
type Lease struct {
	Expiry   int64  `json:"expiry"`
	MAC      string `json:"mac"`
	IP       string `json:"ip"`
	Hostname string `json:"hostname"`
	ClientID string `json:"clientId"`
}

// Disk is block.DiskSpec as the machine published it (pkg/machinery/resources/block/disk.go:26-54).
type Disk struct {
	ID         string   `json:"id"`
	DevPath    string   `json:"devPath"`
	Size       uint64   `json:"size"`
	PrettySize string   `json:"prettySize"`
	Model      string   `json:"model"`
	Serial     string   `json:"serial"`
	WWID       string   `json:"wwid"`
	Modalias   string   `json:"modalias"`
	UUID       string   `json:"uuid"`
	BusPath    string   `json:"busPath"`
	SubSystem  string   `json:"subSystem"`
	Transport  string   `json:"transport"`
	Rotational bool     `json:"rotational"`
	Readonly   bool     `json:"readonly"`
	CDROM      bool     `json:"cdrom"`
	Symlinks   []string `json:"symlinks"`
}

// Volume is a block.DiscoveredVolume: a disk's partition table, or a partition by label and filesystem.
type Volume struct {
	ID             string `json:"id"`
	Type           string `json:"type"`
	DevPath        string `json:"devPath"`
	ParentDevPath  string `json:"parentDevPath"`
	Name           string `json:"name"`
	Label          string `json:"label"`
	PartitionLabel string `json:"partitionLabel"`
	Size           uint64 `json:"size"`
}

// Link is a network.LinkStatus, the part that tells a NIC.
type Link struct {
	ID            string `json:"id"`
	Physical      bool   `json:"physical"`
	HardwareAddr  string `json:"hardwareAddr"`
	PermanentAddr string `json:"permanentAddr"`
	SpeedMbps     int    `json:"speedMbps"`
	Driver        string `json:"driver"`
	Up            bool   `json:"up"`
}

// System is hardware.SystemInformation (SMBIOS); absent on a board without it.
type System struct {
	Manufacturer string `json:"manufacturer"`
	ProductName  string `json:"productName"`
	Version      string `json:"version"`
	SerialNumber string `json:"serialNumber"`
	UUID         string `json:"uuid"`
	SKUNumber    string `json:"skuNumber"`
}

// Machine is what one machine in maintenance mode said; Error when it could not be asked at all.
type Machine struct {
	Name     string   `json:"name"`
	Address  string   `json:"address"`
	Hostname string   `json:"hostname"`
	Version  string   `json:"version"`
	Arch     string   `json:"arch"`
	Refused  []string `json:"refused"` // calls it answered with an error, as "Method: Code: message"
	Disks    []Disk   `json:"disks"`
	Volumes  []Volume `json:"volumes"`
	Links    []Link   `json:"links"`
	System   *System  `json:"system"`
	Error    string   `json:"error,omitempty"`
	// Configured: its API asked for a client certificate, as a configured Talos does (apid's TLS is Mutual:
	// internal/app/apid/pkg/provider/provider.go:110 at v1.12.4, :110-118 at v1.13.0) and one in maintenance mode
	// does not (ServerOnly: internal/app/maintenance/provider.go:33 at v1.12.4; skipClientCertVerify at v1.13.0).
	Configured bool `json:"configured,omitempty"`
}

// Answer is what the command prints.
type Answer struct {
	Leases   []Lease   `json:"leases"`
	Machines []Machine `json:"machines"`
	// LeasesError: the leases could not be read (the command fails unless machines were named).
	LeasesError string `json:"leasesError,omitempty"`
}

type options struct {
	kubeconfig, context, namespace, configmap, prefix, window string
	leases, disarm                                            bool
	nodes                                                     input.NodeList
	deadline, arm                                             time.Duration
}

// Parse reads `discover`'s flags; it reads no stdin (it needs no secret of the stack).
func Parse(args []string, _ io.Reader) (func(context.Context) error, error) {
	f := input.NewFlags("discover")

	var o options

	f.StringVar(&o.kubeconfig, "kubeconfig", "", "the Ainur's kubeconfig (default: $KUBECONFIG, then ~/.kube/config, as kubectl)")
	f.StringVar(&o.context, "context", "", "the kubeconfig's context (default: its current one)")
	f.StringVar(&o.namespace, "namespace", "netboot", "the netboot service's namespace")
	f.StringVar(&o.configmap, "configmap", "dnsmasq-leases", "the ConfigMap that holds dnsmasq's lease file")
	f.StringVar(&o.prefix, "prefix", "discovery-", "ask every leased machine whose DHCP name starts so")
	f.BoolVar(&o.leases, "leases", true, "read the leases (false: ask only the --node machines)")
	f.Var(&o.nodes, "node", "NAME=IP[:PORT] of a machine to ask besides the leases' (repeatable)")
	f.DurationVar(&o.deadline, "deadline", 10*time.Second, "how long each machine (and the API server) has to answer")
	f.StringVar(&o.window, "window", "discovery-window", "the ConfigMap that holds the discovery window (--arm, --disarm)")
	f.DurationVar(&o.arm, "arm", 0, "open the discovery window for this long, then exit (MinWindow to MaxWindow)")
	f.BoolVar(&o.disarm, "disarm", false, "close the discovery window now, then exit")

	if err := f.ParseArgs(args); err != nil {
		return nil, err
	}

	if o.deadline <= 0 {
		return nil, input.Usagef("--deadline must be positive")
	}

	if o.arm != 0 || o.disarm {
		if o.disarm && o.arm != 0 {
			return nil, input.Usagef("--arm and --disarm: give one")
		}

		if !o.disarm && (o.arm < MinWindow || o.arm > MaxWindow) {
			return nil, input.Usagef("--arm %s: a discovery window is open from %s to %s", o.arm, MinWindow, MaxWindow)
		}

		return func(ctx context.Context) error { return arm(ctx, o, time.Now(), os.Stdout) }, nil
	}

	if !o.leases && len(o.nodes) == 0 {
		return nil, input.Usagef("nothing to ask: give --node NAME=IP, or read the leases")
	}

	return func(ctx context.Context) error { return run(ctx, o, os.Stdout) }, nil
}

func run(ctx context.Context, o options, out io.Writer) error {
	answer := Answer{Leases: []Lease{}, Machines: []Machine{}}
	targets := append(input.NodeList{}, o.nodes...)

	if o.leases {
		leases, err := readLeases(ctx, o)
		if err != nil {
			if len(o.nodes) == 0 {
				return err
			}

			answer.LeasesError = err.Error()
		}

		answer.Leases = append(answer.Leases, leases...)

		now := time.Now().Unix()

		for _, l := range leases {
			if toAsk(l, o.prefix, now) {
				targets = append(targets, input.Node{Name: l.Hostname, IP: l.IP, Addr: l.IP + ":50000"})
			}
		}
	}

	answer.Machines = make([]Machine, len(targets))

	var wg sync.WaitGroup

	for i, n := range targets {
		wg.Go(func() {
			answer.Machines[i] = ask(ctx, n, o.deadline)
			report.Progress(n.Name, "%s", summary(answer.Machines[i]))
		})
	}

	wg.Wait()

	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")

	return enc.Encode(answer)
}

func summary(m Machine) string {
	if m.Error != "" {
		return "not asked: " + m.Error
	}

	return fmt.Sprintf("%d disks, %d links", len(m.Disks), len(m.Links))
}

// clientset is the Ainur's API server as the user's kubeconfig reaches it (kubectl's loading rules).
func clientset(o options) (*kubernetes.Clientset, *rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig

	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.context}).ClientConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("the Ainur's kubeconfig is not usable: %s", report.FirstLine(err))
	}

	cfg.Timeout = o.deadline
	cfg.WarningHandler = rest.NoWarnings{}

	cs, err := kubernetes.NewForConfig(cfg)

	return cs, cfg, err
}

// readLeases is the lease file the netboot pod saved (binaryData.leases; plans/netboot/leases.py).
func readLeases(ctx context.Context, o options) ([]Lease, error) {
	cs, cfg, err := clientset(o)
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, o.deadline)
	defer cancel()

	cm, err := cs.CoreV1().ConfigMaps(o.namespace).Get(ctx, o.configmap, metav1.GetOptions{})

	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("the API server at %s has no ConfigMap %s/%s: no lease was saved yet (is it the Ainur's, and is the netboot pod running?)",
			cfg.Host, o.namespace, o.configmap)
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		return nil, fmt.Errorf("the API server at %s refused to show ConfigMap %s/%s to this kubeconfig's user: %s", cfg.Host, o.namespace, o.configmap, report.FirstLine(err))
	case err != nil:
		return nil, fmt.Errorf("reading ConfigMap %s/%s from %s: %s", o.namespace, o.configmap, cfg.Host, report.FirstLine(err))
	}

	raw, ok := cm.BinaryData["leases"]
	if !ok {
		raw = []byte(cm.Data["leases"])
	}

	return ParseLeases(raw)
}

// ParseLeases reads dnsmasq's lease file (dnsmasq 2.90 src/lease.c, lease_update_file: one lease a line; the DHCPv6
// part after a `duid` line is not the LAN's IPv4 leases and is skipped).
func ParseLeases(raw []byte) ([]Lease, error) {
	var leases []Lease

	sc := bufio.NewScanner(strings.NewReader(string(raw)))

	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}

		if fields[0] == "duid" {
			break
		}

		if len(fields) < 4 {
			return nil, fmt.Errorf("the lease file has a line that is not a lease: %q", sc.Text())
		}

		expiry, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("the lease file has a line that is not a lease: %q", sc.Text())
		}

		// The hostname and client id are what a DHCP client sent: printable, as every machine's string.
		l := Lease{Expiry: expiry, MAC: Printable(strings.ToLower(fields[1])), IP: Printable(fields[2]), Hostname: Printable(fields[3])}
		if l.Hostname == "*" {
			l.Hostname = ""
		}

		if len(fields) > 4 && fields[4] != "*" {
			l.ClientID = Printable(fields[4])
		}

		leases = append(leases, l)
	}

	return leases, sc.Err()
}

// ask is one machine asked as `talosctl --insecure` asks it, every answer read, every refusal recorded.
func ask(ctx context.Context, n input.Node, deadline time.Duration) Machine {
	m := Machine{Name: Printable(n.Name), Address: Printable(n.IP), Refused: []string{}, Disks: []Disk{}, Volumes: []Volume{}, Links: []Link{}}

	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()

	var asked atomic.Bool

	tlsConfig := &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // maintenance mode's certificate is its own making: talosctl --insecure
		// Called only when the server sends a CertificateRequest: a configured Talos. Answered with none, as talosctl
		// --insecure answers.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked.Store(true)

			return &tls.Certificate{}, nil
		},
	}

	c, err := client.New(ctx, client.WithDefaultGRPCDialOptions(), client.WithTLSConfig(tlsConfig), client.WithEndpoints(n.Addr))
	if err != nil {
		m.Error = Printable(report.FirstLine(err))

		return m
	}

	defer c.Close() //nolint:errcheck

	refused := func(method string, err error) {
		st, _ := status.FromError(err)
		m.Refused = append(m.Refused, Printable(fmt.Sprintf("%s: %s: %s", method, st.Code(), st.Message())))
	}

	if v, err := c.Version(ctx); err != nil {
		refused("MachineService.Version", err)
	} else if len(v.Messages) > 0 && v.Messages[0].Version != nil {
		m.Version, m.Arch = Printable(v.Messages[0].Version.Tag), Printable(v.Messages[0].Version.Arch)
	}

	if err := m.read(ctx, c.COSI); err != nil {
		// Not a machine in maintenance mode (a configured Talos asks for a client certificate), or none at all.
		m.Error = Printable(describe(err))
		m.Configured = asked.Load()
	}

	return m
}

func describe(err error) string {
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s: %s", st.Code(), st.Message())
	}

	return report.FirstLine(err)
}

// Printable is s with every rune that is not printable (unicode.IsPrint: a control character, a line or paragraph
// separator, a format character, invalid UTF-8) and every backslash written as an escape (\x0a, \u2028, \\), so
// the text is one line a comment can hold, and a field that was escaped is told by its backslash.
func Printable(s string) string {
	clean := utf8.ValidString(s) && !strings.ContainsRune(s, '\\')
	for _, r := range s {
		clean = clean && unicode.IsPrint(r)
	}

	if clean {
		return s
	}

	var b strings.Builder

	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])

		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r == '\\':
			b.WriteString("\\\\")
		case unicode.IsPrint(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, "\\x%02x", r)
		case r < 0x10000:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			fmt.Fprintf(&b, "\\U%08x", r)
		}

		i += size
	}

	return b.String()
}

func printables(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		out = append(out, Printable(s))
	}

	return out
}

// read lists what the machine tells anyone: its disks and their volumes, its links, its SMBIOS, its name.
func (m *Machine) read(ctx context.Context, st state.State) error {
	disks, err := safe.StateListAll[*block.Disk](ctx, st)
	if err != nil {
		return err
	}

	for d := range disks.All() {
		s := d.TypedSpec()
		m.Disks = append(m.Disks, Disk{
			ID: Printable(d.Metadata().ID()), DevPath: Printable(s.DevPath), Size: s.Size, PrettySize: Printable(s.PrettySize),
			Model: Printable(s.Model), Serial: Printable(s.Serial), WWID: Printable(s.WWID), Modalias: Printable(s.Modalias),
			UUID: Printable(s.UUID), BusPath: Printable(s.BusPath), SubSystem: Printable(s.SubSystem), Transport: Printable(s.Transport),
			Rotational: s.Rotational, Readonly: s.Readonly, CDROM: s.CDROM, Symlinks: printables(s.Symlinks),
		})
	}

	volumes, err := safe.StateListAll[*block.DiscoveredVolume](ctx, st)
	if err != nil {
		return err
	}

	for v := range volumes.All() {
		s := v.TypedSpec()
		m.Volumes = append(m.Volumes, Volume{
			ID: Printable(v.Metadata().ID()), Type: Printable(s.Type), DevPath: Printable(s.DevPath), ParentDevPath: Printable(s.ParentDevPath),
			Name: Printable(s.Name), Label: Printable(s.Label), PartitionLabel: Printable(s.PartitionLabel), Size: s.Size,
		})
	}

	links, err := safe.StateListAll[*network.LinkStatus](ctx, st)
	if err != nil {
		return err
	}

	for l := range links.All() {
		s := l.TypedSpec()
		m.Links = append(m.Links, Link{
			ID: Printable(l.Metadata().ID()), Physical: s.Physical(), HardwareAddr: s.HardwareAddr.String(), PermanentAddr: s.PermanentAddr.String(),
			SpeedMbps: s.SpeedMegabits, Driver: Printable(s.Driver), Up: s.OperationalState.String() == "up",
		})
	}

	si, err := safe.StateGetByID[*hardware.SystemInformation](ctx, st, hardware.SystemInformationID)

	switch {
	case err == nil:
		s := si.TypedSpec()
		m.System = &System{
			Manufacturer: Printable(s.Manufacturer), ProductName: Printable(s.ProductName), Version: Printable(s.Version),
			SerialNumber: Printable(s.SerialNumber), UUID: Printable(s.UUID), SKUNumber: Printable(s.SKUNumber),
		}
	case !state.IsNotFoundError(err):
		return err
	}

	hostname, err := safe.StateGetByID[*network.HostnameStatus](ctx, st, network.HostnameID)

	switch {
	case err == nil:
		m.Hostname = Printable(hostname.TypedSpec().Hostname)
	case !state.IsNotFoundError(err):
		return err
	}

	sort.Slice(m.Disks, func(i, j int) bool { return m.Disks[i].ID < m.Disks[j].ID })

	return nil
}

// clockSlack is how far a lease may look expired on this machine's clock and still be asked. dnsmasq writes the
// expiry by the Pi's clock, and a discovery lease lasts two minutes, renewed every minute (Talos renews at half
// the lease: operator/dhcp4.go:183 at v1.12.4): a laptop a minute or two ahead of the Pi would otherwise see no
// machine at all. A machine that is gone answers nothing and is reported as not asked.
const clockSlack = 15 * 60

// toAsk: a lease of a machine being discovered (its hostname has the prefix) that has not clearly expired.
func toAsk(l Lease, prefix string, now int64) bool {
	return strings.HasPrefix(l.Hostname, prefix) && (l.Expiry == 0 || l.Expiry > now-clockSlack)
}
