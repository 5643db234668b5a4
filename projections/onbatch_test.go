package projections_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/migrations"
)

// commitHolder is a TCP proxy in front of PostgreSQL that forwards both ways
// but, once armed, holds back the server's answer to the first COMMIT a
// client sends: the server has committed, the client does not know yet.
type commitHolder struct {
	ln      net.Listener
	target  string
	armed   atomic.Bool
	held    chan struct{} // closed when an answer is being held
	release chan struct{} // close to let it through
	once    sync.Once
	wg      sync.WaitGroup
}

func startCommitHolder(t *testing.T, target string) *commitHolder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &commitHolder{ln: ln, target: target, held: make(chan struct{}), release: make(chan struct{})}
	h.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			var hold atomic.Bool
			h.wg.Go(func() { h.clientToServer(c, s, &hold) })
			h.wg.Go(func() { h.serverToClient(s, c, &hold) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		h.letGo()
		h.wg.Wait()
	})
	return h
}

func (h *commitHolder) letGo() {
	select {
	case <-h.release:
	default:
		close(h.release)
	}
}

// clientToServer forwards the startup packet(s), then one message at a time,
// and sets hold just before forwarding the COMMIT it is armed for.
func (h *commitHolder) clientToServer(c, s net.Conn, hold *atomic.Bool) {
	defer func() { _ = s.Close(); _ = c.Close() }()
	for {
		// Startup packets: int32 length, int32 code, ... SSL and GSS
		// encryption requests are answered with one byte and followed by
		// the real startup packet.
		var n [4]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(n[:])-4)
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		if _, err := s.Write(append(n[:], body...)); err != nil {
			return
		}
		if code := binary.BigEndian.Uint32(body[:4]); code != 80877103 && code != 80877104 {
			break
		}
	}
	for {
		var head [5]byte
		if _, err := io.ReadFull(c, head[:]); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(head[1:])-4)
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		if head[0] == 'Q' && bytes.EqualFold(bytes.TrimRight(body, "\x00"), []byte("commit")) && h.armed.CompareAndSwap(true, false) {
			hold.Store(true)
		}
		if _, err := s.Write(append(head[:], body...)); err != nil {
			return
		}
	}
}

func (h *commitHolder) serverToClient(s, c net.Conn, hold *atomic.Bool) {
	defer func() { _ = c.Close(); _ = s.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			if hold.Load() {
				h.once.Do(func() { close(h.held) })
				<-h.release
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// OnBatch is told of every committed batch: a runner stopped while the
// answer to its COMMIT is on its way has still applied the batch (the
// checkpoint shows it), and its OnBatch must hear of it, or the
// projected-events metric falls short of the checkpoint.
func TestOnBatchIsToldOfABatchCommittedAsTheRunnerStops(t *testing.T) {
	t.Parallel()
	dbURL := testdb.Empty(t)
	direct, err := pgxpool.New(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(direct.Close)
	if _, err := migrations.Apply(t.Context(), direct); err != nil {
		t.Fatal(err)
	}
	importFixture(t, direct)
	// Every event readable, so the runner's first batch holds them all.
	waitNothingHeldBack(t, direct)

	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	h := startCommitHolder(t, u.Host)
	u.Host = h.ln.Addr().String()
	proxied, err := pgxpool.New(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxied.Close)

	h.armed.Store(true)
	r := startRunner(t, proxied, 0)
	select {
	case <-h.held:
	case <-time.After(waitLimit):
		t.Fatal("the runner sent no COMMIT")
	}
	// The server has committed the batch: the checkpoint is at the newest
	// event.
	waitCaughtUp(t, direct)
	r.cancel() // while the COMMIT's answer is held
	h.letGo()
	r.stop()
	r.noErrors()
	if got, want := r.applied.Load(), eventCount(t, direct); got != want {
		t.Errorf("the checkpoint shows the runner applied all %d events; OnBatch was told of %d", want, got)
	}
}
