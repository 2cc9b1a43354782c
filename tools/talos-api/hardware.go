package main

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"slices"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/resource/meta"
	"github.com/cosi-project/runtime/pkg/resource/meta/spec"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/nethelpers"
	"github.com/siderolabs/talos/pkg/machinery/resources/block"
	"github.com/siderolabs/talos/pkg/machinery/resources/cluster"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/cri"
	"github.com/siderolabs/talos/pkg/machinery/resources/etcd"
	"github.com/siderolabs/talos/pkg/machinery/resources/files"
	"github.com/siderolabs/talos/pkg/machinery/resources/hardware"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
	"github.com/siderolabs/talos/pkg/machinery/resources/kubespan"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
	"github.com/siderolabs/talos/pkg/machinery/resources/perf"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"github.com/siderolabs/talos/pkg/machinery/resources/secrets"
	"github.com/siderolabs/talos/pkg/machinery/resources/security"
	"github.com/siderolabs/talos/pkg/machinery/resources/v1alpha1"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// HardwareSpec is what a machine tells anyone who asks its API in maintenance mode, which is what `iluvatar
// discover` reads: its disks and what each holds, its link's speed and driver, and its SMBIOS. Left out, a node
// has no disk and the SMBIOS and link writeHardware always gave it.
type HardwareSpec struct {
	Disks         []DiskScript  `json:"disks,omitempty"`
	System        *SystemScript `json:"system,omitempty"`
	LinkSpeedMbps int           `json:"linkSpeedMbps,omitempty"`
	LinkDriver    string        `json:"linkDriver,omitempty"`
	// More NICs than the one it netbooted from (a server's second port): each a physical LinkStatus of its own.
	Links []LinkScript `json:"links,omitempty"`
}

// LinkScript is one more physical link as network.LinkStatus has it (link_status.go at v1.12.4 and v1.13.0).
type LinkScript struct {
	ID        string `json:"id"`  // the kernel's name: enp2s0
	MAC       string `json:"mac"` // its permanent (and current) address
	Up        bool   `json:"up,omitempty"`
	SpeedMbps int    `json:"speedMbps,omitempty"`
	Driver    string `json:"driver,omitempty"`
}

// DiskScript is one block.Disk as Talos's DisksController publishes it (pkg/machinery/resources/block/disk.go:26-54
// at v1.12.4 and v1.13.0), with the partitions it holds as DiscoveredVolumes.
type DiskScript struct {
	ID         string   `json:"id"` // the kernel's name: sda, nvme0n1, mmcblk0
	Size       uint64   `json:"size"`
	Model      string   `json:"model,omitempty"`
	Serial     string   `json:"serial,omitempty"`
	WWID       string   `json:"wwid,omitempty"`
	Modalias   string   `json:"modalias,omitempty"`
	Transport  string   `json:"transport,omitempty"` // sata, nvme, mmc, usb, virtio ("" for a virtual device)
	BusPath    string   `json:"busPath,omitempty"`
	Rotational bool     `json:"rotational,omitempty"`
	Readonly   bool     `json:"readonly,omitempty"`
	CDROM      bool     `json:"cdrom,omitempty"`
	Symlinks   []string `json:"symlinks,omitempty"` // udev's /dev/disk/by-id and by-path names
	// Partitions: what the disk holds. A Talos install's are EFI, BIOS, BOOT, META, STATE, EPHEMERAL.
	Partitions []PartitionScript `json:"partitions,omitempty"`
	// Table "gpt": an empty partition table where there is no partition (a disk someone initialised).
	Table string `json:"table,omitempty"`
	// Content: what the whole disk holds with no partition table (btrfs, linux_raid_member, xfs, ...). None of
	// partitions, table and content: a blank (zeroed) disk. Published as real Talos would: probedName.
	Content string `json:"content,omitempty"`
}

