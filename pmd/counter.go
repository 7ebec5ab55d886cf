package pmd

import "sync/atomic"

// Counter is a statistic that one goroutine adds to and any goroutine reads: a port
// side's packet counts, a worker's per-interface counts. Add must not be called
// concurrently with another Add; Load may be called from anywhere. Add costs no
// locked instruction on amd64 (see counters_unsafe.go), so a datapath can count every
// burst. The zero value is ready.
type Counter struct{ v atomic.Uint64 }

// Add adds n; only the counter's one writer calls it.
func (c *Counter) Add(n uint64) { bump(&c.v, n) }

// Load returns the count.
func (c *Counter) Load() uint64 { return c.v.Load() }
