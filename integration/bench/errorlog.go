package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// errorLog is a slog.Handler that keeps the first few warnings and errors
// (of asynq and the task error handler) and counts all of them.
type errorLog struct {
	mu    sync.Mutex
	n     int
	first []string
}

var _ slog.Handler = (*errorLog)(nil)

// Enabled implements slog.Handler: warnings and errors only.
func (e *errorLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

// Handle implements slog.Handler.
func (e *errorLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if len(e.first) < 3 {
		e.first = append(e.first, b.String())
	}
	return nil
}

// WithAttrs implements slog.Handler (attributes are dropped).
func (e *errorLog) WithAttrs([]slog.Attr) slog.Handler { return e }

// WithGroup implements slog.Handler.
func (e *errorLog) WithGroup(string) slog.Handler { return e }

// summary returns "" or the count and the first records.
func (e *errorLog) summary() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == 0 {
		return ""
	}
	return fmt.Sprintf("%d warnings/errors, first: %s", e.n, strings.Join(e.first, " | "))
}
