//go:build linux

// Pipe has a parent and a child process talk both ways over a Pipe, as
// Python's multiprocessing.Pipe does: the parent asks, the child answers,
// and when the parent closes its end the child's Recv returns io.EOF and
// it says goodbye by returning what it heard.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"strings"

	"github.com/go-mp/mp"
)

var child = mp.Register("pipe.child", func(ctx context.Context, conn *mp.Conn[string]) ([]string, error) {
	defer conn.Close()
	var heard []string
	for {
		q, err := conn.Recv(ctx)
		if errors.Is(err, io.EOF) {
			return heard, nil
		}
		if err != nil {
			return heard, err
		}
		heard = append(heard, q)
		if err := conn.Send(ctx, strings.ToUpper(q)+"!"); err != nil {
			return heard, err
		}
	}
})

func main() {
	mp.Main()
	ctx := context.Background()
	parentEnd, childEnd, err := mp.Pipe[string]()
	if err != nil {
		log.Fatal(err)
	}
	p, err := mp.Spawn(ctx, child, childEnd, mp.WorkerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	childEnd.Close() // the child has it now
	for _, q := range []string{"hello", "how are you", "goodbye"} {
		if err := parentEnd.Send(ctx, q); err != nil {
			log.Fatal(err)
		}
		a, err := parentEnd.Recv(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("parent sent %q, child answered %q\n", q, a)
	}
	parentEnd.Close()
	heard, err := p.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("the child heard %d messages, then EOF\n", len(heard))
}
