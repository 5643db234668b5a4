// Package handlers is the HTTP API of API.md on the standard library's
// net/http, JSON in and out, every error an RFC 9457 problem.
//
// The mapping from errors to HTTP statuses lives here and only here
// (StatusFor), so that the domain's stable codes reach the portal unchanged.
//
// This package must never be imported by the domain, the event store or the
// application layer.
package handlers
