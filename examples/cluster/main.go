// Cluster runs a Map on worker hosts through NATS JetStream, all on this
// machine: it starts an embedded NATS server (head mode), then two worker
// host processes (this same program, with the server's URL in their
// environment), which dial it over loopback, and maps over them. Each
// result says which host ran it. On separate machines the hosts run the
// same binary with the URL the head prints; see docs/cluster.md.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/natspool"
)

// The environment of a worker host: the server's URL, its nkey seed file,
// and its name.
const (
	urlEnv  = "CLUSTER_EXAMPLE_URL"
	seedEnv = "CLUSTER_EXAMPLE_SEED"
	nameEnv = "CLUSTER_EXAMPLE_HOST"
)

type ran struct {
	Square int
	Host   string
}

var square = mp.Register("cluster.square", func(ctx context.Context, x int) (ran, error) {
	return ran{Square: x * x, Host: os.Getenv(nameEnv)}, nil
})

func main() {
	mp.Main()
	if url := os.Getenv(urlEnv); url != "" {
		workerHost(url, os.Getenv(seedEnv))
		return
	}
	if err := head(); err != nil {
		log.Fatal(err)
	}
}

// workerHost runs tasks until SIGTERM, authenticated by the nkey in the
// seed file.
func workerHost(url, seed string) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := natspool.RunWorker(ctx, natspool.WorkerOptions{
		Options: natspool.Options{URL: url, NKeySeedFile: seed},
		Pool:    mp.PoolOptions{Workers: 2},
	})
	if err != nil {
		log.Fatal(err)
	}
}

func head() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := natspool.StartServer(natspool.ServerOptions{})
	if err != nil {
		return err
	}
	defer srv.Shutdown()

	// The worker hosts' credential: an nkey seed, in a file only they read.
	dir, err := os.MkdirTemp("", "cluster")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	seed := filepath.Join(dir, "worker.nk")
	if err := srv.WriteWorkerSeed(seed); err != nil {
		return err
	}
	var hosts []*exec.Cmd
	for _, name := range []string{"host-a", "host-b"} {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), urlEnv+"="+srv.Addr(), seedEnv+"="+seed, nameEnv+"="+name)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		hosts = append(hosts, cmd)
	}
	defer func() {
		for _, h := range hosts {
			h.Process.Signal(syscall.SIGTERM)
			h.Wait()
		}
	}()

	p, err := natspool.NewPool(ctx, natspool.Options{URL: srv.URL()}, mp.PoolOptions{})
	if err != nil {
		return err
	}
	defer p.Close()
	in := make([]int, 20)
	for i := range in {
		in[i] = i + 1
	}
	out, err := mp.Map(ctx, p, square, in, mp.ChunkSize(1))
	if err != nil {
		return err
	}
	byHost := map[string]int{}
	for i, r := range out {
		fmt.Printf("%d squared is %d, on %s\n", in[i], r.Square, r.Host)
		byHost[r.Host]++
	}
	names := make([]string, 0, len(byHost))
	for h := range byHost {
		names = append(names, h)
	}
	sort.Strings(names)
	for _, h := range names {
		fmt.Printf("%s ran %d\n", h, byHost[h])
	}
	return nil
}
