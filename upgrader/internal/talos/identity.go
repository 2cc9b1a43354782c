package talos

import (
	"context"
	"net"
	"regexp"
	"slices"
	"strings"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/google/uuid"
	"github.com/siderolabs/talos/pkg/machinery/client"
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/hardware"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/wait"
)

// MachineIdentity is which machine answers at ip: the permanent MAC of the link that carries ip,
// else its SMBIOS system UUID when that is a real one, else "" (nothing to tell machines apart by).
//
// The MAC comes first because it is what Iluvatar's inventory names a machine by (each node's
// LinkAliasConfig selects its NIC by `mac(link.permanent_addr)`, so every inventory machine
// reports one, or its network would not come up), and it holds on every board Iluvatar runs:
// burned into an x86 NIC, the Raspberry Pi's OTP-derived MAC, the RK1's MAC that its U-Boot
// derives from the SoC's serial. SMBIOS is the weaker fallback: U-Boot boards publish no
// SystemInformation at all (Talos's controller finds no SMBIOS table) or Unknown fields, and
// x86 firmware often ships all-zero, all-F or one UUID for a whole product line (why Talos added
// the META UUID override, siderolabs/talos#7694).
func MachineIdentity(ctx context.Context, c *client.Client, ip string) (string, error) {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	addresses, err := safe.StateListAll[*network.AddressStatus](ctx, c.COSI)
	if err != nil {
		return "", err
	}

	linkName := ""

	for a := range addresses.All() {
		if a.TypedSpec().Address.Addr().String() == ip {
			linkName = a.TypedSpec().LinkName
		}
	}

	links, err := safe.StateListAll[*network.LinkStatus](ctx, c.COSI)
	if err != nil {
		return "", err
	}

	var physical []string

	for l := range links.All() {
		perm := permanentMAC(l.TypedSpec())

		if linkName != "" && (l.Metadata().ID() == linkName || l.TypedSpec().Alias == linkName) {
			if perm != "" {
				return perm, nil
			}

			physical = nil // the address's own link has none: no guessing among the others

			break
		}

		if perm != "" && l.TypedSpec().Physical() {
			physical = append(physical, perm)
		}
	}

	// The address sits on no link it lists (reached through another address): one physical
	// link is still unambiguous.
	if linkName == "" && len(physical) == 1 {
		return physical[0], nil
	}

	sysinfo, err := safe.StateGetByID[*hardware.SystemInformation](ctx, c.COSI, hardware.SystemInformationID)
	if err != nil {
		return "", nil //nolint:nilerr // no SMBIOS (U-Boot boards): no UUID to fall back to
	}

	if id := strings.ToLower(sysinfo.TypedSpec().UUID); usableUUID(id) {
		return id, nil
	}

	return "", nil
}

// PermanentMACs are the permanent MACs of every link the machine reports (sorted, lower case, each
// once): what a LinkAliasConfig's `mac(link.permanent_addr)` selector is matched against, on any
// link. Talos lets a client without a certificate read them in maintenance mode: LinkStatus is a
// non-sensitive resource (pkg/machinery/resources/network/link_status.go:146 at v1.12.4, :147 at
// v1.13.0), which the resource API's access policy serves to the reader role
// (internal/app/resources/access.go:44-49 at both), the role maintenance mode gives every client
// (v1.12.4: the maintenance service's injector, internal/app/machined/pkg/controllers/runtime/
// maintenance_service.go:129-132, with pkg/grpc/middleware/authz/injector.go:89-101; v1.13.0: apid
// in ReadonlyRoleMode, internal/app/machined/pkg/controllers/runtime/api_service_config.go:110-118
// and internal/app/apid/service.go:119-121).
func PermanentMACs(ctx context.Context, c *client.Client) ([]string, error) {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	links, err := safe.StateListAll[*network.LinkStatus](ctx, c.COSI)
	if err != nil {
		return nil, err
	}

	var macs []string

	for l := range links.All() {
		if mac := permanentMAC(l.TypedSpec()); mac != "" && !slices.Contains(macs, mac) {
			macs = append(macs, mac)
		}
	}

	slices.Sort(macs)

	return macs, nil
}

