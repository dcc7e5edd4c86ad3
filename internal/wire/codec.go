package wire

import (
	"fmt"
	"reflect"

	"github.com/fxamacker/cbor/v2"
)

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.EncOptions{
		Time:          cbor.TimeRFC3339Nano,
		NilContainers: cbor.NilContainerAsNull,
	}.EncMode()
	if err != nil {
		panic(err)
	}
	// The frame size limit bounds what a peer can make us allocate: every
	// array element and map pair costs at least one byte on the wire. The
	// element limits are therefore as high as the codec allows (a []int of a
	// million items is an ordinary argument); nesting stays bounded because
	// deep nesting costs stack, not bytes.
	decMode, err = cbor.DecOptions{
		MaxNestedLevels:  64,
		MaxArrayElements: 2147483647,
		MaxMapPairs:      2147483647,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsAllowed,
		DefaultMapType:   reflect.TypeFor[map[string]any](),
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

var bytesType = reflect.TypeFor[[]byte]()

// IsRaw reports whether values of type T travel as raw bytes, untouched by the codec.
func IsRaw[T any]() bool { return reflect.TypeFor[T]() == bytesType }

// Marshal encodes v. A []byte is returned as it is: raw bytes pass through
// without a copy or an encoding.
func Marshal[T any](v T) ([]byte, error) {
	if b, ok := any(v).([]byte); ok && IsRaw[T]() {
		return b, nil
	}
	return encMode.Marshal(v)
}

// Unmarshal decodes data into a T. For T = []byte it returns data itself.
func Unmarshal[T any](data []byte) (T, error) {
	var v T
	if p, ok := any(&v).(*[]byte); ok && IsRaw[T]() {
		*p = data
		return v, nil
	}
	if err := decMode.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("%w: decoding %T: %v", ErrMalformed, v, err)
	}
	return v, nil
}

// MarshalAny and UnmarshalAny are the codec for the protocol's own structures.
func MarshalAny(v any) ([]byte, error) { return encMode.Marshal(v) }

// UnmarshalAny decodes data into the value p points to.
func UnmarshalAny(data []byte, p any) error {
	if err := decMode.Unmarshal(data, p); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// CheckType reports why values of type t can never be encoded (a channel, a
// function, an unsafe pointer, anywhere inside it), or nil. Interfaces are
// checked when a value is encoded, not here.
func CheckType(t reflect.Type) error {
	return checkType(t, map[reflect.Type]bool{})
}

func checkType(t reflect.Type, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
		return fmt.Errorf("type %s cannot cross a process boundary", t)
	case reflect.Pointer, reflect.Slice, reflect.Array:
		if err := checkType(t.Elem(), seen); err != nil {
			return wrapIn(t, err)
		}
	case reflect.Map:
		if err := checkType(t.Key(), seen); err != nil {
			return wrapIn(t, err)
		}
		if err := checkType(t.Elem(), seen); err != nil {
			return wrapIn(t, err)
		}
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() || f.Tag.Get("cbor") == "-" {
				continue
			}
			if err := checkType(f.Type, seen); err != nil {
				return fmt.Errorf("field %s of %s: %w", f.Name, t, err)
			}
		}
	}
	return nil
}

func wrapIn(t reflect.Type, err error) error { return fmt.Errorf("in %s: %w", t, err) }
