//go:build !unix

package bench_test

import (
	"errors"
	"fmt"
	"os"
)

// socketPair fails: the floor is measured over a Unix socket pair.
func socketPair() (ours, theirs *os.File, err error) {
	return nil, nil, fmt.Errorf("no Unix socket pairs here: %w", errors.ErrUnsupported)
}
