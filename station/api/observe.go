package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "stationd", Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "stationd", Subsystem: "http", Name: "request_duration_seconds",
			Help:    "HTTP request durations by route pattern (event streams excluded).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route", "method"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (s *server) metricsHandler(w http.ResponseWriter, r *http.Request, _ *Route) {
	promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

// statusWriter remembers the status for the log line and the metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and SetWriteDeadline.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush for the event stream.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// logRequests gives every request an id (X-Request-Id) and writes one
// line when it ends: method, route pattern, status, duration, caller
// token name and operator. Never the body, the query string (an event ticket) or a
// header value other than the request id.
func (s *server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := newID(8)
		w.Header().Set("X-Request-Id", id)
		// Answers hold holder data: no cache (browser or proxy) keeps them.
		w.Header().Set("Cache-Control", "no-store")
		info := &reqInfo{}
		ctx := context.WithValue(context.WithValue(r.Context(), keyRequestID, id), keyInfo, info)
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(ctx))
		d := time.Since(start)
		route := "unmatched"
		if rc := chi.RouteContext(ctx); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		s.metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.status)).Inc()
		if route != "/v1/events" {
			s.metrics.duration.WithLabelValues(route, r.Method).Observe(d.Seconds())
		}
		ev := s.log.Info()
		if sw.status >= 500 {
			ev = s.log.Error()
		}
		ev.Str("request_id", id).Str("method", r.Method).Str("route", route).
			Int("status", sw.status).Dur("duration", d).Int("bytes", sw.bytes)
		if info.token != "" {
			ev = ev.Str("token", info.token)
		}
		if info.operator != "" {
			ev = ev.Str("operator", info.operator)
		}
		ev.Msg("http request")
	})
}
