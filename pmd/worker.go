package pmd

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dpkit/dpkit/internal/affinity"
)

// IdlePolicy says what a worker does after a loop that moved no packets.
type IdlePolicy uint8

const (
	// IdleBusyPoll spins: lowest latency, one CPU at 100% (DPDK's default).
	IdleBusyPoll IdlePolicy = iota
	// IdleYield gives the Go scheduler a turn after each empty loop.
	IdleYield
	// IdleSleep sleeps after an empty loop, doubling the sleep from SleepMin up to
	// SleepMax while loops stay empty and resetting it when packets move.
	IdleSleep
	// IdleAdaptive spins for SpinLoops empty loops, then yields for YieldLoops, then
	// sleeps as IdleSleep does: full speed under load, little CPU when quiet.
	IdleAdaptive
)

func (p IdlePolicy) String() string {
	switch p {
	case IdleBusyPoll:
		return "busy-poll"
	case IdleYield:
		return "yield"
	case IdleSleep:
		return "sleep"
	case IdleAdaptive:
		return "adaptive"
	}
	return fmt.Sprintf("IdlePolicy(%d)", p)
}

// WorkerOptions configure a Worker. The zero value is an unpinned busy-polling worker.
type WorkerOptions struct {
	// Name labels the worker in errors and stats.
	Name string
	// CPUs the worker's thread is pinned to; empty means not pinned. Usually one CPU.
	CPUs CPUSet
	// Idle policy and its knobs; zero knobs take the defaults shown.
	Idle       IdlePolicy
	SleepMin   time.Duration // 10µs
	SleepMax   time.Duration // 1ms
	SpinLoops  int           // 1024
	YieldLoops int           // 128
}

// Validate reports options that cannot work.
func (o *WorkerOptions) Validate() error {
	if o.Idle > IdleAdaptive {
		return fmt.Errorf("pmd: worker %q: unknown idle policy %d", o.Name, o.Idle)
	}
	if o.SleepMin < 0 || o.SleepMax < 0 || o.SpinLoops < 0 || o.YieldLoops < 0 {
		return fmt.Errorf("pmd: worker %q: negative idle knob", o.Name)
	}
	if o.SleepMax != 0 && o.SleepMin > o.SleepMax {
		return fmt.Errorf("pmd: worker %q: SleepMin %v above SleepMax %v", o.Name, o.SleepMin, o.SleepMax)
	}
	return nil
}

// PollFunc does one round of work (receive a burst, process, transmit) and returns how
// many packets it moved; 0 makes the round idle.
type PollFunc func() int

// WorkerStats are a worker's counters.
type WorkerStats struct {
	Loops     uint64 // rounds run
	IdleLoops uint64 // rounds that moved nothing
	Packets   uint64 // packets the poll function reported
}

// Worker runs a poll function in a loop on a goroutine locked to an OS thread pinned to
// its CPUs, until its context ends. Counters are published every 64 rounds and when it
// stops, so Stats lags by at most that.
//
// Stats is safe for concurrent use; Run is called once.
type Worker struct {
	opts WorkerOptions
	poll PollFunc

	loops, idle, pkts atomic.Uint64
	ran               atomic.Bool

	// done and timer belong to Run's goroutine: a back-off sleep waits on the timer
	// or for the context to end, whichever comes first.
	done  <-chan struct{}
	timer *time.Timer
}

// ErrWorkerRun reports a second Run of the same worker.
var ErrWorkerRun = errors.New("pmd: worker already ran")

