// Package codec turns Docket values into bytes and back. Every value Docket
// stores or caches passes through a Codec; JSON is the default.
package codec

import (
	"encoding/json"
	"fmt"
)

// Codec encodes and decodes values. Implementations must be safe for
// concurrent use.
type Codec interface {
	// Name identifies the codec in stored data, so a reader knows how to decode.
	Name() string
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the default codec, built on encoding/json.
var JSON Codec = jsonCodec{}

type jsonCodec struct{}

func (jsonCodec) Name() string { return "json" }

func (jsonCodec) Marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("codec json: encode %T: %w", v, err)
	}
	return b, nil
}

func (jsonCodec) Unmarshal(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("codec json: decode into %T: %w", v, err)
	}
	return nil
}
