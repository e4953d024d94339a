// Package httpapi is person's HTTP edge: it parses requests, calls the store and
// maps domain errors to status codes and problem+json bodies.
package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/personscore/eventbus/service"
	"github.com/personscore/person"
	"go.uber.org/zap"
)

// MaxBody is the largest request body accepted (1 MiB).
const MaxBody = 1 << 20

// Store is what the API needs of storage (mongodb.Store).
type Store interface {
	Create(ctx context.Context, p person.NewPerson) (int64, error)
	Update(ctx context.Context, cpf person.CPF, d person.Details) (int64, error)
	Delete(ctx context.Context, cpf person.CPF) (int64, error)
	AddItem(ctx context.Context, cpf person.CPF, kind person.Kind, in person.NewItem) (person.Item, error)
	DeleteItem(ctx context.Context, cpf person.CPF, kind person.Kind, id string) (int64, error)
	Get(ctx context.Context, cpf person.CPF) (person.Person, []person.Item, error)
}

// Config is what the API is built from.
type Config struct {
	Store  Store
	Logger *zap.Logger
	// CanWrite, when set, is asked before every change: an error answers 503
	// with Retry-After and nothing is written. The service uses it to bound
	// the outbox backlog (BacklogBound.Check).
	CanWrite func(ctx context.Context) error
	// Timeout bounds the store work of one request (default 5s).
	Timeout time.Duration
}

// API serves person's routes.
type API struct {
	store    Store
	log      *zap.Logger
	canWrite func(ctx context.Context) error
	timeout  time.Duration
}

// Register adds person's routes to r.
func Register(r *gin.Engine, cfg Config) {
	a := &API{store: cfg.Store, log: cfg.Logger, canWrite: cfg.CanWrite, timeout: cfg.Timeout}
	if a.log == nil {
		a.log = zap.NewNop()
	}
	if a.timeout <= 0 {
		a.timeout = 5 * time.Second
	}
	r.POST("/person", a.createPerson())
	r.GET("/person/:cpf", a.getPerson)
	r.PUT("/person/:cpf", a.updatePerson())
	r.DELETE("/person/:cpf", a.deletePerson())
	for _, k := range []person.Kind{person.Income, person.Asset, person.Debt} {
		r.POST("/person/:cpf/"+string(k), a.addItem(k))
	}
	r.DELETE("/person/:cpf/:kind/:id", a.deleteItem())
	r.GET("/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", OpenAPI) })
}

func (a *API) ctx(c *gin.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Request.Context(), a.timeout)
}

// writable answers 503 (and reports false) when changes are refused now.
func (a *API) writable(ctx context.Context, c *gin.Context) bool {
	if a.canWrite == nil {
		return true
	}
	if err := a.canWrite(ctx); err != nil {
		retry := time.Second
		var full *BacklogFullError
		if errors.As(err, &full) {
			retry = RetryAfter
		}
		service.WriteUnavailable(c, a.log, retry, err, err.Error()+"; nothing was written, retry later")
		return false
	}
	return true
}

func (a *API) body(c *gin.Context) ([]byte, bool) {
	b, err := service.ReadBody(c, MaxBody)
	switch {
	case errors.Is(err, service.ErrBodyTooLarge):
		service.WriteProblem(c, http.StatusRequestEntityTooLarge, "request body over 1 MiB")
		return nil, false
	case err != nil:
		service.WriteProblem(c, http.StatusBadRequest, "could not read request body")
		return nil, false
	}
	return b, true
}

func (a *API) cpf(c *gin.Context) (person.CPF, bool) {
	cpf, err := person.ParseCPF(c.Param("cpf"))
	if err != nil {
		// An impossible cpf names no person.
		service.WriteProblem(c, http.StatusNotFound, "person not found: cpf "+err.Error())
		return 0, false
	}
	return cpf, true
}

