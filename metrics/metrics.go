// Package metrics exposes bccguard's Prometheus metrics and its health
// endpoints.
package metrics

import (
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bccguard/bccguard/policy"
)

// Metrics holds every bccguard metric, registered in its own registry so
// that tests can make as many as they like.
type Metrics struct {
	registry *prometheus.Registry

	messages     *prometheus.CounterVec
	passed       *prometheus.CounterVec
	moved        prometheus.Counter
	parseErrors  *prometheus.CounterVec
	latency      prometheus.Histogram
	sessions     prometheus.Gauge
	refused      prometheus.Counter
	evicted      prometheus.Counter
	panics       prometheus.Counter
	reloads      *prometheus.CounterVec
	configLoaded prometheus.Gauge
	configLoad   prometheus.Gauge
	notices      *prometheus.CounterVec
	split        splitMetrics
}

// New creates the metrics, with build information for version.
func New(version string) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bccguard_messages_total",
			Help: "Messages decided, by action (convert, pass, tempfail) and dry_run.",
		}, []string{"action", "dry_run"}),
		passed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bccguard_passed_total",
			Help: "Messages that left unconverted, by reason: null_sender, exempt, sender_not_covered, sender_disabled, internal_only, below_threshold, parse_error_accept, dry_run.",
		}, []string{"reason"}),
		moved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bccguard_addresses_moved_total",
			Help: "Addresses removed from visible headers (kept on the envelope).",
		}),
		parseErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bccguard_parse_errors_total",
			Help: "Messages whose address fields failed the strict parser, by kind: lenient (counted by the fallback), unreadable and too_large (on_parse_error applied).",
		}, []string{"kind"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bccguard_decision_duration_seconds",
			Help:    "Time from end-of-message to the reply, decision and header changes included.",
			Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1, 1},
		}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bccguard_sessions_in_flight",
			Help: "Milter sessions currently open.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bccguard_sessions_refused_total",
			Help: "Milter connections closed at once because the session cap was reached (Postfix tempfails their mail).",
		}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bccguard_sessions_evicted_total",
			Help: "Milter sessions closed because they were silent while the session cap was nearly reached.",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bccguard_panics_total",
			Help: "Panics recovered inside a session; the message was tempfailed.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bccguard_config_reloads_total",
			Help: "Config reloads, by result (success, failure).",
		}, []string{"result"}),
		configLoaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bccguard_config_loaded_timestamp_seconds",
			Help: "When the config in use was loaded (Unix time).",
		}),
		configLoad: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bccguard_config_load_duration_seconds",
			Help: "How long the last reload (valid or not) took to read and validate the config.",
		}),
		notices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bccguard_notices_total",
			Help: "Notices to senders after a conversion, by result: sent (Postfix accepted it), suppressed (min_interval), failed (every attempt failed, queue full, or dropped at shutdown).",
		}, []string{"result"}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bccguard_build_info",
		Help: "Always 1; the labels tell the version and Go version.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	m.split = newSplitMetrics(m.registry)
	m.registry.MustRegister(m.messages, m.passed, m.moved, m.parseErrors, m.latency, m.sessions,
		m.refused, m.evicted, m.panics, m.reloads, m.configLoaded, m.configLoad, m.notices, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Make the labelled series visible at zero from the start, so that
	// rate() and alerts work before the first event.
	for _, a := range []string{"convert", "pass", "tempfail"} {
		m.messages.WithLabelValues(a, "false")
	}
	m.messages.WithLabelValues("convert", "true")
	for _, r := range policy.PassReasons {
		m.passed.WithLabelValues(string(r))
	}
	for _, k := range []string{"lenient", "unreadable", "too_large"} {
		m.parseErrors.WithLabelValues(k)
	}
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	for _, r := range []string{"sent", "suppressed", "failed"} {
		m.notices.WithLabelValues(r)
	}
	return m
}

// Decided counts one decision.
func (m *Metrics) Decided(d policy.Decision, took time.Duration) {
	dry := "false"
	if d.DryRun {
		dry = "true"
	}
	m.messages.WithLabelValues(d.Action.String(), dry).Inc()
	if d.Passed != policy.NotPassed {
		m.passed.WithLabelValues(string(d.Passed)).Inc()
	}
	if d.Action == policy.Convert && !d.DryRun {
		m.moved.Add(float64(d.Moved))
	}
	if d.Parse != policy.ParseOK {
		m.parseErrors.WithLabelValues(string(d.Parse)).Inc()
	}
	m.latency.Observe(took.Seconds())
}

// Noticed counts a notice's result: sent, suppressed or failed.
func (m *Metrics) Noticed(result string) { m.notices.WithLabelValues(result).Inc() }

// SessionOpened and SessionClosed track sessions in flight.
func (m *Metrics) SessionOpened() { m.sessions.Inc() }

// SessionClosed is the counterpart of SessionOpened.
func (m *Metrics) SessionClosed() { m.sessions.Dec() }

// SessionRefused counts a connection refused at the session cap.
func (m *Metrics) SessionRefused() { m.refused.Inc() }

// SessionsEvicted counts silent sessions closed to make room.
func (m *Metrics) SessionsEvicted(n int) { m.evicted.Add(float64(n)) }

// Panicked counts a recovered panic.
func (m *Metrics) Panicked() { m.panics.Inc() }

// Reloaded counts a reload attempt.
func (m *Metrics) Reloaded(ok bool) {
	if ok {
		m.reloads.WithLabelValues("success").Inc()
		m.ConfigLoaded(time.Now())
		return
	}
	m.reloads.WithLabelValues("failure").Inc()
}

// ConfigLoadTook records how long reading and validating the config took.
func (m *Metrics) ConfigLoadTook(d time.Duration) { m.configLoad.Set(d.Seconds()) }

// ConfigLoaded records when the config in use was loaded.
func (m *Metrics) ConfigLoaded(t time.Time) {
	m.configLoaded.Set(float64(t.UnixNano()) / 1e9)
}

// Handler serves /metrics, /healthz (the process is alive) and /readyz
// (ready returns nil when the milter listens with a valid config and can
// take sessions, else the reason, which /readyz prints with its 503).
func (m *Metrics) Handler(ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	return mux
}
