package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/internal/testdb"
	"github.com/upsell-dev/upsell/relay"
)

// relayWait bounds every wait for the relay or a consumer: the log and the
// SQL topic are read only below the oldest transaction open anywhere on
// the server, which other tests' transactions hold back now and then.
const relayWait = 60 * time.Second

// envOf is an environment with DATABASE_URL and the given variables.
func envOf(url string, kv ...string) env {
	vars := map[string]string{"DATABASE_URL": url}
	for i := 0; i+1 < len(kv); i += 2 {
		vars[kv[i]] = kv[i+1]
	}
	return func(k string) string { return vars[k] }
}

// storyDB is a new database with the fixture imported and the demo story
// told (the Contoso order submitted), and a pool on it.
func storyDB(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	url := testdb.Empty(t)
	for _, args := range [][]string{{"migrate"}, {"import", "../../fixtures/import-example.json"}, {"demo"}} {
		if code, out, errOut := upsell(t, url, args...); code != 0 {
			t.Fatalf("%v: code %d\n%s\n%s", args, code, out, errOut)
		}
	}
	return url, openPool(t, url)
}

func openPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close) // before testdb drops the database
	return pool
}

// background is a command run in the background with its own context.
type background struct {
	t              *testing.T
	args           []string
	stdout, stderr *syncBuffer
	cancel         context.CancelFunc
	exit           chan int
	code           *int
}

// startCommand runs `upsell args...` in the background until stop or the
// end of the test.
func startCommand(t *testing.T, getenv env, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{t: t, args: args, stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, exit: make(chan int, 1)}
	go func() { b.exit <- run(ctx, args, getenv, b.stdout, b.stderr) }()
	t.Cleanup(func() { b.stop() })
	return b
}

// stop cancels the command's context and returns its exit code.
func (b *background) stop() int {
	b.t.Helper()
	b.cancel()
	if b.code != nil {
		return *b.code
	}
	select {
	case code := <-b.exit:
		b.code = &code
		return code
	case <-time.After(relayWait):
		b.t.Fatalf("upsell %s did not return within %s of its context ending; stderr:\n%s", strings.Join(b.args, " "), relayWait, b.stderr.String())
		return -1
	}
}

