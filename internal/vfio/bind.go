package vfio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

var sysPCI = "/sys/bus/pci"

// CheckAddress reports whether bdf is a PCI address as sysfs names devices,
// domain:bus:device.function in hex ("0000:00:04.0"; the domain has 4 to 8 digits,
// VMD domains are 10000 and up, device is at most 1f, function at most 7). Every
// function here that builds a sysfs path from an address checks it first.
func CheckAddress(bdf string) error {
	hex := func(s string) bool {
		for _, c := range s {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
		return true
	}
	n := len(bdf)
	ok := n >= 12 && n <= 16 && bdf[n-8] == ':' && bdf[n-5] == ':' && bdf[n-2] == '.' &&
		hex(bdf[:n-8]) && hex(bdf[n-7:n-5]) && hex(bdf[n-4:n-2]) && bdf[n-4] <= '1' &&
		'0' <= bdf[n-1] && bdf[n-1] <= '7'
	if !ok {
		return fmt.Errorf("%w: %q", ErrBadAddress, bdf)
	}
	return nil
}

// Driver returns the name of the kernel driver bound to PCI device bdf, or "" if none.
func Driver(bdf string) (string, error) {
	if err := CheckAddress(bdf); err != nil {
		return "", err
	}
	link, err := os.Readlink(filepath.Join(sysPCI, "devices", bdf, "driver"))
	if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(sysPCI, "devices", bdf)); err != nil {
			return "", err
		}
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return filepath.Base(link), nil
}

func sysWrite(path, val string) error {
	if err := os.WriteFile(path, []byte(val), 0); err != nil {
		return fmt.Errorf("vfio: write %q to %s: %w", strings.TrimSpace(val), path, err)
	}
	return nil
}

// Bind hands PCI device bdf to driver (normally "vfio-pci"): it sets driver_override,
// unbinds the current driver, and asks the kernel to probe the device again, which
// attaches it to driver only. The driver's module must be loaded.
func Bind(bdf, driver string) error {
	if err := CheckAddress(bdf); err != nil {
		return err
	}
	dev := filepath.Join(sysPCI, "devices", bdf)
	cur, err := Driver(bdf)
	if err != nil {
		return err
	}
	if cur == driver {
		return nil
	}
	if err := sysWrite(filepath.Join(dev, "driver_override"), driver); err != nil {
		return err
	}
	if cur != "" {
		if err := sysWrite(filepath.Join(dev, "driver", "unbind"), bdf); err != nil {
			return err
		}
	}
	if err := sysWrite(filepath.Join(sysPCI, "drivers_probe"), bdf); err != nil {
		return err
	}
	if now, _ := Driver(bdf); now != driver {
		return fmt.Errorf("vfio: %s did not bind to %s (driver now %q)", bdf, driver, now)
	}
	return nil
}

// Unbind clears driver_override, detaches the current driver and reprobes, so the
// device returns to the kernel driver that claims it by ID (virtio-pci, ixgbe, ...).
// Close every VFIO fd of the device first. It returns the new driver's name.
func Unbind(bdf string) (string, error) {
	if err := CheckAddress(bdf); err != nil {
		return "", err
	}
	dev := filepath.Join(sysPCI, "devices", bdf)
	if err := sysWrite(filepath.Join(dev, "driver_override"), "\n"); err != nil {
		return "", err
	}
	if cur, err := Driver(bdf); err != nil {
		return "", err
	} else if cur != "" {
		if err := sysWrite(filepath.Join(dev, "driver", "unbind"), bdf); err != nil {
			return "", err
		}
	}
	if err := sysWrite(filepath.Join(sysPCI, "drivers_probe"), bdf); err != nil {
		return "", err
	}
	return Driver(bdf)
}

// Find lists PCI devices by vendor and device ID, in bus order.
func Find(vendor, device uint16) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(sysPCI, "devices"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		v, _ := os.ReadFile(filepath.Join(sysPCI, "devices", e.Name(), "vendor"))
		d, _ := os.ReadFile(filepath.Join(sysPCI, "devices", e.Name(), "device"))
		if strings.TrimSpace(string(v)) == fmt.Sprintf("0x%04x", vendor) && strings.TrimSpace(string(d)) == fmt.Sprintf("0x%04x", device) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
