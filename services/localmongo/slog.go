package localmongo

import (
	"context"
	"log/slog"
	"runtime"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapHandler sends FerretDB's slog records to a zap logger, dropping records
// below min so FerretDB stays quiet unless debugging.
type zapHandler struct {
	l   *zap.Logger
	min slog.Level
}

func newSlogLogger(l *zap.Logger) *slog.Logger {
	// FerretDB logs every connection at info; only warnings and errors matter
	// unless the caller's logger is at debug level.
	minLevel := slog.LevelWarn
	if l.Core().Enabled(zapcore.DebugLevel) {
		minLevel = slog.LevelDebug
	}
	return slog.New(&zapHandler{l: l.Named("ferretdb"), min: minLevel})
}

func (h *zapHandler) Enabled(_ context.Context, lvl slog.Level) bool { return lvl >= h.min }

func (h *zapHandler) Handle(_ context.Context, r slog.Record) error {
	// FerretDB logs every command error reply (duplicate key, unknown
	// endSessions, ...) at warn with a multi-line dump. The client gets that
	// error anyway, so it is only interesting when debugging.
	if r.Level == slog.LevelWarn && strings.HasPrefix(r.Message, "Response ") {
		if h.min > slog.LevelDebug {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	ce := h.l.Check(zapLevel(r.Level), r.Message)
	if ce == nil {
		return nil
	}
	if r.PC != 0 { // point at FerretDB's code, not at this handler
		f, _ := runtime.CallersFrames([]uintptr{r.PC}).Next()
		ce.Caller = zapcore.NewEntryCaller(f.PC, f.File, f.Line, true)
	}
	fields := make([]zap.Field, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		fields = appendAttr(fields, a)
		return true
	})
	ce.Write(fields...)
	return nil
}

func (h *zapHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	fields := make([]zap.Field, 0, len(attrs))
	for _, a := range attrs {
		fields = appendAttr(fields, a)
	}
	return &zapHandler{l: h.l.With(fields...), min: h.min}
}

func (h *zapHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &zapHandler{l: h.l.With(zap.Namespace(name)), min: h.min}
}

// zapLevel maps slog levels to zap levels; FerretDB's custom levels above
// Error (DPanic, Panic) become Error so a log line never panics the process.
func zapLevel(l slog.Level) zapcore.Level {
	switch {
	case l < slog.LevelInfo:
		return zapcore.DebugLevel
	case l < slog.LevelWarn:
		return zapcore.InfoLevel
	case l < slog.LevelError:
		return zapcore.WarnLevel
	default:
		return zapcore.ErrorLevel
	}
}

func appendAttr(fields []zap.Field, a slog.Attr) []zap.Field {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		var sub []zap.Field
		for _, ga := range v.Group() {
			sub = appendAttr(sub, ga)
		}
		if a.Key == "" { // inline group
			return append(fields, sub...)
		}
		return append(fields, zap.Dict(a.Key, sub...))
	}
	if a.Key == "" {
		return fields
	}
	return append(fields, zap.Any(a.Key, v.Any()))
}
