package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The vulnerability database layout govulncheck v1.9.0 reads from a
// file:// URL (golang.org/x/vuln/internal/client, the v1 schema of
// https://go.dev/security/vuln/database):
//
//	index/db.json       {"modified": TIME}
//	index/modules.json  [{"path": MODULE, "vulns": [{"id", "modified", "fixed"}]}]
//	ID/<ID>.json        the OSV entry
//
// modules.json is what golang.org/x/vulndb's cmd/indexdb writes (its
// internal/database): modules sorted by path, one item per "affected"
// block of an entry (so an ID can repeat), sorted by ID. "fixed" lets
// govulncheck skip an entry without reading it (when the version in use
// is not below it): it must never be too low, hence the exact copy of
// vulndb's rule in latestFixed. index/vulns.json and the .gz files that
// indexdb also writes are for HTTP servers; govulncheck does not read
// them from a directory.

// osvEntry holds the fields of an OSV file the index needs.
type osvEntry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Affected []struct {
		Package struct {
			Name string `json:"name"`
		} `json:"package"`
		Ranges []osvRange `json:"ranges"`
	} `json:"affected"`
}

type osvRange struct {
	Type   string `json:"type"`
	Events []struct {
		Introduced string `json:"introduced"`
		Fixed      string `json:"fixed"`
	} `json:"events"`
}

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Fixed    string    `json:"fixed,omitempty"`
}

type moduleMeta struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

// latestFixed is golang.org/x/vulndb/internal/osvutils.LatestFixed (the
// same as govulncheck's semver.NonSupersededFix): the greatest fixed
// version of the SEMVER ranges, or "" when a range (re)introduces the
// vulnerability after it.
func latestFixed(ranges []osvRange) string {
	var latest string
	for _, r := range ranges {
		if r.Type != "SEMVER" {
			continue
		}
		for _, e := range r.Events {
			if e.Fixed != "" && semverLess(latest, e.Fixed) {
				latest = e.Fixed
			}
		}
		for _, e := range r.Events {
			if e.Introduced != "" && e.Introduced != "0" && semverLess(latest, e.Introduced) {
				latest = ""
				break
			}
		}
	}
	return latest
}

// buildIndex writes the database of the OSV files <ID>.json in osvDir to
// outDir (which must not exist) and returns the number of entries. The
// database's modified time is the latest of modified and the entries'.
func buildIndex(osvDir, outDir string, modified time.Time) (int, error) {
	names, err := filepath.Glob(filepath.Join(osvDir, "*.json"))
	if err != nil {
		return 0, err
	}
	if len(names) == 0 {
		return 0, fmt.Errorf("no OSV files (*.json) in %s", osvDir)
	}
	if _, err := os.Stat(outDir); err == nil {
		return 0, fmt.Errorf("%s already exists", outDir)
	}
	idDir := filepath.Join(outDir, "ID")
	indexDir := filepath.Join(outDir, "index")
	for _, d := range []string{idDir, indexDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, err
		}
	}

	modules := map[string]*moduleMeta{}
	seen := map[string]bool{}
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			return 0, err
		}
		var e osvEntry
		if err := json.Unmarshal(b, &e); err != nil {
			return 0, fmt.Errorf("%s: %v", name, err)
		}
		if e.ID == "" || filepath.Base(name) != e.ID+".json" {
			return 0, fmt.Errorf("%s: the file of entry %q must be named <id>.json", name, e.ID)
		}
		if seen[e.ID] {
			return 0, fmt.Errorf("%s: entry %s appears twice", name, e.ID)
		}
		seen[e.ID] = true
		if e.Modified.After(modified) {
			modified = e.Modified
		}
		for _, a := range e.Affected {
			m := modules[a.Package.Name]
			if m == nil {
				m = &moduleMeta{Path: a.Package.Name, Vulns: []moduleVuln{}}
				modules[a.Package.Name] = m
			}
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified, Fixed: latestFixed(a.Ranges)})
		}
		// The entry as it is: govulncheck decodes it whole.
		if err := os.WriteFile(filepath.Join(idDir, e.ID+".json"), b, 0o644); err != nil {
			return 0, err
		}
	}

	list := make([]*moduleMeta, 0, len(modules))
	for _, m := range modules {
		sort.SliceStable(m.Vulns, func(i, j int) bool { return m.Vulns[i].ID < m.Vulns[j].ID })
		list = append(list, m)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Path < list[j].Path })
	if err := writeJSON(filepath.Join(indexDir, "modules.json"), list); err != nil {
		return 0, err
	}
	db := struct {
		Modified time.Time `json:"modified"`
	}{modified.UTC()}
	if err := writeJSON(filepath.Join(indexDir, "db.json"), db); err != nil {
		return 0, err
	}
	return len(seen), nil
}

// writeJSON writes v as json.Marshal does, as indexdb does.
func writeJSON(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(name, b, 0o644)
}

// parseTime accepts RFC 3339 ("2026-11-05T23:49:57Z") or a date.
func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Parse(time.DateOnly, s)
}
