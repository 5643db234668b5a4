package main

import (
	"log/slog"
	"net/http"
	"time"
)

// serverTimeouts bound what one client may hold of the API server.
type serverTimeouts struct {
	// ReadHeader bounds reading a request's headers: a client that sends
	// them slowly (slowloris) is cut off then.
	ReadHeader time.Duration
	// Read bounds reading a whole request, its body included.
	Read time.Duration
	// Write bounds a request from the end of its headers to the end of the
	// answer.
	Write time.Duration
	// Idle bounds how long a kept-alive connection waits for its next
	// request.
	Idle time.Duration
}

// apiTimeouts are serve's: generous for a request of the API (bodies are
// at most 64 KiB, and --request-timeout bounds the work), short for a
// client that sends nothing.
var apiTimeouts = serverTimeouts{
	ReadHeader: 10 * time.Second,
	Read:       30 * time.Second,
	Write:      60 * time.Second,
	Idle:       2 * time.Minute,
}

// newAPIServer is the http.Server that `upsell serve` runs the API on: h
// within the timeouts, with the server's own complaints (a failed TLS
// handshake, a panic's stack, ...) logged to log as warnings rather than
// printed to the process's standard error past the log.
func newAPIServer(h http.Handler, t serverTimeouts, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
