package natspool

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// ServerOptions configures StartServer.
type ServerOptions struct {
	// Host and Port are where the server listens: by default the loopback
	// interface, on a free port. Listening on another interface needs TLS.
	Host string
	Port int
	// TLS is the server's TLS configuration, required off the loopback.
	TLS *tls.Config
	// StoreDir holds JetStream's files: by default a new temporary
	// directory, removed by Shutdown.
	StoreDir string
	// MaxStore bounds JetStream's storage. Zero means 1 GiB.
	MaxStore int64
}

// Server is a NATS server with JetStream embedded in this process (head
// mode): pools connect to it by URL, with a user and password; worker
// hosts by Addr with the nkey seed of WriteWorkerSeed, or by WorkerURL,
// with a user and password of their own.
type Server struct {
	s                        *server.Server
	url, workerURL, plainURL string
	workerSeed               []byte
	tempDir                  string
}

// StartServer starts an embedded NATS server with JetStream, with two
// users of random passwords (see URL and WorkerURL), and waits until it is
// ready.
func StartServer(opts ServerOptions) (*Server, error) {
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && opts.TLS == nil {
		return nil, fmt.Errorf("natspool: StartServer: listening on %s needs TLS (ServerOptions.TLS): tasks and tokens would cross the network in clear", host)
	}
	port := opts.Port
	if port == 0 {
		port = -1 // a free one
	}
	srv := &Server{}
	dir := opts.StoreDir
	if dir == "" {
		d, err := os.MkdirTemp("", "natspool")
		if err != nil {
			return nil, err
		}
		dir, srv.tempDir = d, d
	}
	maxStore := opts.MaxStore
	if maxStore == 0 {
		maxStore = 1 << 30
	}
	// Two users: pools, which may do anything, and worker hosts, which
	// may only pull, heartbeat and acknowledge tasks, publish outcomes and
	// answer the questions pools ask them.
	poolPass, workerPass := randomID()+randomID(), randomID()+randomID()
	workerPerms := &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			"$JS.API.CONSUMER.MSG.NEXT." + streamName + ".*",
			"$JS.API.CONSUMER.INFO." + streamName + ".*",
			"$JS.ACK." + streamName + ".*.>",
			resultsPfx + ".>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			"_INBOX.>", servesSubj + ".*", cancelPfx + ".*",
		}},
		Response: &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute},
	}
	// Worker hosts may also authenticate with an nkey: its seed signs a
	// challenge, and nothing secret crosses the network.
	kp, err := nkeys.CreateUser()
	if err != nil {
		srv.removeTemp()
		return nil, fmt.Errorf("natspool: StartServer: making the workers' nkey: %w", err)
	}
	workerPub, _ := kp.PublicKey()
	srv.workerSeed, _ = kp.Seed()
	sopts := &server.Options{
		Host: host, Port: port, JetStream: true, StoreDir: dir,
		JetStreamMaxStore: maxStore, JetStreamMaxMemory: 64 << 20,
		NoSigs: true, NoLog: true,
		Users: []*server.User{
			{Username: "pool", Password: poolPass},
			{Username: "worker", Password: workerPass, Permissions: workerPerms},
		},
		Nkeys:     []*server.NkeyUser{{Nkey: workerPub, Permissions: workerPerms}},
		TLSConfig: opts.TLS,
	}
	s, err := server.NewServer(sopts)
	if err != nil {
		srv.removeTemp()
		return nil, fmt.Errorf("natspool: StartServer: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		srv.removeTemp()
		return nil, errors.New("natspool: StartServer: the server was not ready within 10s")
	}
	srv.s = s
	addr := s.Addr().(*net.TCPAddr)
	scheme := "nats"
	if opts.TLS != nil {
		scheme = "tls"
	}
	hostPort := net.JoinHostPort(host, strconv.Itoa(addr.Port))
	srv.url = (&url.URL{Scheme: scheme, User: url.UserPassword("pool", poolPass), Host: hostPort}).String()
	srv.workerURL = (&url.URL{Scheme: scheme, User: url.UserPassword("worker", workerPass), Host: hostPort}).String()
	srv.plainURL = (&url.URL{Scheme: scheme, Host: hostPort}).String()
	return srv, nil
}

// URL is what pools connect to (NewPool's Options.URL), with the pools'
// user and password in it.
func (s *Server) URL() string { return s.url }

// WorkerURL is what worker hosts connect to (RunWorker's Options.URL),
// with the worker hosts' user and password in it: they may pull, heartbeat
// and acknowledge tasks and publish outcomes, and nothing else (not
// publish tasks, not change the stream). Keep it secret.
func (s *Server) WorkerURL() string { return s.workerURL }

// Addr is the server's URL with no credentials in it, for worker hosts that
// authenticate with the nkey of WriteWorkerSeed.
func (s *Server) Addr() string { return s.plainURL }

// WriteWorkerSeed writes the worker hosts' nkey seed to a new file at path
// (mode 0600): a worker host given Addr as its URL and the file as its
// Options.NKeySeedFile authenticates with it, with the rights of
// WorkerURL's user, and no secret crosses the network. Prefer it to
// WorkerURL off this machine.
func (s *Server) WriteWorkerSeed(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(s.workerSeed)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Shutdown stops the server, and removes its temporary store.
func (s *Server) Shutdown() {
	s.s.Shutdown()
	s.s.WaitForShutdown()
	s.removeTemp()
}

func (s *Server) removeTemp() {
	if s.tempDir != "" {
		os.RemoveAll(s.tempDir)
	}
}
