//go:build unix

package natstest

import (
	"os"
	"syscall"
)

// resume continues p if a test stopped it (SIGSTOP).
func resume(p *os.Process) { p.Signal(syscall.SIGCONT) }
