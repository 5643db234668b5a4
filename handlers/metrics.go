package handlers

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/upsell-dev/upsell/eventstore"
	"github.com/upsell-dev/upsell/projections"
)

// Metrics is what /metrics exposes, in its own registry so that several
// servers (in tests) never collide.
type Metrics struct {
	Registry       *prometheus.Registry
	requests       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	eventsAppended *prometheus.CounterVec
	// ProjectedEvents counts the events each asynchronous projector
	// applied; give Runner.OnBatch its Add.
	ProjectedEvents *prometheus.CounterVec
	// RelayedEvents counts the events this instance's relay published and
	// checkpointed; give relay.Options.OnPublished its Add.
	RelayedEvents *prometheus.CounterVec
	groupSize     prometheus.Histogram
	groupsRefused prometheus.Counter
	// stallThreshold judges upsell_log_stalled (eventstore.StallThreshold;
	// shorter in tests).
	stallThreshold time.Duration
}

// NewMetrics registers the service's metrics. With a pool it also reports
// each asynchronous projection's lag, the lag of each relay named (by its
// checkpoint name, e.g. relay.postgres), and whether the log is stalled
// behind an open transaction, read from the database at scrape time.
func NewMetrics(pool *pgxpool.Pool, relays ...string) *Metrics {
	m := &Metrics{
		stallThreshold: eventstore.StallThreshold,
		Registry:       prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upsell_http_requests_total", Help: "HTTP requests answered, by route, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "upsell_http_request_duration_seconds", Help: "Time to answer HTTP requests, by route and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
		eventsAppended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upsell_events_appended_total", Help: "Events appended by commands of this instance, by event type.",
		}, []string{"type"}),
		ProjectedEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upsell_projection_events_total", Help: "Events applied by this instance's asynchronous projectors.",
		}, []string{"projection"}),
		RelayedEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upsell_relay_events_total", Help: "Events published (and checkpointed) by this instance's relay, by transport.",
		}, []string{"relay"}),
		groupSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "upsell_group_commit_commands", Help: "Commands per transaction of this instance's group commit (1: a command alone).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
		}),
		groupsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "upsell_group_commit_refused_total", Help: "Groups of commands PostgreSQL refused, whose commands then ran alone.",
		}),
	}
	m.Registry.MustRegister(m.requests, m.latency, m.eventsAppended, m.ProjectedEvents, m.RelayedEvents, m.groupSize, m.groupsRefused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if pool != nil {
		m.Registry.MustRegister(&lagCollector{pool: pool, relays: relays}, &stallCollector{pool: pool, m: m})
	}
	return m
}

// ObserveGroup records a group commit's transaction (eventstore.OnGroup).
func (m *Metrics) ObserveGroup(members int, refused bool) {
	m.groupSize.Observe(float64(members))
	if refused {
		m.groupsRefused.Inc()
	}
}

func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

func (m *Metrics) observeRequest(method, route string, status int, d time.Duration) {
	switch method {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS":
	default:
		method = "OTHER" // a client must not be able to mint label values
	}
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route, method).Observe(d.Seconds())
}

// lagCollector reports how far each asynchronous projection is behind the
// log: events not yet applied (counted up to a cap, so a scrape stays
// cheap) and the age of the oldest of them.
type lagCollector struct {
	pool   *pgxpool.Pool
	relays []string
}

var (
	lagEventsDesc = prometheus.NewDesc("upsell_projection_lag_events",
		"Events in the log that the projection has not applied yet (at most 1,000,000 are counted).", []string{"projection"}, nil)
	lagSecondsDesc = prometheus.NewDesc("upsell_projection_lag_seconds",
		"Age of the oldest event the projection has not applied yet; 0 when it is current.", []string{"projection"}, nil)
	relayLagEventsDesc = prometheus.NewDesc("upsell_relay_lag_events",
		"Events in the log that the relay has not published yet (at most 1,000,000 are counted).", []string{"relay"}, nil)
	relayLagSecondsDesc = prometheus.NewDesc("upsell_relay_lag_seconds",
		"Age of the oldest event the relay has not published yet; 0 when it is current.", []string{"relay"}, nil)
)

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagEventsDesc
	ch <- lagSecondsDesc
	ch <- relayLagEventsDesc
	ch <- relayLagSecondsDesc
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, p := range projections.All() {
		if !p.Async() {
			continue
		}
		c.collect(ctx, ch, p.Name(), p.Name(), lagEventsDesc, lagSecondsDesc)
	}
	for _, name := range c.relays {
		c.collect(ctx, ch, name, strings.TrimPrefix(name, "relay."), relayLagEventsDesc, relayLagSecondsDesc)
	}
}

