package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dpkit/dpkit/examples/vrouter/internal/config"
	"github.com/dpkit/dpkit/pmd"
)

// TestCheckFlags: every flag is checked before anything is opened, -check included.
// Before, -check exited before the flags were looked at (vrouter -check -frames 5
// said "configuration is valid"), and -idle was checked only in run, after the
// interfaces had been opened and the uplink's XDP program attached.
func TestCheckFlags(t *testing.T) {
	defer func(i string, s time.Duration, f int) { idleFlag, sleepMax, frameSize = i, s, f }(idleFlag, sleepMax, frameSize)
	for _, c := range []struct {
		frames    int
		idle      string
		sleep     time.Duration
		frameSize int
		flag      string // named in the error; "" for none
	}{
		{16384, "adaptive", 200 * time.Microsecond, 4096, ""},
		{1024, "busy-poll", time.Second, 2048, ""},
		{5, "adaptive", 200 * time.Microsecond, 4096, "-frames"},
		{16384, "spin", 200 * time.Microsecond, 4096, "-idle"},
		{16384, "", 200 * time.Microsecond, 4096, "-idle"},
		{16384, "sleep", 0, 4096, "-sleep-max"},
		{16384, "sleep", 2 * time.Second, 4096, "-sleep-max"},
		{16384, "sleep", time.Millisecond, 1500, "-frame-size"},
	} {
		idleFlag, sleepMax, frameSize = c.idle, c.sleep, c.frameSize
		_, err := checkFlags(c.frames)
		if c.flag == "" {
			if err != nil {
				t.Errorf("%+v: %v", c, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), c.flag) {
			t.Errorf("%+v: %v, want an error naming %s", c, err, c.flag)
		}
	}
}

// TestCheckCPUs: a CPU set naming a CPU this process may not use is refused before
// anything is opened, with the field named, and -check refuses it too. Before,
// -check said "configuration is valid" for forwarding_cpus "1000", and run found the
// CPU missing only when it started the first worker, after opening the interfaces
// and attaching their XDP programs.
func TestCheckCPUs(t *testing.T) {
	absent := pmd.MaxCPUs - 1
	if pmd.CPUSetOf(absent).CheckAvailable() == nil {
		t.Skipf("this process may run on CPU %d", absent)
	}
	for _, c := range []struct {
		fwd, ctl pmd.CPUSet
		field    string // named in the error; "" for none
	}{
		{pmd.CPUSet{}, pmd.CPUSet{}, ""},
		{pmd.CPUSetOf(0), pmd.CPUSet{}, ""},
		{pmd.CPUSetOf(absent), pmd.CPUSet{}, "forwarding_cpus"},
		{pmd.CPUSetOf(0, absent), pmd.CPUSet{}, "forwarding_cpus"},
		{pmd.CPUSet{}, pmd.CPUSetOf(absent), "control_cpus"},
	} {
		err := checkCPUs(&config.Config{FwdCPUs: c.fwd, CtlCPUs: c.ctl})
		if c.field == "" {
			if err != nil {
				t.Errorf("%s/%s: %v", c.fwd, c.ctl, err)
			}
		} else if err == nil || !strings.HasPrefix(err.Error(), c.field+":") || !errors.Is(err, pmd.ErrCPUSet) {
			t.Errorf("%s/%s: %v, want an ErrCPUSet naming %s", c.fwd, c.ctl, err, c.field)
		}
	}
}
