// Package session is the protocol of a connection from mp's Listen and
// Dial: a handshake that proves, both ways, that each side has the key,
// and frames sealed with keys derived from that handshake, so that a relay
// between the two can neither read a frame nor inject, replay, reorder or
// alter one. It runs over a plain socket or over TLS, the same.
//
// The handshake (C is the client, S the server, K the key, Nc and Ns
// 32 random bytes each side picks):
//
//	C -> S  "mp-conn-2" Nc
//	S -> C  "mp-conn-2" Ns
//	C -> S  client proof
//	S -> C  1, server proof   (or 0 and the end, for a wrong proof)
//
// where PRK = HKDF-Extract(SHA-256, secret K, salt Nc||Ns), and the
// proofs and the two directions' AES-256-GCM keys are HKDF-Expand(PRK,
// label) with a label each. The server proves nothing before the client
// has: a stranger learns nothing from it but Ns.
package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// ErrAuth is wrapped by every error about a peer that does not have the
// key, or a frame that was not sealed by the peer (or came out of order).
var ErrAuth = errors.New("mp: authentication failed")

// MinKeySize is the shortest key accepted.
const MinKeySize = 16

// magic opens each side's first message: the protocol and its version.
const magic = "mp-conn-2"

const nonceSize = 32

// The HKDF labels.
const (
	labelClientProof = "mp-conn-2 client proof"
	labelServerProof = "mp-conn-2 server proof"
	labelClientSeal  = "mp-conn-2 client to server"
	labelServerSeal  = "mp-conn-2 server to client"
)

// CheckKey returns why key cannot be used, or nil.
func CheckKey(key []byte) error {
	if len(key) < MinKeySize {
		return fmt.Errorf("a key of %d bytes, under the %d at least: give both sides the same %d or more random bytes (crypto/rand), not a password", len(key), MinKeySize, 2*MinKeySize)
	}
	return nil
}

// secrets are what both sides derive from the key and the two nonces.
type secrets struct {
	clientProof, serverProof []byte
	clientSeal, serverSeal   cipher.AEAD
}

func derive(key, nc, ns []byte) (*secrets, error) {
	prk, err := hkdf.Extract(sha256.New, key, append(append([]byte(nil), nc...), ns...))
	if err != nil {
		return nil, err
	}
	var s secrets
	expand := func(label string) []byte {
		if err != nil {
			return nil
		}
		var b []byte
		b, err = hkdf.Expand(sha256.New, prk, label, 32)
		return b
	}
	s.clientProof = expand(labelClientProof)
	s.serverProof = expand(labelServerProof)
	ck, sk := expand(labelClientSeal), expand(labelServerSeal)
	if err != nil {
		return nil, err
	}
	if s.clientSeal, err = newAEAD(ck); err != nil {
		return nil, err
	}
	if s.serverSeal, err = newAEAD(sk); err != nil {
		return nil, err
	}
	return &s, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func hello(nonce []byte) []byte { return append([]byte(magic), nonce...) }

// readHello reads the other side's first message and returns its nonce.
func readHello(rw io.Reader) ([]byte, error) {
	in := make([]byte, len(magic)+nonceSize)
	if _, err := io.ReadFull(rw, in[:len(magic)]); err != nil {
		return nil, err
	}
	if string(in[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: the other side does not speak mp's connection protocol (version 2), or speaks TLS where this side does not, or the reverse", ErrAuth)
	}
	if _, err := io.ReadFull(rw, in[len(magic):]); err != nil {
		return nil, err
	}
	return in[len(magic):], nil
}

// Server runs the server's side of the handshake on rw with key, and
// returns the connection's framing. The caller bounds it in time (a
// deadline on the socket) and closes rw if it fails. A client that gives
// a wrong proof is told so with a 0 byte; one that does not speak the
// protocol is told nothing.
func Server(rw io.ReadWriter, key []byte, maxMsg int) (*Conn, error) {
	nc, err := readHello(rw)
	if err != nil {
		return nil, err
	}
	ns := make([]byte, nonceSize)
	rand.Read(ns)
	if _, err := rw.Write(hello(ns)); err != nil {
		return nil, err
	}
	s, err := derive(key, nc, ns)
	if err != nil {
		return nil, err
	}
	proof := make([]byte, sha256.Size)
	if _, err := io.ReadFull(rw, proof); err != nil {
		return nil, err
	}
	if !hmac.Equal(proof, s.clientProof) {
		rw.Write([]byte{0})
		return nil, fmt.Errorf("%w: the client does not have the key", ErrAuth)
	}
	if _, err := rw.Write(append([]byte{1}, s.serverProof...)); err != nil {
		return nil, err
	}
	return newConn(rw, s.serverSeal, s.clientSeal, maxMsg), nil
}

// Client runs the client's side of the handshake on rw with key, and
// returns the connection's framing. The caller bounds it in time and
// closes rw if it fails. The error wraps ErrAuth if the server refused
// the key, does not have it, or does not speak the protocol.
func Client(rw io.ReadWriter, key []byte, maxMsg int) (*Conn, error) {
	nc := make([]byte, nonceSize)
	rand.Read(nc)
	if _, err := rw.Write(hello(nc)); err != nil {
		return nil, err
	}
	ns, err := readHello(rw)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: the listener closed the connection in the handshake: does it expect TLS, or is it not an mp Listener? (%w)", ErrAuth, err)
		}
		return nil, err
	}
	s, err := derive(key, nc, ns)
	if err != nil {
		return nil, err
	}
	if _, err := rw.Write(s.clientProof); err != nil {
		return nil, err
	}
	var ok [1]byte
	if _, err := io.ReadFull(rw, ok[:]); err != nil || ok[0] != 1 {
		return nil, fmt.Errorf("%w: the listener refused the key", ErrAuth)
	}
	proof := make([]byte, sha256.Size)
	if _, err := io.ReadFull(rw, proof); err != nil {
		return nil, fmt.Errorf("reading the listener's proof: %w", err)
	}
	if !hmac.Equal(proof, s.serverProof) {
		return nil, fmt.Errorf("%w: the listener does not have the key", ErrAuth)
	}
	return newConn(rw, s.clientSeal, s.serverSeal, maxMsg), nil
}
