package natspool_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/go-mp/mp"
	"github.com/go-mp/mp/natspool"
)

// operatorServer starts a NATS server of the decentralized kind: an
// operator, and accounts whose users present a .creds file (a user JWT
// signed by the account, and the user's nkey seed). It returns the
// server's URL and a function that writes a creds file for a new user of
// the account with JetStream (or, with stranger, of an account the server
// does not know).
func operatorServer(t *testing.T) (url string, creds func(stranger bool) string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	tok, err := jwt.NewOperatorClaims(opPub).Encode(op)
	must(err)
	oc, err := jwt.DecodeOperatorClaims(tok)
	must(err)

	account := func(js bool) (nkeys.KeyPair, string, string) {
		kp, _ := nkeys.CreateAccount()
		pub, _ := kp.PublicKey()
		ac := jwt.NewAccountClaims(pub)
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		tok, err := ac.Encode(op)
		must(err)
		return kp, pub, tok
	}
	_, sysPub, sysJWT := account(false)
	acc, accPub, accJWT := account(true)
	resolver := &server.MemAccResolver{}
	must(resolver.Store(sysPub, sysJWT))
	must(resolver.Store(accPub, accJWT))

	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: resolver, SystemAccount: sysPub,
		NoSigs: true, NoLog: true,
	})
	must(err)
	s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("the server did not start")
	}

	dir := t.TempDir()
	n := 0
	return s.ClientURL(), func(stranger bool) string {
		signer := acc
		if stranger {
			signer, _, _ = account(true) // not in the resolver
		}
		user, _ := nkeys.CreateUser()
		userPub, _ := user.PublicKey()
		seed, _ := user.Seed()
		tok, err := jwt.NewUserClaims(userPub).Encode(signer)
		must(err)
		file, err := jwt.FormatUserConfig(tok, seed)
		must(err)
		n++
		path := filepath.Join(dir, "user"+string(rune('0'+n))+".creds")
		must(os.WriteFile(path, file, 0o600))
		return path
	}
}

func TestCredsFile(t *testing.T) {
	// A pool and a worker host, each with a .creds file, on a server with
	// accounts; a user of an account the server does not know is refused.
	ctx := bounded(t, 60*time.Second)
	url, creds := operatorServer(t)

	p, err := natspool.NewPool(ctx, natspool.Options{URL: url, CredsFile: creds(false), AckWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	host, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- natspool.RunWorker(host, natspool.WorkerOptions{
			Options: natspool.Options{URL: url, CredsFile: creds(false)},
			Pool:    mp.PoolOptions{Workers: 1},
		})
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("the worker host: %v", err)
		}
	}()
	if v, err := mp.Apply(ctx, p, square, 7); v != 49 || err != nil {
		t.Errorf("Apply on a host with a creds file: %d, %v", v, err)
	}

	err = natspool.RunWorker(ctx, natspool.WorkerOptions{Options: natspool.Options{URL: url, CredsFile: creds(true)}})
	if err == nil || !strings.Contains(err.Error(), "uthorization") {
		t.Errorf("a worker host of an unknown account: got %v", err)
	}
	_, err = natspool.NewPool(ctx, natspool.Options{URL: url, CredsFile: filepath.Join(t.TempDir(), "missing.creds")})
	if err == nil || !strings.Contains(err.Error(), "missing.creds") {
		t.Errorf("a pool with a missing creds file: got %v", err)
	}
}
