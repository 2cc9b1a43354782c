package talos

import (
	"strconv"
	"strings"
)

// LifecycleAPI: Talos 1.13 serves LifecycleService and ImageService (talosctl's range:
// >1.13.0-alpha.2); before, images are pulled with MachineService.ImagePull.
func LifecycleAPI(tag string) bool {
	parts := strings.SplitN(strings.TrimPrefix(tag, "v"), ".", 3)
	if len(parts) < 2 {
		return true
	}

	major, _ := strconv.Atoi(parts[0])   //nolint:errcheck
	minor, err := strconv.Atoi(parts[1]) //nolint:errcheck
	if err != nil {
		return true
	}

	return major > 1 || (major == 1 && minor >= 13)
}
