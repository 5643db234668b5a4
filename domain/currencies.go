package domain

import (
	"maps"
	"slices"
)

// Currencies returns the ISO 4217 codes of the currencies Money knows,
// sorted: the closed set an event's currency field takes.
func Currencies() []string {
	return slices.Sorted(maps.Keys(minorUnits))
}
