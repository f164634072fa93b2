package codec

import (
	"fmt"
	"reflect"

	"google.golang.org/protobuf/proto"
)

// Default encodes protocol buffer messages in their binary wire format and
// every other value as JSON. It is the codec engines use unless told
// otherwise, so steps can pass generated proto messages without ceremony.
var Default Codec = defaultCodec{}

type defaultCodec struct{}

func (defaultCodec) Name() string { return "default" }

func (defaultCodec) Marshal(v any) ([]byte, error) {
	if m, ok := v.(proto.Message); ok {
		b, err := proto.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("codec proto: encode %T: %w", v, err)
		}
		return b, nil
	}
	return JSON.Marshal(v)
}

var messageType = reflect.TypeFor[proto.Message]()

// Unmarshal decodes into v, a pointer. When v points to a message pointer
// (the usual shape: a *T for a T that is *pb.Order), a new message is
// allocated for it.
func (defaultCodec) Unmarshal(data []byte, v any) error {
	if m, ok := v.(proto.Message); ok {
		return protoUnmarshal(data, m)
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		t := rv.Elem().Type()
		if t.Kind() == reflect.Pointer && t.Implements(messageType) {
			m := reflect.New(t.Elem())
			if err := protoUnmarshal(data, m.Interface().(proto.Message)); err != nil {
				return err
			}
			rv.Elem().Set(m)
			return nil
		}
	}
	return JSON.Unmarshal(data, v)
}

func protoUnmarshal(data []byte, m proto.Message) error {
	if err := proto.Unmarshal(data, m); err != nil {
		return fmt.Errorf("codec proto: decode into %T: %w", m, err)
	}
	return nil
}
