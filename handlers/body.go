package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
)

// MaxBody is the largest request body accepted.
const MaxBody = 64 << 10

// readBody reads the whole body, refusing more than MaxBody bytes and a
// body that says it is not JSON.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, &RequestError{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
			Detail: fmt.Sprintf("the body is larger than %d bytes", MaxBody)}
	}
	if err != nil {
		return nil, badRequest("malformed_json", "", "reading the body failed: %v", err)
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && len(bytes.TrimSpace(body)) > 0 {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, &RequestError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type",
				Detail: fmt.Sprintf("the body must be JSON (Content-Type: application/json), not %q", ct)}
		}
	}
	return body, nil
}

// decodeStrict reads one JSON object into dst, refusing unknown fields,
// wrong types and anything after the object. An empty body is an empty
// object.
func decodeStrict(body []byte, dst any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil {
		if _, more := dec.Token(); more != io.EOF {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	if err == nil {
		return exactFieldNames(body, dst)
	}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &typeErr):
		return badRequest("invalid_field", typeErr.Field, "must be a JSON %s, not %s", typeErr.Type.Kind(), typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return badRequest("unknown_field", field, "unknown field %q", field)
	case errors.As(err, &syntaxErr):
		return badRequest("malformed_json", "", "the body is not valid JSON: %v (at byte %d)", err, syntaxErr.Offset)
	default:
		return badRequest("malformed_json", "", "the body is not a valid JSON object: %v", err)
	}
}

// exactFieldNames refuses a field whose name matches one of dst's only when
// case is ignored (encoding/json would take "Total_Seats" for
// "total_seats"; the contract names fields exactly), and a field given
// twice (encoding/json would keep the last).
func exactFieldNames(body []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil // not an object (null): nothing to name
	}
	t := reflect.TypeOf(dst)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	known := map[string]bool{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		known[name] = true
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return badRequest("malformed_json", "", "the body is not valid JSON: %v", err)
		}
		name, _ := tok.(string)
		switch {
		case !known[name]:
			return badRequest("unknown_field", name, "unknown field %q", name)
		case seen[name]:
			return badRequest("invalid_field", name, "field %q is given twice", name)
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return badRequest("malformed_json", "", "the body is not valid JSON: %v", err)
		}
	}
	return nil
}

// canonicalJSON re-encodes a valid JSON body with sorted keys and no
// spaces, so that the same request written differently is the same
// request; numbers keep their text. Anything else is returned as it is.
func canonicalJSON(body []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if len(bytes.TrimSpace(body)) == 0 {
		return []byte("{}") // an empty body is read as {}
	}
	if dec.Decode(&v) != nil {
		return body
	}
	if v == nil {
		return []byte("{}") // and so is null
	}
	out, err := json.Marshal(v)
	if err != nil {
		return body
	}
	return out
}

// required refuses a missing field.
func required(field string, present bool) error {
	if !present {
		return badRequest("missing_field", field, "%s is required", field)
	}
	return nil
}
