package xsk

import (
	"errors"
	"sync"
	"testing"

	"github.com/dpkit/dpkit/internal/testenv"
)

// TestProgramRegisterClose: Program is safe for concurrent use, so Register and
// Unregister may race Close (run with -race); after Close they fail with ErrClosed.
// Before, they used the XSKMAP's descriptor unlocked, as Close released it, and so
// could update whatever object reused the number.
func TestProgramRegisterClose(t *testing.T) {
	testenv.NeedRoot(t)
	s := &Socket{fd: -1}
	for range 20 {
		prog, err := NewProgram(ProgramOptions{MaxQueues: 4})
		if err != nil {
			testenv.Unavailable(t, "BPF XSKMAP: "+err.Error())
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				err := prog.Register(0, s)
				prog.Unregister(0)
				if errors.Is(err, ErrClosed) {
					return
				}
			}
		}()
		prog.Close()
		wg.Wait()
		if err := prog.Unregister(0); !errors.Is(err, ErrClosed) {
			t.Fatalf("Unregister after Close: %v, want ErrClosed", err)
		}
	}
}
