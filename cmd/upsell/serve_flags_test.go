package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// An idempotency time to live that would purge keys before a client's
// retries could use them is refused before anything starts.
func TestServeRefusesAShortIdempotencyTTL(t *testing.T) {
	t.Parallel()
	for _, ttl := range []string{"0", "-1h", "30s"} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"serve", "--idempotency-ttl", ttl}, func(string) string { return "" }, &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), "--idempotency-ttl") {
			t.Errorf("serve --idempotency-ttl %s: exit %d, stderr %q; want 2 naming the flag", ttl, code, errOut.String())
		}
	}
}