// NewWorker returns a worker for poll.
func NewWorker(opts WorkerOptions, poll PollFunc) (*Worker, error) {
	if poll == nil {
		return nil, fmt.Errorf("pmd: worker %q: nil poll function", opts.Name)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.CPUs.Count() > 0 {
		if err := opts.CPUs.CheckAvailable(); err != nil {
			return nil, fmt.Errorf("pmd: worker %q: %w", opts.Name, err)
		}
	}
	if opts.SleepMin == 0 {
		opts.SleepMin = 10 * time.Microsecond
	}
	if opts.SleepMax == 0 {
		opts.SleepMax = time.Millisecond
	}
	if opts.SleepMin > opts.SleepMax {
		opts.SleepMin = opts.SleepMax
	}
	if opts.SpinLoops == 0 {
		opts.SpinLoops = 1024
	}
	if opts.YieldLoops == 0 {
		opts.YieldLoops = 128
	}
	return &Worker{opts: opts, poll: poll}, nil
}

// Name returns the worker's name.
func (w *Worker) Name() string { return w.opts.Name }

// Stats returns the worker's counters.
func (w *Worker) Stats() WorkerStats {
	return WorkerStats{Loops: w.loops.Load(), IdleLoops: w.idle.Load(), Packets: w.pkts.Load()}
}

// Run locks the calling goroutine to its thread, pins it, and polls until ctx is done.
// It returns nil after a clean stop, or the pinning error.
func (w *Worker) Run(ctx context.Context) error {
	if !w.ran.CompareAndSwap(false, true) {
		return ErrWorkerRun
	}
	runtime.LockOSThread()
	if w.opts.CPUs.Count() > 0 {
		prev, err := affinity.Thread()
		if err == nil {
			err = affinity.SetThread(&w.opts.CPUs.m)
		}
		if err != nil {
			runtime.UnlockOSThread()
			return fmt.Errorf("pmd: worker %q: %w", w.opts.Name, err)
		}
		// Give the thread back to the scheduler only with its old affinity; if that
		// fails the goroutine keeps it locked and the runtime retires it on exit.
		defer func() {
			if affinity.SetThread(&prev) == nil {
				runtime.UnlockOSThread()
			}
		}()
	} else {
		defer runtime.UnlockOSThread()
	}
	w.done = ctx.Done()
	var stop atomic.Bool
	unhook := context.AfterFunc(ctx, func() { stop.Store(true) })
	defer unhook()

	var loops, idle, pkts uint64
	flush := func() {
		w.loops.Add(loops)
		w.idle.Add(idle)
		w.pkts.Add(pkts)
		loops, idle, pkts = 0, 0, 0
	}
	defer flush()

	empty := 0 // consecutive idle rounds
	sleep := w.opts.SleepMin
	for !stop.Load() {
		n := w.poll()
		loops++
		if n > 0 {
			pkts += uint64(n)
			empty = 0
			sleep = w.opts.SleepMin
		} else {
			idle++
			empty++
			w.idleWait(empty, &sleep)
		}
		if loops&63 == 0 {
			flush()
		}
	}
	return nil
}

func (w *Worker) idleWait(empty int, sleep *time.Duration) {
	switch w.opts.Idle {
	case IdleBusyPoll:
	case IdleYield:
		runtime.Gosched()
	case IdleSleep:
		w.backoff(sleep)
	case IdleAdaptive:
		switch {
		case empty <= w.opts.SpinLoops:
		// empty > SpinLoops here, so the difference cannot overflow where the sum
		// SpinLoops+YieldLoops would for a YieldLoops of math.MaxInt ("never sleep").
		case empty-w.opts.SpinLoops <= w.opts.YieldLoops:
			runtime.Gosched()
		default:
			w.backoff(sleep)
		}
	}
}

// backoff sleeps for *sleep, or until the worker's context ends (a SleepMax of an
// hour must not hold up a stop for an hour), and doubles *sleep towards SleepMax.
func (w *Worker) backoff(sleep *time.Duration) {
	if w.timer == nil {
		w.timer = time.NewTimer(*sleep)
	} else {
		w.timer.Reset(*sleep)
	}
	select {
	case <-w.timer.C:
	case <-w.done:
		w.timer.Stop()
	}
	if *sleep < w.opts.SleepMax {
		*sleep = min(2**sleep, w.opts.SleepMax)
	}
}

// RunWorkers runs each worker on its own goroutine and waits until all have stopped.
// When one fails the others are stopped too; the first error is returned.
func RunWorkers(ctx context.Context, workers ...*Worker) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(ctx); err != nil {
				once.Do(func() { first = err })
				cancel()
			}
		}()
	}
	wg.Wait()
	return first
}
