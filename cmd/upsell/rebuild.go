package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/upsell-dev/upsell/projections"
)

func cmdRebuild(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("rebuild")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usageError{"rebuild takes at most one projection name"}
	}
	todo := projections.All()
	if fs.NArg() == 1 {
		p, err := projections.ByName(fs.Arg(0))
		if err != nil {
			return usageError{err.Error()}
		}
		todo = []projections.Projection{p}
	}
	pool, err := c.connectCurrent(ctx)
	if err != nil {
		return err
	}
	// The projections are rebuilt at once, each on its own connection:
	// each reads the log of its own stream type, and one after the other
	// they read the log's pages twice in a row, with PostgreSQL (one
	// backend per rebuild) the bottleneck of each. The output stays one
	// projection after the other: the first one's progress is shown as it
	// goes, the others' is kept and shown once those before are done. The
	// first error cancels the others.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var failed sync.Once
	var cause error // the first failure, not the cancellations it caused
	fail := func(err error) {
		failed.Do(func() { cause = err })
		cancel()
	}
	type running struct {
		out  *bytes.Buffer // nil: writes to stdout as it goes
		ok   bool
		done chan struct{}
	}
	runs := make([]*running, len(todo))
	for i, p := range todo {
		r := &running{done: make(chan struct{})}
		runs[i] = r
		w, tty := c.stdout, isTerminal(c.stdout)
		if i > 0 {
			r.out = new(bytes.Buffer)
			w, tty = r.out, false
		}
		bar := newProgressBar(w, p.Name(), tty, time.Now)
		go func() {
			defer close(r.done)
			if err := projections.Rebuild(ctx, pool, p, bar.update); err != nil {
				fail(err)
				return
			}
			bar.finish()
			r.ok = true
		}()
	}
	shown := true // every projection before this one is done and shown
	for _, r := range runs {
		<-r.done
		if !shown || !r.ok {
			shown = false
			continue
		}
		if r.out != nil {
			if _, err := c.stdout.Write(r.out.Bytes()); err != nil {
				fail(err)
				shown = false
			}
		}
	}
	return cause
}

// isTerminal reports whether w is a character device (a terminal), where
// a progress bar can redraw its line.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressBar shows a long job's progress: on a terminal one line redrawn
// in place, elsewhere (logs, CI) a plain line at most every few seconds.
type progressBar struct {
	w           io.Writer
	name        string
	tty         bool
	now         func() time.Time
	start       time.Time
	last        time.Time
	done, total int64
}

func newProgressBar(w io.Writer, name string, tty bool, now func() time.Time) *progressBar {
	t := now()
	return &progressBar{w: w, name: name, tty: tty, now: now, start: t}
}

func (b *progressBar) update(done, total int64) {
	b.done, b.total = done, total
	t := b.now()
	every := 5 * time.Second
	if b.tty {
		every = 100 * time.Millisecond
	}
	if done > 0 && done < total && t.Sub(b.last) < every {
		return
	}
	b.last = t
	b.draw(t)
}

func (b *progressBar) draw(t time.Time) {
	elapsed := t.Sub(b.start)
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(b.done) / s
	}
	left := "--:--"
	if rate > 0 && b.total >= b.done {
		left = clock(time.Duration(float64(b.total-b.done) / rate * float64(time.Second)))
	}
	pct := 100.0
	if b.total > 0 {
		pct = 100 * float64(b.done) / float64(b.total)
	}
	stats := fmt.Sprintf("%d/%d events  %.0f events/s  %s left", b.done, b.total, rate, left)
	if !b.tty {
		fmt.Fprintf(b.w, "rebuild %s: %5.1f%%  %s\n", b.name, pct, stats)
		return
	}
	const width = 30
	filled := int(pct / 100 * width)
	fmt.Fprintf(b.w, "\r\033[Krebuild %s [%s%s] %5.1f%%  %s", b.name,
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), pct, stats)
}

func (b *progressBar) finish() {
	t := b.now()
	if b.tty {
		b.draw(t)
		fmt.Fprintln(b.w)
	}
	fmt.Fprintf(b.w, "rebuild %s: done, %d events in %s; the new table is live\n", b.name, b.done, clock(t.Sub(b.start)))
	if b.done < b.total {
		// An asynchronous projection reads only below the oldest open
		// transaction; its projector applies the rest when that ends.
		fmt.Fprintf(b.w, "rebuild %s: %d events wait behind a transaction still open; the projector applies them when it ends\n",
			b.name, b.total-b.done)
	}
}

// clock formats a duration as m:ss.
func clock(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