func (c *lagCollector) collect(ctx context.Context, ch chan<- prometheus.Metric, checkpoint, label string, events, seconds *prometheus.Desc) {
	lag, err := projections.Lag(ctx, c.pool, checkpoint)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(events, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(events, prometheus.GaugeValue, float64(lag.Events), label)
	ch <- prometheus.MustNewConstMetric(seconds, prometheus.GaugeValue, lag.Age.Seconds(), label)
}

// stallCollector reports whether the readers of the log wait behind an
// open transaction (eventstore.Stall), and which.
type stallCollector struct {
	pool *pgxpool.Pool
	m    *Metrics
}

var (
	logUnreadableDesc = prometheus.NewDesc("upsell_log_unreadable_events",
		"Committed events that no reader of the log (projectors, relay, rebuild) can read yet, because a transaction "+
			"that took its id before they committed is still open somewhere on the PostgreSQL server, in any database "+
			"(at most 100,000 are counted). Short-lived while transactions commit; growing, it is a stall: "+
			"see upsell_log_stalled and `upsell status`.", nil, nil)
	logOldestTxDesc = prometheus.NewDesc("upsell_log_oldest_transaction_seconds",
		"How long the oldest open transaction on the PostgreSQL server (any database), the one every reader of the log "+
			"waits for, has been open; 0 when none is. An abandoned one ends at its session's "+
			"idle_in_transaction_session_timeout (UPSELL_DB_IDLE_TX_TIMEOUT for upsell's sessions), or by "+
			"SELECT pg_terminate_backend(pid).", nil, nil)
	logStalledDesc = prometheus.NewDesc("upsell_log_stalled",
		"1 when committed events wait behind a transaction open for 5 s or more, so projectors and the relay stand "+
			"still; upsell_log_stall_holder_info and `upsell status` name it. It ends when that transaction does: "+
			"its session's idle_in_transaction_session_timeout, or SELECT pg_terminate_backend(pid); a prepared "+
			"transaction by COMMIT PREPARED or ROLLBACK PREPARED.", nil, nil)
	logStallHolderDesc = prometheus.NewDesc("upsell_log_stall_holder_info",
		"The transaction a stalled log waits for (present only while upsell_log_stalled is 1): its pid "+
			"(for pg_terminate_backend; 0 for a prepared transaction), database, application_name and state.",
		[]string{"pid", "database", "application", "state"}, nil)
)

func (c *stallCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- logUnreadableDesc
	ch <- logOldestTxDesc
	ch <- logStalledDesc
	ch <- logStallHolderDesc
}

func (c *stallCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := eventstore.StallAfter(ctx, c.pool, c.m.stallThreshold)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(logUnreadableDesc, err)
		return
	}
	var open float64
	if s.Holder != nil {
		open = s.Holder.Open.Seconds()
	}
	stalled := 0.0
	if s.Stalled {
		stalled = 1
	}
	ch <- prometheus.MustNewConstMetric(logUnreadableDesc, prometheus.GaugeValue, float64(s.UnreadableEvents))
	ch <- prometheus.MustNewConstMetric(logOldestTxDesc, prometheus.GaugeValue, open)
	ch <- prometheus.MustNewConstMetric(logStalledDesc, prometheus.GaugeValue, stalled)
	if s.Stalled && s.Holder != nil {
		h := s.Holder
		ch <- prometheus.MustNewConstMetric(logStallHolderDesc, prometheus.GaugeValue, 1,
			strconv.Itoa(int(h.PID)), h.Database, h.ApplicationName, h.State)
	}
}
