// Command vulncheck is the helper of scripts/vulncheck.sh (standard
// library only, so that it builds offline from this module).
//
//	vulncheck index -osv DIR -out DIR -modified TIME
//
// builds, from a folder of OSV files (golang.org/x/vulndb's data/osv/),
// the vulnerability database govulncheck reads from a file:// URL, in a
// second instead of the minutes of golang.org/x/vulndb's cmd/indexdb.
//
//	vulncheck gate -accepted LIST [-today YYYY-MM-DD] [-partial] [JSON]
//
// judges the output of `govulncheck -json` (the file JSON, else stdin)
// against LIST: each reachable vulnerability not in it fails, as does an
// entry past its review-by date; each accepted one still found is printed
// as a WARNING with its reason, and each entry no longer found as a
// WARNING to remove it. Exit status 0 pass, 1 fail, 2 could not judge.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "index":
		os.Exit(indexCmd(args))
	case "gate":
		os.Exit(gateCmd(args))
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: vulncheck index -osv DIR -out DIR -modified TIME\n       vulncheck gate -accepted LIST [-today YYYY-MM-DD] [-partial] [JSON]")
	os.Exit(2)
}

func indexCmd(args []string) int {
	fs := flag.NewFlagSet("index", flag.ExitOnError)
	osvDir := fs.String("osv", "", "folder of OSV files <ID>.json")
	out := fs.String("out", "", "database folder to create")
	modified := fs.String("modified", "", "the database's modified time (RFC 3339), at least")
	_ = fs.Parse(args)
	if *osvDir == "" || *out == "" || *modified == "" || fs.NArg() > 0 {
		usage()
	}
	t, err := parseTime(*modified)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vulncheck index: -modified: %v\n", err)
		return 2
	}
	n, err := buildIndex(*osvDir, *out, t)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vulncheck index: %v\n", err)
		return 2
	}
	fmt.Printf("%d entries\n", n)
	return 0
}

func gateCmd(args []string) int {
	fs := flag.NewFlagSet("gate", flag.ExitOnError)
	list := fs.String("accepted", "", "the accepted list")
	todayFlag := fs.String("today", "", "judge as of this date (YYYY-MM-DD; default: today)")
	partial := fs.Bool("partial", false, "only some packages were checked: accepted entries not found may be reachable from others")
	_ = fs.Parse(args)
	if *list == "" || fs.NArg() > 1 {
		usage()
	}
	today := time.Now()
	if *todayFlag != "" {
		t, err := time.Parse(time.DateOnly, *todayFlag)
		if err != nil {
			fmt.Fprintf(os.Stderr, "vulncheck gate: -today: %v\n", err)
			return 2
		}
		today = t
	}
	var in io.Reader = os.Stdin
	if fs.NArg() == 1 {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(os.Stderr, "vulncheck gate: %v\n", err)
			return 2
		}
		defer f.Close()
		in = f
	}
	return runGate(*list, in, os.Stdout, today, *partial)
}
