package child

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

type request struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	requests = make(chan request)
	once     sync.Once
)

// Start is cmd.Start, with the child killed (SIGKILL) when this process dies. It sets
// cmd.SysProcAttr.Pdeathsig, keeping any other attributes set.
func Start(cmd *exec.Cmd) error {
	once.Do(func() { go forker() })
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	r := request{cmd: cmd, done: make(chan error, 1)}
	requests <- r
	return <-r.done
}

// Run is Start followed by cmd.Wait.
func Run(cmd *exec.Cmd) error {
	if err := Start(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// forker forks every child from its thread, which never exits.
func forker() {
	runtime.LockOSThread()
	for r := range requests {
		r.done <- r.cmd.Start()
	}
}