// fail maps a domain error to its status; anything unknown is the store or
// broker failing, which is a 503 and never a 500 for the client's input.
func (a *API) fail(c *gin.Context, err error) {
	var invalid *person.ValidationError
	var malformed *person.MalformedError
	switch {
	case errors.Is(err, errNoRoute):
		service.WriteProblem(c, http.StatusNotFound, errNoRoute.Error())
	case errors.As(err, &malformed):
		service.WriteProblem(c, http.StatusBadRequest, malformed.Error())
	case errors.As(err, &invalid):
		fields := make([]service.FieldError, len(invalid.Fields))
		for i, f := range invalid.Fields {
			fields[i] = service.FieldError{Field: f.Field, Reason: f.Reason}
		}
		service.WriteProblem(c, http.StatusUnprocessableEntity, "validation failed", fields...)
	case errors.Is(err, person.ErrNotFound):
		service.WriteProblem(c, http.StatusNotFound, "person not found")
	case errors.Is(err, person.ErrItemMissing):
		service.WriteProblem(c, http.StatusNotFound, "item not found")
	case errors.Is(err, person.ErrExists):
		service.WriteProblem(c, http.StatusConflict, "a person with this cpf already exists")
	case errors.Is(err, person.ErrOutcomeUnknown):
		service.Log(c.Request.Context(), a.log).Warn("write outcome unknown", zap.Error(err))
		c.Header("Write-Outcome", "unknown")
		service.WriteProblem(c, http.StatusServiceUnavailable,
			"storage did not confirm the write and it may have been applied; read the person (GET /person/{cpf}) before retrying")
	case c.Request.Context().Err() != nil:
		// The client went away while waiting for its turn: nothing was
		// written and nobody reads the answer.
		service.Log(c.Request.Context(), a.log).Debug("client went away", zap.Error(err))
		service.WriteProblem(c, http.StatusServiceUnavailable, "request cancelled, nothing was written")
	default:
		service.WriteUnavailable(c, a.log, time.Second, err, "storage unavailable, nothing was written; retry later")
	}
}

// change is one write: what it reads from the request, what it asks of the
// store and how it answers. handle runs the steps every write shares.
type change[In, Out any] struct {
	// cpf: the route has a :cpf parameter (an impossible one is a 404).
	cpf bool
	// body: the write reads a request body (at most MaxBody).
	body bool
	// parse validates the request; nil reads nothing more.
	parse func(c *gin.Context, body []byte) (In, error)
	store func(ctx context.Context, cpf person.CPF, in In) (Out, error)
	reply func(c *gin.Context, cpf person.CPF, in In, out Out)
}

// handle: the cpf, the body, parse, the writable check, the store, and the
// mapping of any error (fail).
func handle[In, Out any](a *API, ch change[In, Out]) gin.HandlerFunc {
	return func(c *gin.Context) {
		var cpf person.CPF
		var body []byte
		ok := true
		if ch.cpf {
			cpf, ok = a.cpf(c)
		}
		if ok && ch.body {
			body, ok = a.body(c)
		}
		if !ok {
			return
		}
		var in In
		if ch.parse != nil {
			var err error
			if in, err = ch.parse(c, body); err != nil {
				a.fail(c, err)
				return
			}
		}
		ctx, cancel := a.ctx(c)
		defer cancel()
		if !a.writable(ctx, c) {
			return
		}
		out, err := ch.store(ctx, cpf, in)
		if err != nil {
			a.fail(c, err)
			return
		}
		ch.reply(c, cpf, in, out)
	}
}

// errNoRoute: the path names no resource (e.g. an unknown item kind).
var errNoRoute = errors.New("no such resource")

func (a *API) createPerson() gin.HandlerFunc {
	return handle(a, change[person.NewPerson, int64]{body: true,
		parse: func(_ *gin.Context, b []byte) (person.NewPerson, error) { return person.ParseNewPerson(b) },
		store: func(ctx context.Context, _ person.CPF, p person.NewPerson) (int64, error) {
			return a.store.Create(ctx, p)
		},
		reply: func(c *gin.Context, _ person.CPF, p person.NewPerson, v int64) {
			c.Header("Location", "/person/"+p.CPF.String())
			c.JSON(http.StatusCreated, gin.H{"message": "created", "cpf": p.CPF, "version": v})
		}})
}

