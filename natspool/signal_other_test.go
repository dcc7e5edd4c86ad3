//go:build !unix

package natspool_test

import "os"

// sigStop and sigCont would pause and resume a process; there is no such
// signal here, and sending them fails.
var sigStop, sigCont os.Signal = nil, nil
