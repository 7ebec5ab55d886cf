package vhost

import (
	"testing"

	"github.com/dpkit/dpkit/internal/testpmd"
)

// The interop tests and benchmarks drive dpdk-testpmd through internal/testpmd.

func needTestpmd(t testing.TB) { testpmd.Need(t) }

// startTestpmd runs testpmd with one vdev, forwarding on lcore 1, on 4 KiB pages.
func startTestpmd(t testing.TB, vdev string, appArgs ...string) *testpmd.Testpmd {
	t.Helper()
	return testpmd.Start(t, testpmd.Options{Vdev: vdev, Args: appArgs})
}

// startTestpmdMem is startTestpmd on the given lcores and main lcore, on 2 MiB
// hugepages when huge is set and the machine has enough free (testpmd.Options.Huge).
func startTestpmdMem(t testing.TB, huge bool, lcores string, mainLcore int, vdev string, appArgs ...string) *testpmd.Testpmd {
	t.Helper()
	return testpmd.Start(t, testpmd.Options{Vdev: vdev, Lcores: lcores, MainLcore: mainLcore, Huge: huge, Args: appArgs})
}