// HostnameAt is the hostname the running machine at a node's address goes by ("" when it cannot be read).
func HostnameAt(ctx context.Context, t *Talosconfig, n input.Node) string {
	c, err := t.Connect(ctx, n)
	if err != nil {
		return ""
	}

	defer c.Close() //nolint:errcheck

	cctx, cancel := wait.Call(ctx)
	defer cancel()

	h, err := safe.StateGetByID[*network.HostnameStatus](cctx, c.COSI, network.HostnameID)
	if err != nil {
		return ""
	}

	return h.TypedSpec().Hostname
}

// IdentityAt is the identity of the running machine at a node's address ("" when it cannot be told), as
// MachineIdentityAs tells it against known.
func IdentityAt(ctx context.Context, t *Talosconfig, n input.Node, known string) string {
	c, err := t.Connect(ctx, n)
	if err != nil {
		return ""
	}

	defer c.Close() //nolint:errcheck

	id, _ := MachineIdentityAs(ctx, c, n.IP, known) //nolint:errcheck

	return id
}

// MachineIdentityAs is MachineIdentity, except that a machine one of whose links' permanent MACs is known (the
// identity a step last recorded, or read in maintenance mode) is that machine, and answers known. In
// maintenance mode the address sits on the physical link, so the identity read there is its MAC; a config that
// puts the address on a bond or a VLAN leaves no permanent MAC on the address's link once installed, and
// MachineIdentity falls back to the SMBIOS UUID, which would tell the same machine for another. The maintenance
// check matches the config's MAC against every link's the same way (PermanentMACs).
func MachineIdentityAs(ctx context.Context, c *client.Client, ip, known string) (string, error) {
	if known != "" {
		if macs, err := PermanentMACs(ctx, c); err == nil && slices.Contains(macs, known) {
			return known, nil
		}
	}

	return MachineIdentity(ctx, c, ip)
}

func permanentMAC(l *network.LinkStatusSpec) string {
	mac := net.HardwareAddr(l.PermanentAddr)
	if len(mac) == 0 || strings.Trim(mac.String(), "0:") == "" {
		return ""
	}

	return strings.ToLower(mac.String())
}

// placeholderUUIDs are UUIDs firmware ships on every unit (never one machine's).
var placeholderUUIDs = map[string]bool{
	"00000000-0000-0000-0000-000000000000": true,
	"ffffffff-ffff-ffff-ffff-ffffffffffff": true,
	"03000200-0400-0500-0006-000700080009": true, // AMI's default on countless boards
}

func usableUUID(id string) bool {
	parsed, err := uuid.Parse(id)

	return err == nil && !placeholderUUIDs[parsed.String()]
}

// configMACRe is the selector Iluvatar's LinkAliasConfig finds a node's NIC by.
var configMACRe = regexp.MustCompile(`mac\(\s*link\.permanent_addr\s*\)\s*==\s*"([0-9A-Fa-f:]+)"`)

// ConfigMAC is the machine a config names: the MAC its LinkAliasConfig selects the link by that
// carries the node's address (or the only MAC its aliases select); "" when it names none (the
// generic worker, on DHCP).
func ConfigMAC(cfg coreconfig.Provider, ip string) string {
	macs := map[string]string{} // alias name -> MAC

	for _, alias := range cfg.NetworkLinkAliasConfigs() {
		if m := configMACRe.FindStringSubmatch(alias.LinkSelector().String()); m != nil {
			if hw, err := net.ParseMAC(m[1]); err == nil {
				macs[alias.Name()] = strings.ToLower(hw.String())
			}
		}
	}

	for _, link := range cfg.NetworkCommonLinkConfigs() {
		for _, a := range link.Addresses() {
			if a.Address().Addr().String() == ip && macs[link.Name()] != "" {
				return macs[link.Name()]
			}
		}
	}

	distinct := map[string]bool{}
	for _, mac := range macs {
		distinct[mac] = true
	}

	if len(distinct) == 1 {
		for mac := range distinct {
			return mac
		}
	}

	return ""
}
