//go:build !unix

package natstest

import "os"

// resume does nothing: only Unix stops processes with a signal.
func resume(*os.Process) {}