// probed are the names go-blockdevice v2.0.23's blkid gives, the one Talos v1.12.4 uses to name a DiscoveredVolume
// (controllers/block/discovery.go:190-216, fillDiscoveredVolumeFromInfo): its probers are blkid/internal/chain/chain.go's
// imports, each Name() in blkid/internal/filesystems/*/ and blkid/internal/partitions/gpt/gpt.go. A btrfs, mdraid member
// (linux_raid_member), NTFS, exFAT, f2fs, bcache, ReFS or HFS+ volume has no prober: Talos publishes it with no name.
var probed = map[string]bool{
	"bluestore": true, "ext2": true, "ext3": true, "ext4": true, "iso9660": true, "luks": true, "lvm2-pv": true,
	"squashfs": true, "swap": true, "talosmeta": true, "vfat": true, "xfs": true, "zfs": true, "gpt": true,
}

// probedName is the name Talos publishes for what a volume holds: "" for what go-blockdevice cannot probe.
func probedName(content string) string {
	if probed[content] {
		return content
	}

	return ""
}

// PartitionScript is one partition as block.DiscoveredVolume has it (pkg/machinery/resources/block/discovered_volume.go:26-58).
type PartitionScript struct {
	Label      string `json:"label,omitempty"`      // the GPT partition label
	Filesystem string `json:"filesystem,omitempty"` // what the partition holds: vfat, xfs, ntfs, ... (published: probedName)
	Size       uint64 `json:"size"`
}

// SystemScript is the machine's SMBIOS as hardware.SystemInformation has it.
type SystemScript struct {
	Manufacturer string `json:"manufacturer,omitempty"`
	ProductName  string `json:"productName,omitempty"`
	Version      string `json:"version,omitempty"`
	SerialNumber string `json:"serialNumber,omitempty"`
	SKUNumber    string `json:"skuNumber,omitempty"`
}

var diskIDRe = regexp.MustCompile(`^[a-z][a-z0-9]*$`)

func (h *HardwareSpec) validate() error {
	if h == nil {
		return nil
	}

	for _, l := range h.Links {
		if _, err := net.ParseMAC(l.MAC); err != nil || l.ID == "" || l.ID == linkName {
			return fmt.Errorf("link %q: a link needs an id other than %s and a MAC (%q)", l.ID, linkName, l.MAC)
		}
	}

	seen := map[string]bool{}

	for _, d := range h.Disks {
		if !diskIDRe.MatchString(d.ID) || seen[d.ID] {
			return fmt.Errorf("disk id %q is not a kernel block device name, or is given twice", d.ID)
		}

		seen[d.ID] = true

		if d.Table != "" && (d.Table != "gpt" || d.Content != "") {
			return fmt.Errorf("disk %q: table is \"gpt\" (an empty GPT) or not given, and a disk with content has none", d.ID)
		}

		if d.Content != "" && len(d.Partitions) > 0 {
			return fmt.Errorf("disk %q: content is what a whole disk holds with no partitions", d.ID)
		}
	}

	return nil
}

// extraLinks are the script's more NICs, each physical, with its MAC as driver-reported permanent address.
func (h *HardwareSpec) extraLinks() []*network.LinkStatus {
	if h == nil {
		return nil
	}

	out := make([]*network.LinkStatus, 0, len(h.Links))

	for i, l := range h.Links {
		mac, _ := net.ParseMAC(l.MAC) //nolint:errcheck // validated
		state := nethelpers.OperStateDown

		if l.Up {
			state = nethelpers.OperStateUp
		}

		link := network.NewLinkStatus(network.NamespaceName, l.ID)
		*link.TypedSpec() = network.LinkStatusSpec{
			Index: uint32(10 + i), Type: nethelpers.LinkEther, OperationalState: state, MTU: 1500, LinkState: l.Up,
			HardwareAddr: nethelpers.HardwareAddr(mac), PermanentAddr: nethelpers.HardwareAddr(mac),
			BroadcastAddr: nethelpers.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, SpeedMegabits: l.SpeedMbps, Driver: l.Driver,
		}
		out = append(out, link)
	}

	return out
}

