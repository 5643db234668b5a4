package main

// Semantic version comparison as golang.org/x/mod/semver does it (which
// govulncheck and golang.org/x/vulndb use), for versions without their
// "v" prefix as OSV files write them ("1.26.9", "0.60.0",
// "0.58.1-0.20261009181718-2f1f834330b2"). A copy, not an import: this
// tool uses the standard library only.

type version struct {
	major, minor, patch string
	prerelease          string // with its leading '-', or ""
}

// semverLess reports whether v < w. An invalid version is less than a
// valid one, and all invalid versions are equal, as with x/mod/semver.
func semverLess(v, w string) bool {
	return semverCompare(v, w) < 0
}

func semverCompare(v, w string) int {
	pv, okv := parseVersion(v)
	pw, okw := parseVersion(w)
	switch {
	case !okv && !okw:
		return 0
	case !okv:
		return -1
	case !okw:
		return +1
	}
	if c := compareNum(pv.major, pw.major); c != 0 {
		return c
	}
	if c := compareNum(pv.minor, pw.minor); c != 0 {
		return c
	}
	if c := compareNum(pv.patch, pw.patch); c != 0 {
		return c
	}
	return comparePrerelease(pv.prerelease, pw.prerelease)
}

// parseVersion parses MAJOR[.MINOR[.PATCH[-PRERELEASE][+BUILD]]], an
// optional "v" first; missing parts are 0 (as x/mod/semver's "v1", "v1.2").
func parseVersion(s string) (p version, ok bool) {
	if len(s) > 0 && s[0] == 'v' {
		s = s[1:]
	}
	if p.major, s, ok = parseNum(s); !ok {
		return p, false
	}
	if s == "" {
		p.minor, p.patch = "0", "0"
		return p, true
	}
	if s[0] != '.' {
		return p, false
	}
	if p.minor, s, ok = parseNum(s[1:]); !ok {
		return p, false
	}
	if s == "" {
		p.patch = "0"
		return p, true
	}
	if s[0] != '.' {
		return p, false
	}
	if p.patch, s, ok = parseNum(s[1:]); !ok {
		return p, false
	}
	if s != "" && s[0] == '-' {
		i := 1
		for i < len(s) && s[i] != '+' {
			i++
		}
		if !validIdents(s[1:i], true) {
			return p, false
		}
		p.prerelease, s = s[:i], s[i:]
	}
	if s != "" && s[0] == '+' {
		if !validIdents(s[1:], false) {
			return p, false
		}
		s = ""
	}
	return p, s == ""
}

// parseNum takes a decimal number without leading zeros off s.
func parseNum(s string) (num, rest string, ok bool) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i == 0 || (s[0] == '0' && i > 1) {
		return "", s, false
	}
	return s[:i], s[i:], true
}

// validIdents checks dot-separated identifiers of [0-9A-Za-z-], none
// empty; numeric ones of a prerelease have no leading zeros.
func validIdents(s string, prerelease bool) bool {
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			c := s[i]
			if !isDigit(c) && !('a' <= c && c <= 'z') && !('A' <= c && c <= 'Z') && c != '-' {
				return false
			}
			continue
		}
		id := s[start:i]
		if id == "" || (prerelease && isNumeric(id) && len(id) > 1 && id[0] == '0') {
			return false
		}
		start = i + 1
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isNumeric(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// compareNum compares decimal numbers without leading zeros.
func compareNum(x, y string) int {
	switch {
	case len(x) != len(y):
		if len(x) < len(y) {
			return -1
		}
		return +1
	case x < y:
		return -1
	case x > y:
		return +1
	}
	return 0
}

// comparePrerelease compares "-a.b.c" suffixes by the semver rules: none
// ranks above any; numeric identifiers compare as numbers and below
// alphanumeric ones; a longer list wins when the shorter is its prefix.
func comparePrerelease(x, y string) int {
	if x == y {
		return 0
	}
	if x == "" {
		return +1
	}
	if y == "" {
		return -1
	}
	for x != "" && y != "" {
		var dx, dy string
		dx, x = nextIdent(x[1:]) // skip the '-' or '.'
		dy, y = nextIdent(y[1:])
		if dx == dy {
			continue
		}
		nx, ny := isNumeric(dx), isNumeric(dy)
		switch {
		case nx && ny:
			return compareNum(dx, dy)
		case nx:
			return -1
		case ny:
			return +1
		case dx < dy:
			return -1
		default:
			return +1
		}
	}
	if x == "" {
		return -1
	}
	return +1
}

func nextIdent(s string) (ident, rest string) {
	i := 0
	for i < len(s) && s[i] != '.' {
		i++
	}
	return s[:i], s[i:]
}