func (a *API) updatePerson() gin.HandlerFunc {
	return handle(a, change[person.Details, int64]{cpf: true, body: true,
		parse: func(_ *gin.Context, b []byte) (person.Details, error) { return person.ParseDetails(b) },
		store: a.store.Update,
		reply: func(c *gin.Context, cpf person.CPF, _ person.Details, v int64) {
			c.JSON(http.StatusOK, gin.H{"message": "updated", "cpf": cpf, "version": v})
		}})
}

func (a *API) deletePerson() gin.HandlerFunc {
	return handle(a, change[struct{}, int64]{cpf: true,
		store: func(ctx context.Context, cpf person.CPF, _ struct{}) (int64, error) { return a.store.Delete(ctx, cpf) },
		reply: func(c *gin.Context, _ person.CPF, _ struct{}, v int64) { deleted(c, v) }})
}

func (a *API) addItem(kind person.Kind) gin.HandlerFunc {
	return handle(a, change[person.NewItem, person.Item]{cpf: true, body: true,
		parse: func(_ *gin.Context, b []byte) (person.NewItem, error) { return person.ParseNewItem(kind, b) },
		store: func(ctx context.Context, cpf person.CPF, in person.NewItem) (person.Item, error) {
			return a.store.AddItem(ctx, cpf, kind, in)
		},
		reply: func(c *gin.Context, cpf person.CPF, _ person.NewItem, it person.Item) {
			c.Header("Location", "/person/"+cpf.String()+"/"+string(kind)+"/"+it.ID)
			c.JSON(http.StatusCreated, gin.H{"message": "created", "cpf": cpf, "id": it.ID, "version": it.Version})
		}})
}

// itemRef is the item a delete names in its path.
type itemRef struct {
	kind person.Kind
	id   string
}

func (a *API) deleteItem() gin.HandlerFunc {
	return handle(a, change[itemRef, int64]{cpf: true,
		parse: func(c *gin.Context, _ []byte) (itemRef, error) {
			kind, ok := person.ParseKind(c.Param("kind"))
			if !ok {
				return itemRef{}, errNoRoute
			}
			return itemRef{kind, c.Param("id")}, nil
		},
		store: func(ctx context.Context, cpf person.CPF, it itemRef) (int64, error) {
			return a.store.DeleteItem(ctx, cpf, it.kind, it.id)
		},
		reply: func(c *gin.Context, _ person.CPF, _ itemRef, v int64) { deleted(c, v) }})
}

// deleted answers a delete: 204 with the new version in X-Version.
func deleted(c *gin.Context, v int64) {
	c.Header("X-Version", itoa(v))
	c.Status(http.StatusNoContent)
}

type itemsView struct {
	Incomes []person.Item `json:"incomes"`
	Assets  []person.Item `json:"assets"`
	Debts   []person.Item `json:"debts"`
}

func (a *API) getPerson(c *gin.Context) {
	cpf, ok := a.cpf(c)
	if !ok {
		return
	}
	ctx, cancel := a.ctx(c)
	defer cancel()
	p, items, err := a.store.Get(ctx, cpf)
	if err != nil {
		a.fail(c, err)
		return
	}
	v := itemsView{Incomes: []person.Item{}, Assets: []person.Item{}, Debts: []person.Item{}}
	for _, it := range items {
		switch it.Kind {
		case person.Income:
			v.Incomes = append(v.Incomes, it)
		case person.Asset:
			v.Assets = append(v.Assets, it)
		case person.Debt:
			v.Debts = append(v.Debts, it)
		}
	}
	c.JSON(http.StatusOK, gin.H{"cpf": p.CPF, "name": p.Name, "address": p.Address, "date_of_birth": p.DateOfBirth,
		"version": p.Version, "score": p.Score, "incomes": v.Incomes, "assets": v.Assets, "debts": v.Debts})
}

func itoa(v int64) string { return person.CPF(v).String() }