// partitionName is the kernel's name of a disk's index-th partition: sda1, nvme0n1p1, mmcblk0p1.
func partitionName(disk string, index int) string {
	if last := disk[len(disk)-1]; last >= '0' && last <= '9' {
		return fmt.Sprintf("%sp%d", disk, index)
	}

	return fmt.Sprintf("%s%d", disk, index)
}

// writeDisks publishes the scripted disks as block.Disk, and what each holds as block.DiscoveredVolume: the disk
// itself (its partition table's name, "gpt", when it has partitions) and each partition, by label and filesystem.
func (n *Node) writeDisks() error {
	if n.spec.Hardware == nil {
		return nil
	}

	for _, d := range n.spec.Hardware.Disks {
		disk := block.NewDisk(block.NamespaceName, d.ID)
		spec := disk.TypedSpec()
		spec.DevPath = "/dev/" + d.ID
		spec.SetSize(d.Size)
		spec.IOSize, spec.SectorSize = 512, 512
		spec.Model, spec.Serial, spec.WWID, spec.Modalias = d.Model, d.Serial, d.WWID, d.Modalias
		spec.Transport, spec.BusPath, spec.SubSystem = d.Transport, d.BusPath, "/sys/class/block"
		spec.Rotational, spec.Readonly, spec.CDROM = d.Rotational, d.Readonly, d.CDROM
		spec.Symlinks = slices.Clone(d.Symlinks)

		if err := put(n.st, disk); err != nil {
			return err
		}

		whole := block.NewDiscoveredVolume(block.NamespaceName, d.ID)
		whole.TypedSpec().DevPath, whole.TypedSpec().DevicePath, whole.TypedSpec().Type = "/dev/"+d.ID, "/sys/block/"+d.ID, "disk"
		whole.TypedSpec().SetSize(d.Size)

		switch {
		case len(d.Partitions) > 0 || d.Table == "gpt":
			whole.TypedSpec().Name = "gpt"
		case d.Content != "":
			whole.TypedSpec().Name = probedName(d.Content)
		}

		if err := put(n.st, whole); err != nil {
			return err
		}

		offset := uint64(1 << 20)

		for i, p := range d.Partitions {
			id := partitionName(d.ID, i+1)
			v := block.NewDiscoveredVolume(block.NamespaceName, id)
			s := v.TypedSpec()
			s.DevPath, s.DevicePath, s.Type, s.Parent, s.ParentDevPath = "/dev/"+id, "/sys/block/"+d.ID+"/"+id, "partition", d.ID, "/dev/"+d.ID
			s.SetSize(p.Size)
			s.Offset, s.PartitionIndex, s.PartitionLabel, s.Name = offset, uint(i+1), p.Label, probedName(p.Filesystem)
			offset += p.Size

			if err := put(n.st, v); err != nil {
				return err
			}
		}
	}

	return nil
}

// talosTypes are the resource types Talos registers a definition for (internal/app/machined/pkg/runtime/v1alpha2/
// v1alpha2_state.go:97- at v1.12.4 and v1.13.0) that the stand-in holds or a test reads, each with the sensitivity
// its own definition declares (the definition Talos registers is the type's ResourceDefinition()).
func talosTypes() map[resource.Type]spec.Sensitivity {
	out := map[resource.Type]spec.Sensitivity{}

	for _, r := range []meta.ResourceDefinitionProvider{
		&block.Disk{}, &block.DiscoveredVolume{}, &block.SystemDisk{}, &configres.MachineConfig{}, &hardware.SystemInformation{},
		&hardware.Processor{}, &hardware.MemoryModule{}, &k8s.APIServerConfig{}, &k8s.AdmissionControlConfig{}, &k8s.AuditPolicyConfig{},
		&k8s.AuthorizationConfig{}, &k8s.ConfigStatus{}, &k8s.ControllerManagerConfig{}, &k8s.SchedulerConfig{}, &k8s.SecretsStatus{},
		&k8s.StaticPod{}, &network.AddressStatus{}, &network.HostnameStatus{}, &network.LinkStatus{}, &runtime.ExtensionStatus{},
		&runtime.KernelCmdline{}, &runtime.MachineStatus{}, &runtime.Version{}, &secrets.Kubernetes{}, &secrets.KubernetesRoot{},
	} {
		rd := r.ResourceDefinition()
		out[rd.Type] = rd.Sensitivity
	}

	return out
}

