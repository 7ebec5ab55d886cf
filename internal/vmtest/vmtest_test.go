package vmtest

import (
	"os"
	"strings"
	"testing"
)

func TestParseConsole(t *testing.T) {
	out, code := parseConsole("boot noise\r\ndpkit-vmtest: running x\r\nPASS\r\nDPKIT-VMTEST-EXIT=3\r\n")
	if code != 3 || !strings.Contains(out, "PASS") || strings.Contains(out, "boot noise") {
		t.Fatalf("got %q %d", out, code)
	}
	if _, code := parseConsole("dpkit-vmtest: running x\nKernel panic"); code != -1 {
		t.Fatalf("missing marker gave %d", code)
	}
	if _, code := parseConsole("DPKIT-VMTEST-EXIT=zz\n"); code != -1 {
		t.Fatalf("bad marker gave %d", code)
	}
}

// TestBootGuest boots the VM and runs this package's guest test, which checks the
// guest's view: modules loaded, IOMMU on, the NICs visible behind it.
func TestBootGuest(t *testing.T) {
	Need(t)
	Run(t, Config{NICs: []NIC{{Hub: 0}, {Hub: 0, Packed: true}}})
}

// TestBootGuestFails proves a failing guest test fails the host run.
func TestBootGuestFails(t *testing.T) {
	Need(t)
	res, err := run(t, Config{Run: "^TestGuestFailsOnPurpose$", Args: []string{"-dpkit.fail"}})
	if err == nil || res.ExitCode != 1 {
		t.Fatalf("failing guest test not reported: exit %d, err %v\n%s", res.ExitCode, err, res.Console)
	}
}

func TestGuestEnvironment(t *testing.T) {
	NeedGuest(t)
	for _, p := range []string{"/sys/module/vfio_pci", "/sys/module/vfio_iommu_type1", "/sys/module/virtio_net", "/dev/vfio/vfio"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	groups, _ := os.ReadDir("/sys/kernel/iommu_groups")
	if len(groups) == 0 {
		t.Error("no IOMMU groups: intel_iommu is not on")
	}
	n := 0
	ents, _ := os.ReadDir("/sys/bus/pci/devices")
	for _, e := range ents {
		b, _ := os.ReadFile("/sys/bus/pci/devices/" + e.Name() + "/device")
		if strings.TrimSpace(string(b)) == "0x1041" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("found %d modern virtio-net devices, want 2", n)
	}
}
