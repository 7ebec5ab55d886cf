package vfio

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestBindRefusesBadAddress: a PCI address that is not DDDD:BB:DD.F (it comes from a
// config file or a flag) is refused with ErrBadAddress before any sysfs path is built
// from it. Before, Bind joined it into /sys/bus/pci/devices/<bdf> as it was, so
// "0000:00:04.0/../../../x" (or any "..") wrote driver_override into a directory of
// its choosing and the address itself into drivers_probe. The sysfs tree here is a
// temporary directory.
func TestBindRefusesBadAddress(t *testing.T) {
	root := t.TempDir()
	old := sysPCI
	sysPCI = filepath.Join(root, "pci")
	t.Cleanup(func() { sysPCI = old })
	if err := os.MkdirAll(filepath.Join(sysPCI, "devices", "0000:00:04.0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, bdf := range []string{"0000:00:04.0/../../../x", "../../x", "", "0000:00:04.0\n", "00:04.0", "0000:00:20.0", "0000:00:04.8", "0000:0g:04.0"} {
		if err := Bind(bdf, "vfio-pci"); !errors.Is(err, ErrBadAddress) {
			t.Errorf("Bind(%q): %v, want ErrBadAddress", bdf, err)
		}
		if _, err := Unbind(bdf); !errors.Is(err, ErrBadAddress) {
			t.Errorf("Unbind(%q): %v, want ErrBadAddress", bdf, err)
		}
		if _, _, err := GroupOf(bdf); !errors.Is(err, ErrBadAddress) {
			t.Errorf("GroupOf(%q): %v, want ErrBadAddress", bdf, err)
		}
	}
	for _, f := range []string{filepath.Join(root, "x", "driver_override"), filepath.Join(sysPCI, "drivers_probe")} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s was written", f)
		}
	}
	for _, bdf := range []string{"0000:00:04.0", "10000:e1:1f.7", "0000:AF:00.1"} {
		if err := CheckAddress(bdf); err != nil {
			t.Errorf("CheckAddress(%q): %v", bdf, err)
		}
	}
}
