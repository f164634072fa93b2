package postgres

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/docket-run/docket/store/postgres/pgtest"
)

var arrayOID = map[string]uint32{"text": pgtype.TextArrayOID, "integer": pgtype.Int4ArrayOID,
	"bigint": pgtype.Int8ArrayOID, "bytea": pgtype.ByteaArrayOID, "timestamptz": pgtype.TimestamptzArrayOID,
	"boolean": pgtype.BoolArrayOID}

// TestArrayEncoding sends each of the store's array types to the server
// beside the same values as plain slices, which pgx's own codecs encode,
// and requires the server to find the two arrays equal (NULLs included),
// then reads the array back.
func TestArrayEncoding(t *testing.T) {
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, pgtest.ServerURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	registerArrays(conn.TypeMap())

	str := func(s string) *string { return &s }
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	cases := []struct {
		name     string
		typ      string
		fast     any
		plain    any
		nonEmpty bool
	}{
		{"text", "text", textArray{"a", "", "ünï ✓", strings.Repeat("x", 70000)}, []string{"a", "", "ünï ✓", strings.Repeat("x", 70000)}, true},
		{"text empty", "text", textArray{}, []string{}, false},
		{"text nil", "text", textArray(nil), []string(nil), false},
		{"null text", "text", nullTextArray{str("a"), nil, str("")}, []*string{str("a"), nil, str("")}, true},
		{"null text none", "text", nullTextArray{str("b")}, []*string{str("b")}, true},
		{"integer", "integer", intArray{0, -1, math.MaxInt32, math.MinInt32}, []int32{0, -1, math.MaxInt32, math.MinInt32}, true},
		{"bigint", "bigint", intArray{0, -1, math.MaxInt64, math.MinInt64}, []int64{0, -1, math.MaxInt64, math.MinInt64}, true},
		{"bytea", "bytea", byteaArray{{0, 1, 255}, nil, {}}, [][]byte{{0, 1, 255}, nil, {}}, true},
		{"timestamptz", "timestamptz", timeArray{time.Time{}, at("2026-11-27T01:02:03.123456789Z"),
			at("1969-12-31T23:59:59.999999Z"), at("2026-11-27T01:02:03.5+05:30"), at("9999-12-31T23:59:59Z")},
			[]time.Time{time.Time{}, at("2026-11-27T01:02:03.123456789Z"), at("1969-12-31T23:59:59.999999Z"),
				at("2026-11-27T01:02:03.5+05:30"), at("9999-12-31T23:59:59Z")}, true},
		{"bytes as text", "text", byteaArray{[]byte(`{"a":1}`), nil}, []*string{str(`{"a":1}`), nil}, true},
		{"boolean", "boolean", boolArray{true, false}, []bool{true, false}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, ok := conn.TypeMap().PlanEncode(arrayOID[c.typ], pgtype.BinaryFormatCode, c.fast).(arrayPlan); !ok {
				t.Fatalf("%T is not encoded by arrayPlan", c.fast)
			}
			var same bool
			var n *int
			err := conn.QueryRow(ctx, "SELECT $1::"+c.typ+"[] IS NOT DISTINCT FROM $2::"+c.typ+"[], cardinality($1::"+c.typ+"[])",
				c.fast, c.plain).Scan(&same, &n)
			if err != nil {
				t.Fatal(err)
			}
			if !same {
				t.Fatalf("the server sees %v as another array than %v", c.fast, c.plain)
			}
			if (n != nil && *n > 0) != c.nonEmpty {
				t.Fatalf("cardinality %v", n)
			}
		})
	}
	t.Run("integer out of range", func(t *testing.T) {
		var n int
		err := conn.QueryRow(ctx, "SELECT cardinality($1::integer[])", intArray{math.MaxInt32 + 1}).Scan(&n)
		if err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Fatalf("err = %v, want out of range", err)
		}
	})
	t.Run("store connections", func(t *testing.T) {
		s, err := Open(ctx, pgtest.URL(t))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		c, err := s.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Release()
		if _, ok := c.Conn().TypeMap().PlanEncode(pgtype.TextArrayOID, pgtype.BinaryFormatCode, textArray{}).(arrayPlan); !ok {
			t.Fatal("the store's connections do not encode textArray themselves")
		}
	})
	t.Run("read back", func(t *testing.T) {
		var got []string
		if err := conn.QueryRow(ctx, "SELECT $1::text[]", textArray{"x", "y"}).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, ",") != "x,y" {
			t.Fatalf("got %q", got)
		}
	})
}
