package natspool_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
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

	p, err := natspool.NewPool(ctx, natspool.Options{URL: url, CredsFile: creds(false), AckWait: 2 * time.Second}, mp.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	hostHere(t, ctx, natspool.Options{URL: url, CredsFile: creds(false)})
	if v, err := mp.Apply(ctx, p, square, 7); v != 49 || err != nil {
		t.Errorf("Apply on a host with a creds file: %d, %v", v, err)
	}

	err = natspool.RunWorker(ctx, natspool.WorkerOptions{Options: natspool.Options{URL: url, CredsFile: creds(true)}})
	if err == nil || !strings.Contains(err.Error(), "uthorization") {
		t.Errorf("a worker host of an unknown account: got %v", err)
	}
	_, err = natspool.NewPool(ctx, natspool.Options{URL: url, CredsFile: filepath.Join(t.TempDir(), "missing.creds")}, mp.PoolOptions{})
	if err == nil || !strings.Contains(err.Error(), "missing.creds") {
		t.Errorf("a pool with a missing creds file: got %v", err)
	}
}

// hostHere runs a worker host of one worker in this process, with opts,
// until the test ends.
func hostHere(t *testing.T, ctx context.Context, opts natspool.Options) {
	host, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- natspool.RunWorker(host, natspool.WorkerOptions{Options: opts, Pool: mp.PoolOptions{Workers: 1}})
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("the worker host: %v", err)
		}
	})
}

func TestTLS(t *testing.T) {
	// Head mode with TLS: a pool and a host that trust its certificate
	// work; a client that does not is refused.
	ctx := bounded(t, 60*time.Second)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "natspool test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	srvTLS := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	cliTLS := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}

	s, err := natspool.StartServer(natspool.ServerOptions{TLS: srvTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if !strings.HasPrefix(s.URL(), "tls://") {
		t.Errorf("URL %q, want tls://", s.URL())
	}
	p, err := natspool.NewPool(ctx, natspool.Options{URL: s.URL(), TLS: cliTLS}, mp.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	seed := filepath.Join(t.TempDir(), "worker.nk")
	if err := s.WriteWorkerSeed(seed); err != nil {
		t.Fatal(err)
	}
	hostHere(t, ctx, natspool.Options{URL: s.Addr(), NKeySeedFile: seed, TLS: cliTLS})
	if v, err := mp.Apply(ctx, p, square, 6); v != 36 || err != nil {
		t.Errorf("Apply over TLS: %d, %v", v, err)
	}
	_, err = natspool.NewPool(ctx, natspool.Options{URL: s.URL()}, mp.PoolOptions{})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a pool that does not trust the certificate: got %v", err)
	}
}
