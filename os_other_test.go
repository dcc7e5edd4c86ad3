//go:build !unix

package mp_test

import (
	"os"
	"os/exec"
)

// killSelf ends the calling process at once.
func killSelf() {
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		p.Kill()
	}
}

// newSession does nothing: there are no sessions here.
func newSession(cmd *exec.Cmd) {}
