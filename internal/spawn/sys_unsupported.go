//go:build !unix

package spawn

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
)

// supported refuses to start workers: mp's workers need Unix process
// groups, socketpairs and descriptor passing.
func supported() error {
	return fmt.Errorf("mp: worker processes are not supported on %s: mp runs on Linux (and other Unix systems): %w",
		runtime.GOOS, errors.ErrUnsupported)
}

func sysProcAttr() *syscall.SysProcAttr { return nil }

func self() (string, error) { return os.Executable() }

func socketpair() (parent, child *os.File, err error) { return nil, nil, supported() }

func killGroup(pid int) error { return supported() }

func killTree(pid int) error { return supported() }

// KillDescendants does nothing: no worker runs here.
func KillDescendants() {}

func awaitExit(pid int) bool { return false }

// KillOwnGroup does nothing: no worker runs here.
func KillOwnGroup() {}

func closeOnExec(fd int) {}

func setCommandName(name string) {}

// ParentDeathSignal is nil here: a worker sees its parent die only as EOF.
var ParentDeathSignal os.Signal

// growPipe does nothing here.
func growPipe(w *os.File, size int) {}

// setNonblock does nothing here.
func setNonblock(fd int) error { return nil }
