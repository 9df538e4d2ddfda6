package stepline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	pb "github.com/stepline/stepline/sdks/go/gen/stepline/v1"
)

var (
	errCtxCanceled = context.Canceled
	errCtxDeadline = context.DeadlineExceeded
)

// SerializationError: a value cannot be encoded as JSON, or a payload decoded into the
// type asked for. Recorded as "stepline.SerializationError".
type SerializationError struct {
	What string
	Err  error
}

func (e *SerializationError) Error() string { return e.What + ": " + e.Err.Error() }

// Unwrap gives the JSON error.
func (e *SerializationError) Unwrap() error { return e.Err }

// ErrorType implements Typed.
func (e *SerializationError) ErrorType() string { return SerializationErrorType }

// encodeJSON is compact JSON without HTML escaping (as the Python SDK writes it).
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// encode makes a JSON payload of v, within maxBytes when that is known (non-zero).
func encode(v any, what string, maxBytes uint64) (*pb.Payload, error) {
	data, err := encodeJSON(v)
	if err != nil {
		return nil, &SerializationError{What: what + " cannot be encoded as JSON", Err: err}
	}
	if maxBytes > 0 && uint64(len(data)) > maxBytes {
		return nil, &SerializationError{What: what, Err: fmt.Errorf(
			"%d bytes as JSON; the coordinator accepts at most %d", len(data), maxBytes)}
	}
	return &pb.Payload{Data: data, Encoding: "json"}, nil
}

// decodeInto decodes a payload into out (a pointer). An empty payload leaves out as is;
// "raw" payloads decode only into *[]byte.
func decodeInto(p *pb.Payload, out any, what string) error {
	if p == nil || len(p.GetData()) == 0 {
		return nil
	}
	switch p.GetEncoding() {
	case "", "json":
	case "raw":
		if b, ok := out.(*[]byte); ok {
			*b = append([]byte(nil), p.GetData()...)
			return nil
		}
		return &SerializationError{What: what, Err: fmt.Errorf("a raw payload decodes only into []byte")}
	default:
		return &SerializationError{What: what, Err: fmt.Errorf("unknown encoding %q", p.GetEncoding())}
	}
	if err := json.Unmarshal(p.GetData(), out); err != nil {
		return &SerializationError{What: what + " cannot be decoded", Err: err}
	}
	return nil
}

// Workflow inputs are {"args": [...], "kwargs": {...}} (as the Python SDK writes them).
type input struct {
	Args   []json.RawMessage          `json:"args"`
	Kwargs map[string]json.RawMessage `json:"kwargs"`
}

// encodeArgs makes a workflow input of positional arguments.
func encodeArgs(args []any, what string, maxBytes uint64) (*pb.Payload, error) {
	if args == nil {
		args = []any{}
	}
	return encode(map[string]any{"args": args, "kwargs": map[string]any{}}, what, maxBytes)
}

// decodeInput decodes a workflow input into out: the one positional argument when there
// is one; all of them (as a JSON array) when there are several; the keyword arguments
// (as a JSON object) when there are none but those; nothing (out stays zero) otherwise.
// A bare JSON array counts as the positional arguments, null as none.
func decodeInput(p *pb.Payload, out any) error {
	const what = "the workflow input"
	if p == nil || len(p.GetData()) == 0 {
		return nil
	}
	var raw json.RawMessage
	if err := decodeInto(p, &raw, what); err != nil {
		return err
	}
	trimmed := bytes.TrimSpace(raw)
	var in input
	switch {
	case bytes.Equal(trimmed, []byte("null")):
		return nil
	case len(trimmed) > 0 && trimmed[0] == '[':
		if err := json.Unmarshal(trimmed, &in.Args); err != nil {
			return &SerializationError{What: what, Err: err}
		}
	default:
		if err := json.Unmarshal(trimmed, &in); err != nil {
			return &SerializationError{What: what + ` must be {"args": [...], "kwargs": {...}}`, Err: err}
		}
	}
	var chosen []byte
	switch {
	case len(in.Args) == 1:
		chosen = in.Args[0]
	case len(in.Args) > 1:
		chosen, _ = json.Marshal(in.Args)
	case len(in.Kwargs) > 0:
		chosen, _ = json.Marshal(in.Kwargs)
	default:
		return nil
	}
	if err := json.Unmarshal(chosen, out); err != nil {
		return &SerializationError{What: what + " cannot be decoded", Err: err}
	}
	return nil
}
