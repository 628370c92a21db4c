package metrics

import "github.com/prometheus/client_golang/prometheus"

// SplitFallbackReasons are the label values of
// bccguard_split_fallbacks_total: why a message meant to be split was
// (wholly or partly) hidden instead.
var SplitFallbackReasons = []string{"max_recipients", "max_message_bytes", "reinject", "state", "spool", "not_negotiated", "shutdown", "record", "message_id", "recipients"}

type splitMetrics struct {
	copies    prometheus.Counter
	fallbacks *prometheus.CounterVec
}

func newSplitMetrics(r *prometheus.Registry) splitMetrics {
	s := splitMetrics{
		copies: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bccguard_split_copies_total",
			Help: "Copies handed over to Postfix (250 to DATA) by delivery: split.",
		}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bccguard_split_fallbacks_total",
			Help: "Messages meant to be split whose recipients (all or some) got the hidden original instead, by reason.",
		}, []string{"reason"}),
	}
	r.MustRegister(s.copies, s.fallbacks)
	for _, reason := range SplitFallbackReasons {
		s.fallbacks.WithLabelValues(reason)
	}
	return s
}

// SplitCopies counts copies handed over.
func (m *Metrics) SplitCopies(n int) { m.split.copies.Add(float64(n)) }

// SplitFallback counts a message that fell back to hide, for reason (one
// of SplitFallbackReasons).
func (m *Metrics) SplitFallback(reason string) { m.split.fallbacks.WithLabelValues(reason).Inc() }
