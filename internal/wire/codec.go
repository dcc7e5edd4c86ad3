package wire

import (
	"encoding"
	"fmt"
	"math/big"
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
	// The frame size limit does not bound what a peer can make us
	// allocate: one byte of CBOR can decode to tens of bytes of Go values
	// (an empty map into an any, a null into an element of a []struct).
	// checkCost bounds that, by the type decoded into, before the codec
	// runs (see cost.go); the element limits are as high as the codec
	// allows, since they bound each array, not the sum (a []int of a
	// million items is an ordinary argument). Nesting stays bounded
	// because deep nesting costs stack; checkCost's maxNesting is this.
	decMode, err = cbor.DecOptions{
		MaxNestedLevels:  maxNesting,
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
	if b, ok := marshalFast(any(v)); ok {
		return b, nil
	}
	return encMode.Marshal(v)
}

// Unmarshal decodes data into a T. For T = []byte it returns data itself.
// Decoding data allocates at most CostFactor times its size, plus
// CostFloor: a value that would take more is refused with a *CostError,
// which matches ErrMessageTooLarge; bytes that are not one well-formed
// CBOR item give an error that wraps ErrMalformed.
func Unmarshal[T any](data []byte) (T, error) {
	var v T
	err := UnmarshalInto(data, &v)
	return v, err
}

// UnmarshalInto is Unmarshal into *p, which must hold T's zero value: where
// *p is already on the heap (an element of a slice), it allocates nothing
// more for the types of the fast path (integers, floats).
func UnmarshalInto[T any](data []byte, p *T) error {
	if q, ok := any(p).(*[]byte); ok && IsRaw[T]() {
		*q = data
		return nil
	}
	if unmarshalFast(data, any(p)) {
		return nil
	}
	if err := checkCost(data, reflect.TypeFor[T]()); err != nil {
		return err
	}
	if err := decMode.Unmarshal(data, p); err != nil {
		return fmt.Errorf("%w: decoding %T: %v", ErrMalformed, *p, err)
	}
	return nil
}

// MarshalAny and UnmarshalAny are the codec for the protocol's own structures.
func MarshalAny(v any) ([]byte, error) { return encMode.Marshal(v) }

// UnmarshalAny decodes data into the value p points to, within the same
// bound as Unmarshal.
func UnmarshalAny(data []byte, p any) error {
	if t := reflect.TypeOf(p); t != nil && t.Kind() == reflect.Pointer {
		if err := checkCost(data, t.Elem()); err != nil {
			return err
		}
	}
	if err := decMode.Unmarshal(data, p); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// CheckType reports why values of type t can never cross a process
// boundary, or nil: a channel, a function, an unsafe pointer or a complex
// number anywhere inside it; an interface with methods (such as error),
// which encodes while it is nil or holds a value but can never be decoded,
// since the receiving process cannot know which concrete type to make; or
// a struct with fields but none that the codec encodes (none exported),
// whose every value would arrive as the zero value.
// The empty interface (any) is allowed: it decodes as CBOR's generic
// types. A type that decodes itself (it implements cbor.Unmarshaler or
// encoding.BinaryUnmarshaler) is not looked into.
func CheckType(t reflect.Type) error {
	return checkType(t, map[reflect.Type]bool{})
}

var (
	cborUnmarshaler   = reflect.TypeFor[cbor.Unmarshaler]()
	binaryUnmarshaler = reflect.TypeFor[encoding.BinaryUnmarshaler]()
)

func checkType(t reflect.Type, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil
	}
	seen[t] = true
	if decodesItself(t) {
		return nil
	}
	switch t.Kind() {
	case reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
		return fmt.Errorf("type %s cannot cross a process boundary", t)
	case reflect.Interface:
		if t.NumMethod() > 0 {
			return fmt.Errorf("interface type %s cannot be decoded in another process, which cannot know its concrete type: "+
				"use a concrete type, or carry an error as its message (a string field set from err.Error())", t)
		}
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
		if err := checkFields(t, seen, 0); err != nil {
			return err
		}
		if t.NumField() > 0 && t != bigIntType && !hasEncodedField(t, 0) {
			return fmt.Errorf("struct type %s has no exported fields: CBOR encodes only exported fields (not those tagged \"-\"), "+
				"so every value would arrive as its zero value; export its fields, or give it MarshalCBOR and UnmarshalCBOR methods", t)
		}
	}
	return nil
}

// checkFields checks the types of the fields of struct type t that the
// codec encodes. An embedded struct's fields are promoted, so they are
// checked as t's own: such a struct may have none (a sync.Mutex).
func checkFields(t reflect.Type, seen map[reflect.Type]bool, depth int) error {
	for i := range t.NumField() {
		f := t.Field(i)
		if !encoded(f) {
			continue
		}
		var err error
		if ft := embeddedStruct(f); ft != nil && depth < 16 {
			err = checkFields(ft, seen, depth+1)
		} else {
			err = checkType(f.Type, seen)
		}
		if err != nil {
			return fmt.Errorf("field %s of %s: %w", f.Name, t, err)
		}
	}
	return nil
}

// embeddedStruct returns the struct type of field f if f is an embedded
// struct (or pointer to one) whose fields the codec promotes, or nil.
func embeddedStruct(f reflect.StructField) reflect.Type {
	ft := f.Type
	if ft.Kind() == reflect.Pointer {
		ft = ft.Elem()
	}
	if !f.Anonymous || ft.Kind() != reflect.Struct || decodesItself(ft) {
		return nil
	}
	return ft
}

// bigIntType is a struct without exported fields that the codec encodes
// itself, as a CBOR bignum.
var bigIntType = reflect.TypeFor[big.Int]()

// hasEncodedField reports whether the codec encodes any field of struct
// type t: an exported one, or one of an embedded struct's, which are
// promoted. (An embedded struct without any, such as a sync.Mutex, adds
// none, and is no error: only a struct that encodes as nothing at all is.)
func hasEncodedField(t reflect.Type, depth int) bool {
	for i := range t.NumField() {
		f := t.Field(i)
		if !encoded(f) {
			continue
		}
		ft := embeddedStruct(f)
		if ft == nil || depth < 16 && hasEncodedField(ft, depth+1) {
			return true
		}
	}
	return false
}

// decodesItself reports whether the codec leaves decoding values of type
// t to their own method.
func decodesItself(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return pt.Implements(cborUnmarshaler) || pt.Implements(binaryUnmarshaler)
}

// encoded reports whether the codec encodes struct field f: an exported
// field, or an embedded struct whose exported fields are promoted, unless
// its tag says "-" (the cbor tag, or else the json tag, as the codec reads them).
func encoded(f reflect.StructField) bool {
	tag, ok := f.Tag.Lookup("cbor")
	if !ok {
		tag = f.Tag.Get("json")
	}
	if tag == "-" {
		return false
	}
	if f.IsExported() {
		return true
	}
	t := f.Type
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return f.Anonymous && t.Kind() == reflect.Struct
}

func wrapIn(t reflect.Type, err error) error { return fmt.Errorf("in %s: %w", t, err) }

// RawMessage is an encoded value, kept as it is: to split an encoded array
// of items, or join several.
type RawMessage = cbor.RawMessage
