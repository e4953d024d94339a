package service

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// RequestIDHeader carries the request id in and out.
const RequestIDHeader = "X-Request-Id"

// Problem is an RFC 9457 problem details body.
type Problem struct {
	Type     string       `json:"type"`
	Title    string       `json:"title"`
	Status   int          `json:"status"`
	Detail   string       `json:"detail,omitempty"`
	Instance string       `json:"instance,omitempty"`
	Errors   []FieldError `json:"errors,omitempty"`
	// Message keeps the original system's error field for old clients.
	Message string `json:"message"`
}

// FieldError names one invalid field of a request body.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// WriteProblem answers with application/problem+json.
func WriteProblem(c *gin.Context, status int, detail string, fields ...FieldError) {
	p := Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail,
		Instance: c.Request.URL.Path, Errors: fields, Message: detail}
	if p.Message == "" {
		p.Message = p.Title
	}
	c.Header("Content-Type", "application/problem+json")
	c.AbortWithStatusJSON(status, p)
	c.Header("Content-Type", "application/problem+json")
}

// WriteUnavailable answers 503 with Retry-After (whole seconds): the service
// cannot serve the request now because of err (a store that failed, a bound
// that refuses writes), which it logs as a warning with the request id;
// detail tells the client what became of its request.
func WriteUnavailable(c *gin.Context, log *zap.Logger, retry time.Duration, err error, detail string) {
	Log(c.Request.Context(), log).Warn("unavailable", zap.String("detail", detail), zap.Error(err))
	c.Header("Retry-After", strconv.Itoa(int(retry.Seconds())))
	WriteProblem(c, http.StatusServiceUnavailable, detail)
}

type loggerKey struct{}

// Log returns the request-scoped logger (with the request id), or base.
func Log(ctx context.Context, base *zap.Logger) *zap.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*zap.Logger); ok {
		return l
	}
	return base
}

// HTTPMetrics are the request counters and latency histogram of one server.
type HTTPMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewHTTPMetrics registers the HTTP instruments with reg.
func NewHTTPMetrics(reg prometheus.Registerer) *HTTPMetrics {
	m := &HTTPMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "HTTP requests."}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "http_request_duration_seconds", Help: "HTTP request latency.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}, []string{"method", "route", "code"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// ReadyFunc is a service's readiness check: an error makes /readyz answer 503
// problem+json with the error as detail (the instance should get no traffic);
// otherwise /readyz answers 200 with {"status": "ready"} plus details, which
// tell what works only partly (a broker outage the service rides out).
type ReadyFunc func(ctx context.Context) (details map[string]any, err error)

// NewRouter returns a gin engine with recovery into problem+json, request ids,
// per-request logging and metrics, and /healthz, /readyz, /metrics.
// ready reports whether the service can serve; nil means always.
func NewRouter(log *zap.Logger, m *HTTPMetrics, ready ReadyFunc) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// gin would answer "//x/" with a redirect to "//x", which a browser reads
	// as another host; unknown paths get the 404 problem instead.
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.ContextWithFallback = true
	r.Use(func(c *gin.Context) {
		id := c.GetHeader(RequestIDHeader)
		if id == "" || len(id) > 128 {
			id = uuid.NewString()
		}
		c.Header(RequestIDHeader, id)
		reqLog := log.With(zap.String("request_id", id))
		c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), loggerKey{}, reqLog))
		start := time.Now()
		defer func() {
			if rec := recover(); rec != nil {
				reqLog.Error("panic in handler", zap.Any("panic", rec), zap.Stack("stack"))
				WriteProblem(c, http.StatusInternalServerError, "internal error")
			}
			route := c.FullPath()
			if route == "" {
				route = "unmatched"
			}
			code := strconv.Itoa(c.Writer.Status())
			elapsed := time.Since(start)
			m.requests.WithLabelValues(c.Request.Method, route, code).Inc()
			m.duration.WithLabelValues(c.Request.Method, route, code).Observe(elapsed.Seconds())
			if route != "/healthz" && route != "/readyz" && route != "/metrics" {
				reqLog.Info("http request", zap.String("method", c.Request.Method), zap.String("route", route),
					zap.Int("status", c.Writer.Status()), zap.Duration("elapsed", elapsed))
			}
		}()
		c.Next()
	})
	r.NoRoute(func(c *gin.Context) { WriteProblem(c, http.StatusNotFound, "no such resource") })
	r.NoMethod(func(c *gin.Context) { WriteProblem(c, http.StatusMethodNotAllowed, "method not allowed") })
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", func(c *gin.Context) {
		body := gin.H{}
		if ready != nil {
			ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
			defer cancel()
			details, err := ready(ctx)
			if err != nil {
				WriteProblem(c, http.StatusServiceUnavailable, err.Error())
				return
			}
			for k, v := range details {
				body[k] = v
			}
		}
		body["status"] = "ready"
		c.JSON(http.StatusOK, body)
	})
	r.GET("/metrics", gin.WrapH(promhttp.Handler()))
	return r
}

// ErrBodyTooLarge is returned by ReadBody past the limit.
var ErrBodyTooLarge = errors.New("request body too large")

// ReadBody reads at most limit bytes of the request body.
func ReadBody(c *gin.Context, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, ErrBodyTooLarge
	}
	return body, err
}
