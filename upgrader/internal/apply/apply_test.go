package apply

import "testing"

func TestUpgradeAPIByTalosVersion(t *testing.T) {
	for tag, lifecycle := range map[string]bool{
		"v1.12.4":         false,
		"v1.13.0":         true,
		"v1.13.0-alpha.3": true,
		"v2.0.0":          true,
		"unknown":         true, // a version it cannot read: the newer API, and the legacy one if it is not served
	} {
		if lifecycleAPI(tag) != lifecycle {
			t.Errorf("lifecycleAPI(%q) = %v", tag, !lifecycle)
		}
	}
}
