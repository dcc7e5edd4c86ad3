// Command dupname registers two functions under one name, which mp must
// refuse at init with a clear panic.
package main

import (
	"context"

	"github.com/go-mp/mp"
)

var (
	a = mp.Register("same", func(ctx context.Context, x int) (int, error) { return x, nil })
	b = mp.Register("same", func(ctx context.Context, s string) (string, error) { return s, nil })
)

func main() {
	mp.Main()
	_, _ = a, b
}
