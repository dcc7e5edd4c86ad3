//go:build linux

// Listener has two programs talk over a Unix socket, authenticated by a
// key, as Python's multiprocessing.connection Listener and Client do. The
// server listens, then starts the client as a separate program (not an mp
// worker: any program that calls mp.Dial with the key will do), with the
// key in its environment. A connection with a wrong key is refused before
// any value is read; every value after that is encrypted and
// authenticated with keys drawn from the key (see mp.ListenOptions). Over
// TCP to another machine, give both sides TLS as well.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/go-mp/mp"
)

// keyEnv carries the key to the client.
const keyEnv = "LISTENER_EXAMPLE_KEY"

type greeting struct {
	From string
	N    int
}

func main() {
	mp.Main()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if len(os.Args) == 3 && os.Args[1] == "client" {
		if err := client(ctx, os.Args[2]); err != nil {
			log.Fatal("client: ", err)
		}
		return
	}
	if err := server(ctx); err != nil {
		log.Fatal("server: ", err)
	}
}

func server(ctx context.Context) error {
	key := make([]byte, 32)
	rand.Read(key)
	dir, err := os.MkdirTemp("", "listener")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	addr := filepath.Join(dir, "socket")
	l, err := mp.Listen[greeting]("unix", addr, key, mp.ListenOptions{})
	if err != nil {
		return err
	}
	defer l.Close()

	// A stranger without the key is refused.
	guess := make([]byte, 32)
	rand.Read(guess)
	if _, err := mp.Dial[greeting](ctx, "unix", addr, guess, mp.DialOptions{}); errors.Is(err, mp.ErrAuth) {
		fmt.Println("server: a client with the wrong key was refused")
	} else {
		return fmt.Errorf("a wrong key: got %v", err)
	}

	cmd := exec.CommandContext(ctx, os.Args[0], "client", addr)
	cmd.Env = append(os.Environ(), keyEnv+"="+hex.EncodeToString(key))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	c, err := l.Accept(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	g, err := c.Recv(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("server got %q %d\n", g.From, g.N)
	if err := c.Send(ctx, greeting{From: "server", N: g.N + 1}); err != nil {
		return err
	}
	if err := cmd.Wait(); err != nil {
		return err
	}
	fmt.Println("server: the client is done")
	return nil
}

func client(ctx context.Context, addr string) error {
	key, err := hex.DecodeString(os.Getenv(keyEnv))
	if err != nil {
		return err
	}
	c, err := mp.Dial[greeting](ctx, "unix", addr, key, mp.DialOptions{})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Send(ctx, greeting{From: "client", N: 1}); err != nil {
		return err
	}
	g, err := c.Recv(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("client got %q %d\n", g.From, g.N)
	return nil
}
