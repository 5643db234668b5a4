package main

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

func TestFreeport(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"freeport"}, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatal(err)
	}
	if p, err := strconv.Atoi(strings.TrimSpace(out.String())); err != nil || p <= 0 || p > 65535 {
		t.Fatalf("freeport printed %q", out.String())
	}
}

func TestMisuse(t *testing.T) {
	noEnv := func(string) string { return "" }
	for _, args := range [][]string{nil, {"nope"}, {"seedlog"}, {"rebuild-profile"}} {
		var out bytes.Buffer
		if err := run(t.Context(), args, noEnv, &out, &out); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}
