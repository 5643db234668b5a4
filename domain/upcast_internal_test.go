package domain

import "testing"

// Every upcaster belongs to a known event type and leads from a version
// below its current one: an upcaster from the current version or beyond
// would be dead code that hides a missing schema bump.
func TestUpcasterRegistry(t *testing.T) {
	t.Parallel()
	for key := range upcasters {
		current, ok := CurrentSchemaVersion(key.eventType)
		if !ok {
			t.Errorf("an upcaster for the unknown event type %q", key.eventType)
			continue
		}
		if key.from < 1 || key.from >= current {
			t.Errorf("%s has an upcaster from version %d, outside 1..%d", key.eventType, key.from, current-1)
		}
	}
}
