package postgres

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// The array arguments of the store's statements (the merged writes'
// columns, the IDs of ANY(...) lookups) have types of their own, which the
// connections encode straight into PostgreSQL's binary array format. pgx's
// generic array path boxes every element in an interface and looks up its
// encoder, an allocation or two per element: about a fifth of all the
// allocations of an execution. A nil slice is NULL, as in pgx.
type (
	textArray     []string
	nullTextArray []*string // nil elements are NULLs
	intArray      []int64   // integer[] or bigint[], as the parameter is
	byteaArray    [][]byte  // nil elements are NULLs; also text[] of UTF-8 bytes
	timeArray     []time.Time
	boolArray     []bool
)

// arrayOIDs are the array types whose codecs fastArrays wraps, with the
// OIDs of their elements.
var arrayOIDs = map[uint32]uint32{
	pgtype.TextArrayOID:        pgtype.TextOID,
	pgtype.Int4ArrayOID:        pgtype.Int4OID,
	pgtype.Int8ArrayOID:        pgtype.Int8OID,
	pgtype.ByteaArrayOID:       pgtype.ByteaOID,
	pgtype.TimestamptzArrayOID: pgtype.TimestamptzOID,
	pgtype.BoolArrayOID:        pgtype.BoolOID,
}

// registerArrays makes the connection's type map encode the array types
// above directly; everything else (other values, decoding) goes to pgx's
// own codecs as before.
func registerArrays(m *pgtype.Map) {
	for oid := range arrayOIDs {
		if t, ok := m.TypeForOID(oid); ok {
			m.RegisterType(&pgtype.Type{Name: t.Name, OID: oid, Codec: fastArrays{t.Codec}})
		}
	}
}

// fastArrays is an array codec that plans the store's array types itself.
type fastArrays struct{ pgtype.Codec }

// PlanEncode implements pgtype.Codec.
func (c fastArrays) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if format == pgtype.BinaryFormatCode && fits(oid, value) {
		return arrayPlan{elem: arrayOIDs[oid]}
	}
	return c.Codec.PlanEncode(m, oid, format, value)
}

// fits reports whether value is the store's array type for arrays of oid.
func fits(oid uint32, value any) bool {
	switch value.(type) {
	case textArray, nullTextArray:
		return oid == pgtype.TextArrayOID
	case intArray:
		return oid == pgtype.Int4ArrayOID || oid == pgtype.Int8ArrayOID
	case byteaArray:
		// As text[], the elements are the texts' UTF-8 bytes (the JSON
		// of jsonb columns, which go as text), as bytea[] the bytes.
		return oid == pgtype.ByteaArrayOID || oid == pgtype.TextArrayOID
	case timeArray:
		return oid == pgtype.TimestamptzArrayOID
	case boolArray:
		return oid == pgtype.BoolArrayOID
	}
	return false
}

// arrayPlan encodes a one-dimensional array: the number of dimensions,
// whether there are NULLs, the element type, the length and lower bound
// (1), and each element as its length (-1 for NULL) and binary value;
// elem is the OID of the elements.
type arrayPlan struct{ elem uint32 }

// microsToY2K is the Unix time of 2000-01-01, PostgreSQL's epoch, in µs.
const microsToY2K = 946684800 * 1000000

func (p arrayPlan) Encode(value any, buf []byte) ([]byte, error) {
	switch v := value.(type) {
	case textArray:
		return encodeArray(p, buf, v, nil, appendElem[string]), nil
	case nullTextArray:
		return encodeArray(p, buf, v, func(s *string) bool { return s == nil },
			func(b []byte, s *string) []byte { return appendElem(b, *s) }), nil
	case byteaArray:
		return encodeArray(p, buf, v, func(e []byte) bool { return e == nil }, appendElem[[]byte]), nil
	case intArray:
		if p.elem == pgtype.Int4OID {
			for _, n := range v {
				if n < math.MinInt32 || n > math.MaxInt32 {
					return nil, fmt.Errorf("%d is out of range for integer", n)
				}
			}
			return encodeArray(p, buf, v, nil, func(b []byte, n int64) []byte {
				return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(b, 4), uint32(int32(n)))
			}), nil
		}
		return encodeArray(p, buf, v, nil, func(b []byte, n int64) []byte {
			return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(b, 8), uint64(n))
		}), nil
	case timeArray:
		return encodeArray(p, buf, v, nil, func(b []byte, t time.Time) []byte {
			// As pgx encodes a time.Time: whole microseconds, truncated.
			us := t.Unix()*1000000 + int64(t.Nanosecond())/1000 - microsToY2K
			return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(b, 8), uint64(us))
		}), nil
	case boolArray:
		return encodeArray(p, buf, v, nil, func(b []byte, t bool) []byte {
			var c byte
			if t {
				c = 1
			}
			return append(binary.BigEndian.AppendUint32(b, 1), c)
		}), nil
	}
	return nil, fmt.Errorf("postgres: cannot encode %T as an array", value)
}

// encodeArray appends array v, each element by put (its length and its
// value), those for which isNull (if given) holds as NULLs. A nil v is
// NULL: it returns nil.
func encodeArray[E any](p arrayPlan, buf []byte, v []E, isNull func(E) bool, put func([]byte, E) []byte) []byte {
	if v == nil {
		return nil
	}
	nulls := isNull != nil && slices.ContainsFunc(v, isNull)
	buf = p.header(buf, len(v), nulls)
	for _, e := range v {
		if nulls && isNull(e) {
			buf = binary.BigEndian.AppendUint32(buf, math.MaxUint32) // -1: NULL
			continue
		}
		buf = put(buf, e)
	}
	return buf
}

// header appends an array's header; an empty array has no dimensions.
func (p arrayPlan) header(buf []byte, n int, nulls bool) []byte {
	dims, flags := uint32(1), uint32(0)
	if n == 0 {
		dims = 0
	}
	if nulls {
		flags = 1
	}
	buf = binary.BigEndian.AppendUint32(buf, dims)
	buf = binary.BigEndian.AppendUint32(buf, flags)
	buf = binary.BigEndian.AppendUint32(buf, p.elem)
	if n > 0 {
		buf = binary.BigEndian.AppendUint32(buf, uint32(n))
		buf = binary.BigEndian.AppendUint32(buf, 1)
	}
	return buf
}

// appendElem appends a text or bytea element: its length and its bytes.
func appendElem[T string | []byte](buf []byte, v T) []byte {
	return append(binary.BigEndian.AppendUint32(buf, uint32(len(v))), v...)
}
