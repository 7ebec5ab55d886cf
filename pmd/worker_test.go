package pmd

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/affinity"
)

func TestWorkerPinsAndStops(t *testing.T) {
	for _, idle := range []IdlePolicy{IdleBusyPoll, IdleYield, IdleSleep, IdleAdaptive} {
		t.Run(idle.String(), func(t *testing.T) {
			var pinnedOK atomic.Bool
			var rounds atomic.Int64
			w, err := NewWorker(WorkerOptions{Name: "w", CPUs: CPUSetOf(0), Idle: idle, SpinLoops: 10, YieldLoops: 10}, func() int {
				if rounds.Add(1) == 1 {
					m, err := affinity.Thread()
					pinnedOK.Store(err == nil && CPUSet{m: m} == CPUSetOf(0))
				}
				if rounds.Load()%2 == 0 {
					return 3
				}
				return 0
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if err := w.Run(ctx); err != nil {
				t.Fatal(err)
			}
			if !pinnedOK.Load() {
				t.Error("poll function did not run pinned to CPU 0")
			}
			s := w.Stats()
			if s.Loops == 0 || s.Loops != uint64(rounds.Load()) || s.Packets != 3*(s.Loops/2) || s.IdleLoops != s.Loops-s.Loops/2 {
				t.Errorf("stats %+v after %d rounds", s, rounds.Load())
			}
			if err := w.Run(ctx); !errors.Is(err, ErrWorkerRun) {
				t.Errorf("second Run: %v", err)
			}
		})
	}
}

func TestWorkerOptionsInvalid(t *testing.T) {
	poll := func() int { return 0 }
	for _, o := range []WorkerOptions{
		{Idle: 9},
		{SleepMin: -1},
		{SleepMin: time.Second, SleepMax: time.Millisecond},
		{CPUs: CPUSetOf(1000)},
	} {
		if _, err := NewWorker(o, poll); err == nil {
			t.Errorf("NewWorker(%+v) accepted", o)
		}
	}
	if _, err := NewWorker(WorkerOptions{}, nil); err == nil {
		t.Error("nil poll accepted")
	}
}

func TestRunWorkers(t *testing.T) {
	var a, b atomic.Int64
	wa, _ := NewWorker(WorkerOptions{Name: "a", Idle: IdleYield}, func() int { a.Add(1); return 0 })
	wb, _ := NewWorker(WorkerOptions{Name: "b", Idle: IdleSleep}, func() int { b.Add(1); return 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := RunWorkers(ctx, wa, wb); err != nil {
		t.Fatal(err)
	}
	if a.Load() == 0 || b.Load() == 0 {
		t.Fatalf("a %d b %d rounds", a.Load(), b.Load())
	}
}

// TestWorkerAdaptiveHugeYieldLoops: YieldLoops = math.MaxInt asks an adaptive worker
// to yield, never sleep, once it stops spinning. The phase check added SpinLoops and
// YieldLoops, which overflowed to a negative bound, so the worker slept right after
// spinning instead.
func TestWorkerAdaptiveHugeYieldLoops(t *testing.T) {
	w, err := NewWorker(WorkerOptions{Idle: IdleAdaptive, SpinLoops: 10, YieldLoops: math.MaxInt,
		SleepMin: time.Microsecond, SleepMax: time.Millisecond}, func() int { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	sleep := time.Microsecond
	for empty := 11; empty < 20; empty++ {
		w.idleWait(empty, &sleep)
	}
	if sleep != time.Microsecond {
		t.Fatalf("the worker slept (back-off now %v) in its yield phase", sleep)
	}
}

// TestWorkerSleepStopsOnCancel: a sleeping worker must stop when its context ends,
// not when its back-off sleep is over. With SleepMin and SleepMax of an hour (a
// quiet exception-path worker) Run went on sleeping for the hour after the cancel.
func TestWorkerSleepStopsOnCancel(t *testing.T) {
	for _, idle := range []IdlePolicy{IdleSleep, IdleAdaptive} {
		t.Run(idle.String(), func(t *testing.T) {
			w, err := NewWorker(WorkerOptions{Idle: idle, SleepMin: time.Hour, SleepMax: time.Hour,
				SpinLoops: 1, YieldLoops: 1}, func() int { return 0 })
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run still sleeping 5 s after its context ended")
			}
		})
	}
}
