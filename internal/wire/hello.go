package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// Version is the protocol version. Bump it on any change to frames or bodies.
const Version = 3

// Magic opens every handshake, so a stray peer is told apart from an old one.
const Magic = "mp-worker"

// Hello is the first frame each side sends.
type Hello struct {
	Magic       string `cbor:"1,keyasint"`
	Version     int    `cbor:"2,keyasint"`
	Fingerprint string `cbor:"3,keyasint"` // of the function registry, see [Fingerprint]
	PID         int    `cbor:"4,keyasint,omitempty"`

	// Set by the parent only.
	Name      string `cbor:"5,keyasint,omitempty"` // the worker's name, for mp.Current
	MaxFrame  int    `cbor:"6,keyasint,omitempty"` // frame size limit both ways
	OneShot   bool   `cbor:"7,keyasint,omitempty"` // exit after the first task
	ReportRSS bool   `cbor:"8,keyasint,omitempty"` // fill Result.RSS
	MaxProcs  int    `cbor:"9,keyasint,omitempty"` // the worker's GOMAXPROCS; 0 leaves Go's default
}

// NewHello returns a Hello for this build.
func NewHello(fingerprint string) Hello {
	return Hello{Magic: Magic, Version: Version, Fingerprint: fingerprint}
}

// MarshalHello encodes h.
func MarshalHello(h Hello) []byte {
	b, err := MarshalAny(h)
	if err != nil {
		panic(err) // a Hello has only strings, ints and bools
	}
	return b
}

// ParseHello decodes a hello payload and checks it against ours: the magic,
// the protocol version and the registry fingerprint must all match.
func ParseHello(b []byte, ours Hello) (Hello, error) {
	var h Hello
	if err := UnmarshalAny(b, &h); err != nil {
		return h, fmt.Errorf("mp: handshake: the peer is not an mp worker of this protocol: %w", err)
	}
	if h.Magic != Magic {
		return h, fmt.Errorf("mp: handshake: %w: the peer is not an mp worker (magic %q)", ErrMalformed, h.Magic)
	}
	if h.Version != ours.Version {
		return h, &MismatchError{What: "protocol version", Ours: fmt.Sprint(ours.Version), Theirs: fmt.Sprint(h.Version)}
	}
	if h.Fingerprint != ours.Fingerprint {
		return h, &MismatchError{What: "function registry", Ours: ours.Fingerprint, Theirs: h.Fingerprint}
	}
	return h, nil
}

// MismatchError reports a handshake with a peer built from another binary.
type MismatchError struct {
	What         string
	Ours, Theirs string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("mp: handshake: worker's %s %s differs from the parent's %s: "+
		"parent and worker must run the same build of the program (rebuild, and restart both)",
		e.What, short(e.Theirs), short(e.Ours))
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// Fingerprint hashes a registry, given as one "name(argtype) restype" line
// per function, in any order.
func Fingerprint(entries []string) string {
	entries = slices.Clone(entries)
	slices.Sort(entries)
	sum := sha256.Sum256([]byte(strings.Join(entries, "\n")))
	return hex.EncodeToString(sum[:])
}
