// Package httpapi is score's HTTP edge: the score and the whole read model of a
// cpf, with optional read-your-writes waits.
package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/personscore/contract"
	"github.com/personscore/eventbus/service"
	"github.com/personscore/score"
	"go.uber.org/zap"
)

// Store is what the API needs (mongodb.Store).
type Store interface {
	Get(ctx context.Context, cpf int64) (score.Document, error)
	WaitForVersion(ctx context.Context, cpf, min int64) (score.Document, bool, error)
}

// StaleHeader is set to "true" when the answer may be behind person: the
// min_version asked for was not reached in time, or score is not receiving
// events (its consumer is not connected to the broker), so newer changes may
// exist that it cannot know of.
const StaleHeader = "X-Stale"

// Why an answer is stale (the stale_reason field).
const (
	StaleMinVersion   = "min_version not reached within the wait"
	StaleDisconnected = "not receiving events (broker unreachable): newer changes may exist"
)

// Config is what the API is built from.
type Config struct {
	Store  Store
	Logger *zap.Logger
	// MaxWait bounds a min_version wait.
	MaxWait time.Duration
	// Receiving reports whether score's consumer is connected; nil: always.
	Receiving func() bool
}

// API serves score's public routes.
type API struct {
	store     Store
	log       *zap.Logger
	maxWait   time.Duration
	receiving func() bool
}

// Register adds the routes.
func Register(r *gin.Engine, cfg Config) {
	a := &API{store: cfg.Store, log: cfg.Logger, maxWait: cfg.MaxWait, receiving: cfg.Receiving}
	if a.log == nil {
		a.log = zap.NewNop()
	}
	r.GET("/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", OpenAPI) })
	r.GET("/:cpf/score", a.getScore)
	r.GET("/:cpf", a.getDocument)
}

// read returns the document, why it is stale ("" when not) and whether it
// answered already (an error).
func (a *API) read(c *gin.Context) (score.Document, string, bool) {
	cpf, err := contract.ParseCPF(c.Param("cpf"))
	if err != nil {
		service.WriteProblem(c, http.StatusNotFound, "no score known for this cpf")
		return score.Document{}, "", false
	}
	var d score.Document
	stale := false
	if raw := c.Query("min_version"); raw != "" {
		min, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || min < 0 {
			service.WriteProblem(c, http.StatusBadRequest, "min_version must be a non-negative integer",
				service.FieldError{Field: "min_version", Reason: "must be a non-negative integer"})
			return d, "", false
		}
		ctx, cancel := context.WithTimeout(c.Request.Context(), a.maxWait)
		defer cancel()
		d, stale, err = a.store.WaitForVersion(ctx, cpf, min)
		if err == nil && !d.Live() {
			err = score.ErrNotFound
		}
		if err != nil {
			a.fail(c, err, stale)
			return d, "", false
		}
	} else {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 5*time.Second)
		defer cancel()
		d, err = a.store.Get(ctx, cpf)
		if err != nil {
			a.fail(c, err, false)
			return d, "", false
		}
	}
	reason := ""
	switch {
	case stale:
		reason = StaleMinVersion
	case a.receiving != nil && !a.receiving():
		reason = StaleDisconnected
	}
	if reason != "" {
		c.Header(StaleHeader, "true")
	}
	return d, reason, true
}

// staleness adds stale (and stale_reason when stale) to an answer.
func staleness(body gin.H, reason string) gin.H {
	body["stale"] = reason != ""
	if reason != "" {
		body["stale_reason"] = reason
	}
	return body
}

func (a *API) fail(c *gin.Context, err error, stale bool) {
	if stale {
		c.Header(StaleHeader, "true")
	}
	if errors.Is(err, score.ErrNotFound) {
		service.WriteProblem(c, http.StatusNotFound, "no score known for this cpf")
		return
	}
	service.WriteUnavailable(c, a.log, time.Second, err, "read model unavailable; retry later")
}

func (a *API) getScore(c *gin.Context) {
	d, stale, ok := a.read(c)
	if !ok {
		return
	}
	c.JSON(http.StatusOK, staleness(gin.H{"cpf": d.CPF, "score": d.Score, "version": d.Version, "updated_at": d.UpdatedAt}, stale))
}

func (a *API) getDocument(c *gin.Context) {
	d, stale, ok := a.read(c)
	if !ok {
		return
	}
	c.JSON(http.StatusOK, staleness(gin.H{"cpf": d.CPF, "person": d.Person, "items": d.Items, "score": d.Score,
		"version": d.Version, "updated_at": d.UpdatedAt}, stale))
}
