//go:build unix

package mp_test

import (
	"os"
	"os/exec"
	"syscall"
)

// killSelf sends SIGKILL to the calling process.
func killSelf() { syscall.Kill(os.Getpid(), syscall.SIGKILL) }

// newSession has cmd start in a session of its own, outside its parent's
// process group.
func newSession(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} }
