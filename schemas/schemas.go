// Package schemas holds the JSON Schemas (draft 2020-12) of the events:
// the contract with downstream billing and auditors. There is one file per
// event type and schema version, events/<EventType>.v<N>.json, whose $id is
// ID(EventType, N). A new schema version is only ever additive, and the
// domain upcasts the older versions to it on read (domain.Upcast), so a
// consumer receives every event at its current version; the files of older
// versions stay, because the log keeps the events written with them.
//
// docs/events.md describes every event for people.
package schemas

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// FS holds the schema files, events/<EventType>.v<N>.json.
//
//go:embed events/*.json
var FS embed.FS

// Name names one schema: an event type at a schema version.
type Name struct {
	EventType string
	Version   int
}

// String gives "<EventType>.v<N>", the schema file's name without ".json".
func (n Name) String() string { return n.EventType + ".v" + strconv.Itoa(n.Version) }

// ID is the schema's $id, ID(n.EventType, n.Version).
func (n Name) ID() string { return ID(n.EventType, n.Version) }

// Path is the schema file's path in FS.
func (n Name) Path() string { return "events/" + n.String() + ".json" }

// ID is the $id of the schema of eventType at version:
// "urn:upsell:schema:<EventType>:v<N>". Messages on the bus carry it as
// ce_dataschema; it is stable.
func ID(eventType string, version int) string {
	return "urn:upsell:schema:" + eventType + ":v" + strconv.Itoa(version)
}

var fileName = regexp.MustCompile(`^([A-Z][A-Za-z0-9]*)\.v([1-9][0-9]*)\.json$`)

// Names lists the schemas in FS, by event type, then version.
func Names() []Name {
	entries, err := fs.ReadDir(FS, "events")
	if err != nil {
		panic(fmt.Sprintf("schemas: the embedded events directory: %v", err)) // embedded at build time
	}
	var out []Name
	for _, e := range entries {
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			continue // the tests refuse such a file
		}
		v, err := strconv.Atoi(m[2])
		if err != nil {
			continue
		}
		out = append(out, Name{m[1], v})
	}
	slices.SortFunc(out, func(a, b Name) int {
		if a.EventType != b.EventType {
			if a.EventType < b.EventType {
				return -1
			}
			return 1
		}
		return a.Version - b.Version
	})
	return out
}

// Load returns the schema of eventType at version; an unknown one is an
// error that wraps fs.ErrNotExist.
func Load(eventType string, version int) ([]byte, error) {
	n := Name{eventType, version}
	if !fileName.MatchString(n.String() + ".json") {
		return nil, fmt.Errorf("schemas: no schema for %s version %d: %w", eventType, version, fs.ErrNotExist)
	}
	b, err := FS.ReadFile(n.Path())
	if err != nil {
		return nil, fmt.Errorf("schemas: no schema for %s version %d: %w", eventType, version, err)
	}
	return b, nil
}

var compiled struct {
	sync.Mutex
	compiler *jsonschema.Compiler
	schemas  map[Name]*jsonschema.Schema
}

// Compile returns the compiled schema of eventType at version, formats
// (uuid, date-time) asserted. Compiled schemas are kept and safe to share.
func Compile(eventType string, version int) (*jsonschema.Schema, error) {
	n := Name{eventType, version}
	compiled.Lock()
	defer compiled.Unlock()
	if s, ok := compiled.schemas[n]; ok {
		return s, nil
	}
	if _, err := Load(eventType, version); err != nil {
		return nil, err
	}
	if compiled.compiler == nil {
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		c.AssertFormat()
		for _, each := range Names() {
			raw, err := FS.ReadFile(each.Path())
			if err != nil {
				return nil, fmt.Errorf("schemas: %w", err)
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
			if err != nil {
				return nil, fmt.Errorf("schemas: %s is not JSON: %w", each.Path(), err)
			}
			if err := c.AddResource(each.ID(), doc); err != nil {
				return nil, fmt.Errorf("schemas: %s: %w", each.Path(), err)
			}
		}
		compiled.compiler, compiled.schemas = c, map[Name]*jsonschema.Schema{}
	}
	s, err := compiled.compiler.Compile(n.ID())
	if err != nil {
		return nil, fmt.Errorf("schemas: compile %s: %w", n.Path(), err)
	}
	compiled.schemas[n] = s
	return s, nil
}

// Validate checks an event's data against the schema of its type and
// schema version. A mismatch is an error that wraps a
// *jsonschema.ValidationError, which says where and why.
func Validate(eventType string, version int, data []byte) error {
	s, err := Compile(eventType, version)
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("schemas: %s v%d data is not JSON: %w", eventType, version, err)
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("schemas: %s v%d data does not match %s: %w", eventType, version, ID(eventType, version), err)
	}
	return nil
}
