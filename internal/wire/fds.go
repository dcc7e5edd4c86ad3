package wire

import (
	"encoding/binary"
	"fmt"
)

// MaxFDs is the most descriptors one KindFDs frame carries.
const MaxFDs = 64

// FDFrame encodes a KindFDs frame for the handles ids, whose descriptors
// go with it as SCM_RIGHTS.
func FDFrame(ids []uint64) []byte {
	payload := make([]byte, 0, 8*len(ids))
	for _, id := range ids {
		payload = binary.BigEndian.AppendUint64(payload, id)
	}
	b := make([]byte, HeaderSize, HeaderSize+len(payload))
	binary.BigEndian.PutUint32(b[0:4], uint32(len(payload)+HeaderSize-4))
	b[4] = byte(KindFDs)
	return append(b, payload...)
}

// ParseFDs decodes the IDs of a KindFDs frame's payload.
func ParseFDs(payload []byte) ([]uint64, error) {
	if len(payload)%8 != 0 || len(payload)/8 > MaxFDs {
		return nil, fmt.Errorf("%w: fds frame of %d bytes", ErrMalformed, len(payload))
	}
	ids := make([]uint64, len(payload)/8)
	for i := range ids {
		ids[i] = binary.BigEndian.Uint64(payload[8*i:])
	}
	return ids, nil
}