// waitRelayed waits until the relay of tr has published every committed
// event of the database.
func waitRelayed(t *testing.T, pool *pgxpool.Pool, tr relay.Transport, logs ...*syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(relayWait)
	for {
		lag, err := relay.Lag(context.Background(), pool, tr)
		if err != nil {
			t.Fatal(err)
		}
		if lag.Events == 0 {
			return
		}
		if time.Now().After(deadline) {
			var log string
			for _, l := range logs {
				log += l.String()
			}
			t.Fatalf("the relay %s is still %d events behind after %s; log:\n%s", tr.CheckpointName(), lag.Events, relayWait, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func postgresTransport(t *testing.T) relay.Transport {
	t.Helper()
	tr, err := relay.ParseTransport("postgres")
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// topicDeliveries subscribes a new consumer group from the start of the
// SQL topic and returns the UUIDs and envelopes of every delivery, once
// the distinct UUIDs number want.
func topicDeliveries(t *testing.T, pool *pgxpool.Pool, want int) []relay.Envelope {
	t.Helper()
	tr := postgresTransport(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub, closeConn, err := tr.Subscriber(ctx, pool, relay.SubscribeOptions{Group: fmt.Sprintf("check-%d", rand.Int64()), FromStart: true},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn()
	defer sub.Close()
	msgs, err := sub.Subscribe(ctx, tr.Topic)
	if err != nil {
		t.Fatal(err)
	}
	var got []relay.Envelope
	seen := map[string]bool{}
	deadline := time.After(relayWait)
	for len(seen) < want {
		select {
		case m := <-msgs:
			env, err := relay.ParseEnvelope(m)
			if err != nil {
				t.Fatal(err)
			}
			if env.EventID != m.UUID {
				t.Fatalf("message %s carries event %s", m.UUID, env.EventID)
			}
			got = append(got, env)
			seen[m.UUID] = true
			m.Ack()
		case <-deadline:
			t.Fatalf("after %s the consumer has %d distinct events of %d (%d deliveries)", relayWait, len(seen), want, len(got))
		}
	}
	return got
}

// checkExactlyOnce checks that the deliveries, de-duplicated on the event
// id, are every event of the log once, each stream in version order; it
// returns how many duplicates were dropped.
func checkExactlyOnce(t *testing.T, pool *pgxpool.Pool, got []relay.Envelope) int {
	t.Helper()
	events, _, err := eventstore.ReadCommittedTx(context.Background(), pool, eventstore.Cursor{}, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]eventstore.Event{}
	for _, e := range events {
		byID[e.ID.String()] = e
	}
	seen := map[string]bool{}
	last := map[string]int64{}
	dups := 0
	for i, env := range got {
		if seen[env.EventID] {
			dups++
			continue
		}
		seen[env.EventID] = true
		e, ok := byID[env.EventID]
		if !ok {
			t.Errorf("delivery %d: %s is not an event of the log", i, env.EventID)
			continue
		}
		if env.StreamID != e.StreamID || env.StreamVersion != e.Version {
			t.Errorf("delivery %d: %s v%d, the event is %s v%d", i, env.StreamID, env.StreamVersion, e.StreamID, e.Version)
		}
		if env.StreamVersion != last[env.StreamID]+1 {
			t.Errorf("delivery %d: stream %s version %d after %d: out of order or missing", i, env.StreamID, env.StreamVersion, last[env.StreamID])
		}
		last[env.StreamID] = max(last[env.StreamID], env.StreamVersion)
	}
	if len(seen) != len(events) {
		t.Errorf("%d distinct events delivered, %d in the log", len(seen), len(events))
	}
	return dups
}

// TestHelperRelayProcess is `upsell relay` in a process of its own, which
// TestRelayProcessKilled starts (re-running this test binary) and kills.
// Run normally, it does nothing.
func TestHelperRelayProcess(t *testing.T) {
	if os.Getenv("UPSELL_TEST_RELAY_PROCESS") != "1" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, []string{"relay"}, os.Getenv, os.Stdout, os.Stderr))
}

// relayProcess is `upsell relay` running in a child process.
type relayProcess struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	exited         chan error
}

func startRelayProcess(t *testing.T, url string) *relayProcess {
	t.Helper()
	p := &relayProcess{stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperRelayProcess$", "-test.count=1", "-test.v=false")
	p.cmd.Env = append(os.Environ(), "UPSELL_TEST_RELAY_PROCESS=1", "DATABASE_URL="+url, "UPSELL_PUBLISH_URL=postgres")
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		p.exited <- nil
	})
	return p
}

// kill sends sig and waits for the process to end.
func (p *relayProcess) kill(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	return killChild(t, "relay", p.cmd, p.exited, p.stderr, sig)
}

// killChild sends sig to a child process of a test and waits, at most
// relayWait, for it to end; exited gives its end once and gets it back.
func killChild(t *testing.T, name string, cmd *exec.Cmd, exited chan error, stderr fmt.Stringer, sig syscall.Signal) error {
	t.Helper()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal the %s process: %v; stderr:\n%s", name, err, stderr.String())
	}
	select {
	case err := <-exited:
		exited <- err
		return err
	case <-time.After(relayWait):
		t.Fatalf("the %s process did not end within %s of %s", name, relayWait, sig)
		return nil
	}
}

// `upsell relay` killed with SIGKILL at random moments while writers
// append: after a last relay catches up, a consumer of the SQL topic sees
// every event exactly once after de-duplication, each stream in order.
func TestRelayProcessKilled(t *testing.T) {
	t.Parallel()
	url := testdb.Empty(t)
	if code, out, errOut := upsell(t, url, "migrate"); code != 0 {
		t.Fatalf("migrate: %d %s %s", code, out, errOut)
	}
	pool := openPool(t, url)
	tr := postgresTransport(t)
	ctx := context.Background()
	store := eventstore.New(pool)

	// Writers append one to three events at a time to streams of their own.
	stopWriters := make(chan struct{})
	var writers sync.WaitGroup
	var appended atomic.Int64
	writeErr := make(chan error, 4)
	for w := range 4 {
		writers.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stopWriters:
					return
				default:
				}
				stream := fmt.Sprintf("kill-w%d-s%d", w, i%7)
				n := 1 + i%3
				a := eventstore.Append{StreamID: stream, StreamType: "killtest", ExpectedVersion: eventstore.AnyVersion}
				for j := range n {
					a.Events = append(a.Events, eventstore.NewEvent{Type: "KillTestHappened", Data: []byte(fmt.Sprintf(`{"i": %d, "j": %d}`, i, j))})
				}
				if _, err := store.Append(ctx, a); err != nil {
					writeErr <- err
					return
				}
				appended.Add(int64(n))
				time.Sleep(time.Duration(2+rand.IntN(6)) * time.Millisecond)
			}
		})
	}
	defer func() {
		select {
		case <-stopWriters:
		default:
			close(stopWriters)
		}
		writers.Wait()
	}()

	// Every other kill lands between a publish and its checkpoint: the
	// checkpoint's update is slowed down (a trigger of this test's
	// database sleeps 200 ms in it), and the relay is killed as soon as
	// the topic holds events past its checkpoint. The others land at
	// random moments.
	if _, err := pool.Exec(ctx, `CREATE FUNCTION test_slow_relay_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(0.2); RETURN NEW; END $$;
CREATE TRIGGER test_slow_relay_checkpoint BEFORE UPDATE ON projection_checkpoints
FOR EACH ROW WHEN (NEW.name = 'relay.postgres') EXECUTE FUNCTION test_slow_relay_checkpoint()`); err != nil {
		t.Fatal(err)
	}
	const kills = 8
	betweenKills := 0
	for k := range kills {
		before, err := relay.Checkpoint(ctx, pool, tr)
		if err != nil {
			t.Fatal(err)
		}
		published, _ := topicAndCheckpoint(t, pool)
		p := startRelayProcess(t, url)
		between := k%2 == 0
		deadline := time.Now().Add(relayWait)
		for {
			var ready bool
			if between {
				// This process has published events no process had, and
				// not checkpointed them.
				distinct, checkpointed := topicAndCheckpoint(t, pool)
				ready = distinct > published && distinct > checkpointed
			} else {
				at, err := relay.Checkpoint(ctx, pool, tr)
				if err != nil {
					t.Fatal(err)
				}
				ready = before.Less(at) // it has published and checkpointed once
			}
			if ready {
				break
			}
			select {
			case err := <-p.exited:
				t.Fatalf("relay process %d ended by itself (%v); stdout %q, stderr:\n%s", k+1, err, p.stdout.String(), p.stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("relay process %d published nothing within %s; stderr:\n%s", k+1, relayWait, p.stderr.String())
			}
			time.Sleep(2 * time.Millisecond)
		}
		if !between {
			time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		}
		err = p.kill(t, syscall.SIGKILL)
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("relay process %d: %v, not killed; stderr:\n%s", k+1, err, p.stderr.String())
		}
		if between {
			// Killed before its checkpoint: the published batch is ahead
			// of the checkpoint, and stays so.
			if distinct, checkpointed := topicAndCheckpoint(t, pool); distinct > checkpointed {
				betweenKills++
			} else {
				t.Logf("relay process %d stored its checkpoint before it was killed", k+1)
			}
		}
		select {
		case err := <-writeErr:
			t.Fatal(err)
		default:
		}
		// Writers go on while no relay runs.
		time.Sleep(time.Duration(50+rand.IntN(100)) * time.Millisecond)
	}
	if betweenKills == 0 {
		t.Errorf("no relay process was killed between its publish and its checkpoint")
	}
	close(stopWriters)
	writers.Wait()
	close(writeErr)
	for err := range writeErr {
		t.Fatal(err)
	}

	last := startRelayProcess(t, url)
	waitRelayed(t, pool, tr, last.stderr)
	if err := last.kill(t, syscall.SIGTERM); err != nil {
		t.Errorf("the last relay, stopped with SIGTERM: %v; stderr:\n%s", err, last.stderr.String())
	}
	if out := last.stdout.String(); !strings.Contains(out, "upsell: relaying the event log to postgres topic upsell_events (Ctrl-C to stop)") {
		t.Errorf("the relay's stdout: %q", out)
	}
	if log := last.stderr.String(); !strings.Contains(log, "relay stopped") {
		t.Errorf("the relay's log does not say it stopped:\n%s", log)
	}

	total := int(appended.Load())
	got := topicDeliveries(t, pool, total)
	dups := checkExactlyOnce(t, pool, got)
	var rows int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM watermill_upsell_events`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events appended, %d relay processes killed (%d between publish and checkpoint); %d rows in the topic, %d duplicates delivered",
		total, kills, betweenKills, rows, dups)
	if rows < total {
		t.Errorf("%d rows in the topic, fewer than the %d events", rows, total)
	}
	if betweenKills > 0 && (dups == 0 || rows == total) {
		t.Errorf("%d kills between publish and checkpoint, yet %d duplicates delivered (%d rows for %d events): no batch was published again", betweenKills, dups, rows, total)
	}
}

// topicAndCheckpoint returns how many distinct events the SQL topic holds
// and how many events the relay's checkpoint covers: more of the first is
// a batch published and not (yet) checkpointed.
func topicAndCheckpoint(t *testing.T, pool *pgxpool.Pool) (distinct, checkpointed int) {
	t.Helper()
	err := pool.QueryRow(context.Background(), `SELECT
    (SELECT count(DISTINCT uuid) FROM watermill_upsell_events),
    (SELECT count(*) FROM events e JOIN projection_checkpoints c ON c.name = 'relay.postgres'
     WHERE (e.transaction_id, e.position) <= (c.transaction_id, c.position))`).Scan(&distinct, &checkpointed)
	if err != nil {
		t.Fatal(err)
	}
	return distinct, checkpointed
}

// `upsell relay` publishes to the SQL topic until its context ends, and
// exits 0 then.
func TestRelayCommand(t *testing.T) {
	t.Parallel()
	url, pool := storyDB(t)
	tr := postgresTransport(t)
	r := startCommand(t, envOf(url), "relay")
	waitRelayed(t, pool, tr, r.stderr)
	events, _, err := eventstore.ReadCommittedTx(context.Background(), pool, eventstore.Cursor{}, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	got := topicDeliveries(t, pool, len(events))
	if dups := checkExactlyOnce(t, pool, got); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if code := r.stop(); code != 0 {
		t.Errorf("relay exited %d after its context ended; stderr:\n%s", code, r.stderr.String())
	}
	if out := r.stdout.String(); out != "upsell: relaying the event log to postgres topic upsell_events (Ctrl-C to stop)\n" {
		t.Errorf("stdout %q", out)
	}
	if log := r.stderr.String(); !strings.Contains(log, "relay starting") || !strings.Contains(log, "checkpoint=relay.postgres") || strings.Contains(log, "level=ERROR") {
		t.Errorf("the relay's log:\n%s", log)
	}
}

// A --publish (or UPSELL_PUBLISH_URL) the relay cannot use is misuse: exit
// 2 with a message saying what is wrong and what works, before anything
// connects; the flag wins over the environment.
func TestPublishRefusals(t *testing.T) {
	t.Parallel()
	url := migratedURL(t)
	for _, cmd := range []string{"relay", "billing-tail", "serve"} {
		for _, tc := range []struct {
			name  string
			env   []string
			args  []string
			inErr string
		}{
			{"--publish bogus://x", nil, []string{"--publish", "bogus://x"}, `unknown message transport "bogus://x"`},
			{"UPSELL_PUBLISH_URL", []string{"UPSELL_PUBLISH_URL", "kafka://broker:9092"}, nil, `unknown message transport "kafka://broker:9092"`},
			{"the flag wins", []string{"UPSELL_PUBLISH_URL", "postgres"}, []string{"--publish", "bogus://y"}, `"bogus://y"`},
			{"a password is not shown", nil, []string{"--publish", "bogus://user:hunter2@x"}, "bogus://user:xxxxx@x"},
		} {
			t.Run(cmd+" "+tc.name, func(t *testing.T) {
				t.Parallel()
				args := append([]string{cmd}, tc.args...)
				if cmd == "serve" {
					args = append(args, "--addr", "127.0.0.1:0")
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				var out, errOut syncBuffer
				code := run(ctx, args, envOf(url, tc.env...), &out, &errOut)
				if code != 2 {
					t.Fatalf("exit %d, want 2; stdout %q, stderr %q", code, out.String(), errOut.String())
				}
				msg := errOut.String()
				for _, want := range []string{"upsell " + cmd + ": ", tc.inErr, `use "postgres"`, "nats://HOST:PORT"} {
					if !strings.Contains(msg, want) {
						t.Errorf("stderr %q lacks %q", msg, want)
					}
				}
				if strings.Contains(msg, "hunter2") || out.String() != "" {
					t.Errorf("stdout %q, stderr %q", out.String(), msg)
				}
			})
		}
	}
	// UPSELL_PUBLISH_URL=postgres, or the flag over a bad environment, runs.
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"UPSELL_PUBLISH_URL=postgres", []string{"UPSELL_PUBLISH_URL", "postgres"}, nil},
		{"--publish postgres over a bad UPSELL_PUBLISH_URL", []string{"UPSELL_PUBLISH_URL", "bogus://z"}, []string{"--publish", "postgres"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := startCommand(t, envOf(testdb.Empty(t), tc.env...), append([]string{"relay"}, tc.args...)...)
			// An empty, unmigrated database: the relay refuses to start
			// (exit 1, not 2), which shows the transport was accepted.
			select {
			case code := <-r.exit:
				r.code = &code
				if code != 1 || !strings.Contains(r.stderr.String(), "run `upsell migrate`") {
					t.Errorf("exit %d, stderr %q; want 1 asking for migrate", code, r.stderr.String())
				}
			case <-time.After(relayWait):
				t.Fatal("relay on an unmigrated database did not return")
			}
		})
	}
	if code, _, errOut := upsell(t, url, "relay", "extra"); code != 2 || !strings.Contains(errOut, "relay takes no arguments") {
		t.Errorf("relay extra: %d %q", code, errOut)
	}
}

// `upsell serve` runs the relay: an event of a command over HTTP reaches
// the SQL topic, and /metrics shows the relay's lag and its count.
func TestServeRunsTheRelay(t *testing.T) {
	t.Parallel()
	url := testdb.Empty(t)
	for _, args := range [][]string{{"migrate"}, {"import", "../../fixtures/import-example.json"}} {
		if code, out, errOut := upsell(t, url, args...); code != 0 {
			t.Fatalf("%v: code %d\n%s\n%s", args, code, out, errOut)
		}
	}
	pool := openPool(t, url)
	srv := startServe(t, url)
	api := newAPIClient(t, srv.base)
	status, _, body := api.do("POST", "/v1/customers/cust-contoso/change-quotes", alexKey, "")
	m := regexp.MustCompile(`"quote_id":"([0-9a-f-]{36})"`).FindStringSubmatch(string(body))
	if status != 201 || m == nil {
		t.Fatalf("open a change quote: %d %s", status, body)
	}
	var eventID string
	if err := pool.QueryRow(context.Background(), `SELECT event_id::text FROM events WHERE stream_id = $1 AND version = 1`, m[1]).Scan(&eventID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(relayWait)
	for {
		var typ string
		err := pool.QueryRow(context.Background(), `SELECT metadata->>'ce_type' FROM watermill_upsell_events WHERE uuid = $1`, eventID).Scan(&typ)
		if err == nil {
			if typ != "ChangeQuoteOpened" {
				t.Errorf("the message of %s has ce_type %q", eventID, typ)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the event %s of the command did not reach the SQL topic within %s (%v); log:\n%s", eventID, relayWait, err, srv.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitRelayed(t, pool, postgresTransport(t), srv.stderr)
	var total int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM events`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	lagLine := regexp.MustCompile(`(?m)^upsell_relay_lag_events\{relay="postgres"\} 0$`)
	countLine := regexp.MustCompile(`(?m)^upsell_relay_events_total\{relay="postgres"\} (\d+)$`)
	for {
		status, _, body := api.do("GET", "/metrics", "", "")
		metrics := string(body)
		c := countLine.FindStringSubmatch(metrics)
		if status == 200 && lagLine.MatchString(metrics) && c != nil && c[1] == fmt.Sprint(total) {
			if !regexp.MustCompile(`(?m)^upsell_relay_lag_seconds\{relay="postgres"\} 0$`).MatchString(metrics) {
				t.Errorf("no upsell_relay_lag_seconds 0 once caught up:\n%s", grepLines(metrics, "upsell_relay"))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics (%d) does not show the relay caught up with %d events published:\n%s", status, total, grepLines(metrics, "upsell_relay"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
