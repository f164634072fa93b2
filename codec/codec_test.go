package codec_test

import (
	"testing"
	"time"

	"github.com/docket-run/docket/codec"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestDefaultEncodesProtoMessagesAsProtobuf(t *testing.T) {
	in := timestamppb.New(time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC))
	b, err := codec.Default.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := proto.Marshal(in)
	if string(b) != string(want) {
		t.Fatalf("not the protobuf wire format: %x", b)
	}
	var out *timestamppb.Timestamp // decoding into a pointer to a message pointer allocates it
	if err := codec.Default.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(in, out) {
		t.Fatalf("round trip: %v != %v", in, out)
	}
	direct := &wrapperspb.StringValue{}
	b, _ = codec.Default.Marshal(wrapperspb.String("hi"))
	if err := codec.Default.Unmarshal(b, direct); err != nil || direct.Value != "hi" {
		t.Fatalf("%v %v", direct, err)
	}
}

func TestDefaultFallsBackToJSON(t *testing.T) {
	type order struct{ ID string }
	b, err := codec.Default.Marshal(order{"o-1"})
	if err != nil || string(b) != `{"ID":"o-1"}` {
		t.Fatalf("%s %v", b, err)
	}
	var o order
	if err := codec.Default.Unmarshal(b, &o); err != nil || o.ID != "o-1" {
		t.Fatalf("%v %v", o, err)
	}
	if err := codec.Default.Unmarshal([]byte("{"), &o); err == nil {
		t.Fatal("corrupt JSON must fail")
	}
	var m *timestamppb.Timestamp
	if err := codec.Default.Unmarshal([]byte{0xff, 0xff}, &m); err == nil {
		t.Fatal("corrupt protobuf must fail")
	}
}