// talosNamespaces are the namespaces Talos registers (internal/app/machined/pkg/runtime/v1alpha2/v1alpha2_state.go:
// 72-95 at v1.12.4, and security's from v1.13.0: :72-96), with meta's own (cosi-project/runtime's
// registry.NamespaceRegistry.RegisterDefault).
func (n *Node) talosNamespaces() []resource.Namespace {
	ns := []resource.Namespace{
		meta.NamespaceName, v1alpha1.NamespaceName, cluster.NamespaceName, cluster.RawNamespaceName, configres.NamespaceName,
		etcd.NamespaceName, files.NamespaceName, hardware.NamespaceName, k8s.NamespaceName, k8s.ControlPlaneNamespaceName,
		kubespan.NamespaceName, network.NamespaceName, network.ConfigNamespaceName, cri.NamespaceName, secrets.NamespaceName, perf.NamespaceName,
	}

	if n.lifecycleAPI() {
		ns = append(ns, security.NamespaceName)
	}

	return ns
}

// accessPolicy is Talos's access policy for the resource API, resources.AccessPolicy (internal/app/resources/
// access.go:25-65 at v1.12.4 and v1.13.0), which the maintenance service wraps its state in too (v1.12.4:
// internal/app/maintenance/server.go:70-72; v1.13.0: internal/app/machined/internal/server/v1alpha1/
// v1alpha1_server.go:145-146), in its order:
//   - a write is refused, whoever asks: PermissionDenied "write access is not allowed" (lines 27-29; on a Talos 1.13
//     node or a configured one a reader is refused first by the authorizer: authorize, calls.go);
//   - a type with no resource definition: PermissionDenied "resource type %q is not supported" (31-35). Talos
//     registers a definition for every type it has (v1alpha2_state.go:97-); here only talosTypes, so a real type
//     the stand-in does not hold is refused where Talos would list it empty (none that a test reads);
//   - a sensitive type (its definition's Sensitivity, as the type itself declares it) needs the admin role: else
//     authz.ErrNotAuthorized, PermissionDenied "not authorized" (43-47); a non-sensitive one any role (48-49).
//     Disk, DiscoveredVolume, LinkStatus, SystemInformation, HostnameStatus, Version and KernelCmdline are not
//     sensitive; MachineConfig is (pkg/machinery/resources/config/machine_config.go);
//   - a namespace Talos did not register: PermissionDenied "namespace %q is not supported" (54-60).
//
// A machine in maintenance mode gives every client the reader role (authorize, calls.go), so it tells anyone
// its disks' models and serials, its links' MACs and its SMBIOS, and authenticates no one.
func (n *Node) accessPolicy(ctx context.Context, access state.Access) error {
	if !access.Verb.Readonly() {
		return status.Error(codes.PermissionDenied, "write access is not allowed")
	}

	sensitivity, known := talosTypes()[access.ResourceType]
	if !known {
		return status.Error(codes.PermissionDenied, fmt.Sprintf("resource type %q is not supported", access.ResourceType))
	}

	if sensitivity == meta.Sensitive && !rolesOf(ctx).Includes(role.Admin) {
		return status.Error(codes.PermissionDenied, "not authorized")
	}

	if !slices.Contains(n.talosNamespaces(), access.ResourceNamespace) {
		return status.Error(codes.PermissionDenied, fmt.Sprintf("namespace %q is not supported", access.ResourceNamespace))
	}

	return nil
}
