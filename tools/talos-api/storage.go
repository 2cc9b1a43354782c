package main

import (
	"context"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	storageapi "github.com/siderolabs/talos/pkg/machinery/api/storage"
	"github.com/siderolabs/talos/pkg/machinery/resources/block"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// storageService is Talos's storage service (internal/app/storaged/server.go), the part the docs' "What discovery
// exposes" rests on: BlockDeviceWipe, which a machine in maintenance mode lets anyone call. A Talos 1.12 maintenance
// service registers the same server with no authorizer in front (internal/app/maintenance/server.go:74-79 at
// v1.12.4) and the handler checks no role (storaged/server.go:101-118); Talos 1.13 gives the reader role access
// (machined.go:122-127 at v1.13.0) and the handler refuses a non-admin only once the machine is configured
// (storaged/server.go:102-110: `!inMaintenance && !roles.Includes(role.Admin)` → authz.ErrNotAuthorized). A
// configured 1.12 machine's authorizer lets only the admin call it (machined.go:106 at v1.12.4): the same
// PermissionDenied "not authorized".
type storageService struct {
	storageapi.UnimplementedStorageServiceServer

	n *Node
}

// BlockDeviceWipe validates each device as validateDeviceForWipe does (storaged/server.go:126-220 at v1.12.4:
// NotFound for an unknown one, FailedPrecondition for a read-only disk or a CD-ROM), then wipes them: the disk's
// partition table and partitions are gone (a FAST wipe erases the signatures at both ends, ZEROES the whole disk:
// wipeDevice, :245-), a partition's filesystem is gone, or the partition itself with drop_partition. The volume-in-use
// check (:196-218) finds nothing on a machine in maintenance mode, which mounts no volume of its disks: an assumption
// the stand-in makes, not read in Talos's source.
func (s *storageService) BlockDeviceWipe(ctx context.Context, req *storageapi.BlockDeviceWipeRequest) (*storageapi.BlockDeviceWipeResponse, error) {
	n := s.n

	n.c.mu.Lock()
	defer n.c.mu.Unlock()

	if !n.maintenance && !rolesOf(ctx).Includes(role.Admin) {
		return nil, status.Error(codes.PermissionDenied, "not authorized")
	}

	for _, d := range req.GetDevices() {
		if err := n.validateWipe(ctx, d.GetDevice()); err != nil {
			return nil, err
		}
	}

	for _, d := range req.GetDevices() {
		if err := n.wipe(ctx, d.GetDevice(), d.GetDropPartition()); err != nil {
			return nil, err
		}
	}

	return &storageapi.BlockDeviceWipeResponse{Messages: []*storageapi.BlockDeviceWipe{{}}}, nil
}

func (n *Node) validateWipe(ctx context.Context, device string) error {
	v, err := safe.StateGetByID[*block.DiscoveredVolume](ctx, n.st, device)
	if err != nil {
		if state.IsNotFoundError(err) {
			return status.Errorf(codes.NotFound, "blockdevice %q not found", device)
		}

		return err
	}

	disk := device
	if v.TypedSpec().Type == "partition" {
		disk = v.TypedSpec().Parent
	}

	d, err := safe.StateGetByID[*block.Disk](ctx, n.st, disk)
	if err != nil {
		return err
	}

	switch {
	case d.TypedSpec().Readonly:
		return status.Errorf(codes.FailedPrecondition, "blockdevice %q is read-only", device)
	case d.TypedSpec().CDROM:
		return status.Errorf(codes.FailedPrecondition, "blockdevice %q is a CD-ROM", device)
	}

	return nil
}

func (n *Node) wipe(ctx context.Context, device string, drop bool) error {
	v, err := safe.StateGetByID[*block.DiscoveredVolume](ctx, n.st, device)
	if err != nil {
		return err
	}

	if v.TypedSpec().Type == "partition" {
		if drop {
			return n.st.Destroy(ctx, v.Metadata())
		}

		v.TypedSpec().Name, v.TypedSpec().Label = "", ""

		return put(n.st, v)
	}

	all, err := safe.StateListAll[*block.DiscoveredVolume](ctx, n.st)
	if err != nil {
		return err
	}

	var gone []resource.Pointer

	for p := range all.All() {
		if p.TypedSpec().Parent == device {
			gone = append(gone, p.Metadata())
		}
	}

	for _, md := range gone {
		if err := n.st.Destroy(ctx, md); err != nil {
			return err
		}
	}

	v.TypedSpec().Name, v.TypedSpec().Label = "", ""

	return put(n.st, v)
}
