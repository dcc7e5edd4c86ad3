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
// mode): pools and worker hosts connect to it by URL, which carries the
// token that it requires.
type Server struct {
	s       *server.Server
	url     string
	tempDir string
}

// StartServer starts an embedded NATS server with JetStream, which
// requires a random token of every client, and waits until it is ready.
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
	token := randomID() + randomID()
	sopts := &server.Options{
		Host: host, Port: port, JetStream: true, StoreDir: dir,
		JetStreamMaxStore: maxStore, JetStreamMaxMemory: 64 << 20,
		NoSigs: true, NoLog: true, Authorization: token,
		TLSConfig: opts.TLS,
	}
	if opts.TLS != nil {
		sopts.TLS = true
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
	u := url.URL{Scheme: scheme, User: url.User(token), Host: net.JoinHostPort(host, strconv.Itoa(addr.Port))}
	srv.url = u.String()
	return srv, nil
}

// URL is what pools and worker hosts connect to, token included: give it
// to the worker hosts (Options.URL), and keep it as secret as the token.
func (s *Server) URL() string { return s.url }

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
