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
	"github.com/personscore/eventbus/service"
	"github.com/personscore/score"
	"go.uber.org/zap"
)

// Store is what the API needs (mongodb.Store).
type Store interface {
	Get(ctx context.Context, cpf int64) (score.Document, error)
	WaitForVersion(ctx context.Context, cpf, min int64) (score.Document, bool, error)
}

// StaleHeader is set to "true" when min_version was not reached in time.
const StaleHeader = "X-Stale"

// API serves score's public routes.
type API struct {
	store   Store
	log     *zap.Logger
	maxWait time.Duration
}

// Register adds the routes; maxWait bounds a min_version wait.
func Register(r *gin.Engine, store Store, log *zap.Logger, maxWait time.Duration) {
	a := &API{store: store, log: log, maxWait: maxWait}
	r.GET("/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", OpenAPI) })
	r.GET("/:cpf/score", a.getScore)
	r.GET("/:cpf", a.getDocument)
}

func (a *API) read(c *gin.Context) (score.Document, bool, bool) {
	cpf, err := strconv.ParseInt(c.Param("cpf"), 10, 64)
	if err != nil || cpf <= 0 {
		service.WriteProblem(c, http.StatusNotFound, "no score known for this cpf")
		return score.Document{}, false, false
	}
	var d score.Document
	stale := false
	if raw := c.Query("min_version"); raw != "" {
		min, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || min < 0 {
			service.WriteProblem(c, http.StatusBadRequest, "min_version must be a non-negative integer",
				service.FieldError{Field: "min_version", Reason: "must be a non-negative integer"})
			return d, false, false
		}
		ctx, cancel := context.WithTimeout(c.Request.Context(), a.maxWait)
		defer cancel()
		d, stale, err = a.store.WaitForVersion(ctx, cpf, min)
		if err == nil && !d.Live() {
			err = score.ErrNotFound
		}
		if err != nil {
			a.fail(c, err, stale)
			return d, false, false
		}
	} else {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 5*time.Second)
		defer cancel()
		d, err = a.store.Get(ctx, cpf)
		if err != nil {
			a.fail(c, err, false)
			return d, false, false
		}
	}
	if stale {
		c.Header(StaleHeader, "true")
	}
	return d, stale, true
}

func (a *API) fail(c *gin.Context, err error, stale bool) {
	if stale {
		c.Header(StaleHeader, "true")
	}
	if errors.Is(err, score.ErrNotFound) {
		service.WriteProblem(c, http.StatusNotFound, "no score known for this cpf")
		return
	}
	service.Log(c.Request.Context(), a.log).Warn("read failed", zap.Error(err))
	c.Header("Retry-After", "1")
	service.WriteProblem(c, http.StatusServiceUnavailable, "read model unavailable; retry later")
}

func (a *API) getScore(c *gin.Context) {
	d, stale, ok := a.read(c)
	if !ok {
		return
	}
	c.JSON(http.StatusOK, gin.H{"cpf": d.CPF, "score": d.Score, "version": d.Version, "updated_at": d.UpdatedAt, "stale": stale})
}

func (a *API) getDocument(c *gin.Context) {
	d, stale, ok := a.read(c)
	if !ok {
		return
	}
	c.JSON(http.StatusOK, gin.H{"cpf": d.CPF, "person": d.Person, "items": d.Items, "score": d.Score,
		"version": d.Version, "updated_at": d.UpdatedAt, "stale": stale})
}
