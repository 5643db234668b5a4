package domain

import "time"

// Clock tells the time. The domain never calls time.Now: the application
// layer injects a Clock and passes its readings to commands.
type Clock interface {
	Now() time.Time
}

// SystemClock reads the machine's clock, in UTC.
type SystemClock struct{}

// Now returns the current time in UTC.
func (SystemClock) Now() time.Time { return time.Now().UTC() }

// FixedClock always returns the same instant; tests use it.
type FixedClock struct{ T time.Time }

// Now returns the fixed instant.
func (c FixedClock) Now() time.Time { return c.T }
