package daemon

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"ssstation/station/service"
)

// metrics are the daemon's Prometheus series: APDUs, card inserts and
// PC/SC errors per reader (read from the daemon's counters when scraped),
// and operation durations and outcomes per reader.
type metrics struct {
	d        *Daemon
	apdus    *prometheus.Desc
	inserts  *prometheus.Desc
	pcscErrs *prometheus.Desc
	pcscUp   *prometheus.Desc
	ops      *prometheus.HistogramVec
}

// RegisterMetrics adds the daemon's series to reg.
func (d *Daemon) RegisterMetrics(reg prometheus.Registerer) error {
	m := &metrics{
		d:        d,
		apdus:    prometheus.NewDesc("stationd_apdus_total", "APDUs exchanged with the card, per reader.", []string{"reader"}, nil),
		inserts:  prometheus.NewDesc("stationd_card_inserts_total", "Cards inserted, per reader.", []string{"reader"}, nil),
		pcscErrs: prometheus.NewDesc("stationd_pcsc_errors_total", "Losses of the smart card service and PC/SC failures.", nil, nil),
		pcscUp:   prometheus.NewDesc("stationd_pcsc_up", "1 while the smart card service is reachable.", nil, nil),
		ops: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stationd_operation_duration_seconds",
			Help: "Card operation durations by reader, kind and outcome.", Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10)},
			[]string{"reader", "kind", "outcome"}),
	}
	if err := reg.Register(m); err != nil {
		return err
	}
	if err := reg.Register(m.ops); err != nil {
		return err
	}
	d.mu.Lock()
	d.metrics = m
	d.mu.Unlock()
	return nil
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.apdus
	ch <- m.inserts
	ch <- m.pcscErrs
	ch <- m.pcscUp
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.d.Stats()
	for id, n := range s.APDUs {
		ch <- prometheus.MustNewConstMetric(m.apdus, prometheus.CounterValue, float64(n), id)
	}
	for id, n := range s.CardInserts {
		ch <- prometheus.MustNewConstMetric(m.inserts, prometheus.CounterValue, float64(n), id)
	}
	ch <- prometheus.MustNewConstMetric(m.pcscErrs, prometheus.CounterValue, float64(s.PCSCErrors))
	up := 0.0
	if s.PCSCUp {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(m.pcscUp, prometheus.GaugeValue, up)
}

// observe records an ended operation (callers hold d.mu).
func (m *metrics) observe(op *service.Operation) {
	if m == nil {
		return
	}
	m.ops.WithLabelValues(op.ReaderID, string(op.Kind), string(op.State)).Observe(time.Since(op.Created).Seconds())
}
