// Package admin is score's operator API, served on its own listener that the
// ingress never routes (ADMIN_ADDR) and guarded by a bearer token
// (ADMIN_TOKEN):
//
//	POST /admin/rebuild  starts rebuilding the read model from person: 202 with
//	                     the rebuild (id, state, ...); 409 with the running one
//	                     if a rebuild is in progress
//	GET  /admin/rebuild  the current or last rebuild and its progress; 404 if
//	                     none was ever started
//
// Every request needs "Authorization: Bearer <ADMIN_TOKEN>"; anything else is
// 401. Client is the Go client the rebuild command uses.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/personscore/eventbus/service"
	"github.com/personscore/score"
	"go.uber.org/zap"
)

// Rebuilder starts and reports rebuilds (rebuild.Router).
type Rebuilder interface {
	StartRebuild(ctx context.Context) (score.Rebuild, error)
	RebuildStatus(ctx context.Context) (score.Rebuild, error)
}

// Path is the rebuild resource.
const Path = "/admin/rebuild"

// NewHandler returns the admin API; token must not be empty.
func NewHandler(r Rebuilder, token string, log *zap.Logger) (http.Handler, error) {
	if token == "" {
		return nil, errors.New("admin: an empty token would let anybody in")
	}
	if log == nil {
		log = zap.NewNop()
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	e.Use(gin.CustomRecovery(func(c *gin.Context, rec any) {
		log.Error("panic in admin handler", zap.Any("panic", rec))
		service.WriteProblem(c, http.StatusInternalServerError, "internal error")
	}))
	want := sha256.Sum256([]byte(token))
	e.Use(func(c *gin.Context) {
		got, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			c.Header("WWW-Authenticate", `Bearer realm="score-admin"`)
			service.WriteProblem(c, http.StatusUnauthorized, "a valid bearer token is required")
			return
		}
		c.Next()
	})
	e.NoRoute(func(c *gin.Context) { service.WriteProblem(c, http.StatusNotFound, "no such resource") })
	e.NoMethod(func(c *gin.Context) { service.WriteProblem(c, http.StatusMethodNotAllowed, "method not allowed") })
	e.POST(Path, func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 15*time.Second)
		defer cancel()
		rb, err := r.StartRebuild(ctx)
		switch {
		case errors.Is(err, score.ErrRebuildRunning):
			c.Header("Location", Path)
			c.Header("Content-Type", "application/problem+json")
			c.JSON(http.StatusConflict, gin.H{"type": "about:blank", "title": http.StatusText(http.StatusConflict),
				"status": http.StatusConflict, "detail": "rebuild " + rb.ID + " is running", "message": "rebuild " + rb.ID + " is running",
				"rebuild": rb})
		case err != nil:
			log.Warn("could not start a rebuild", zap.Error(err))
			c.Header("Retry-After", "5")
			service.WriteProblem(c, http.StatusServiceUnavailable, "could not start the rebuild: "+err.Error())
		default:
			log.Info("rebuild requested", zap.String("rebuild_id", rb.ID), zap.String("remote", c.ClientIP()))
			c.Header("Location", Path)
			c.JSON(http.StatusAccepted, rb)
		}
	})
	e.GET(Path, func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 10*time.Second)
		defer cancel()
		rb, err := r.RebuildStatus(ctx)
		switch {
		case errors.Is(err, score.ErrNoRebuild):
			service.WriteProblem(c, http.StatusNotFound, "no rebuild has been started")
		case err != nil:
			c.Header("Retry-After", "1")
			service.WriteProblem(c, http.StatusServiceUnavailable, "status unavailable: "+err.Error())
		default:
			c.JSON(http.StatusOK, rb)
		}
	})
	return e, nil
}
