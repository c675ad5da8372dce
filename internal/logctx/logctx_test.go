package logctx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/logctx"
)

// fixedTime drops the time, so that two handlers' lines compare equal.
func fixedTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Time(slog.TimeKey, time.Time{})
	}
	return a
}

func jsonLogger(buf *bytes.Buffer) *slog.Logger {
	return slog.New(logctx.Handler(slog.NewJSONHandler(buf, &slog.HandlerOptions{ReplaceAttr: fixedTime})))
}

// TestHandlerLeavesLinesWithoutAttrsAlone: a line logged with a ctx that
// carries nothing (the enqueue service's, the CLI's) is written exactly as
// the wrapped handler writes it.
func TestHandlerLeavesLinesWithoutAttrsAlone(t *testing.T) {
	t.Parallel()
	var plain, wrapped bytes.Buffer
	base := slog.New(slog.NewJSONHandler(&plain, &slog.HandlerOptions{ReplaceAttr: fixedTime}))
	for _, l := range []*slog.Logger{base, jsonLogger(&wrapped)} {
		l.With(slog.String("component", "tenant_cache")).WarnContext(context.Background(), "tenant cache: redis read failed", slog.String("key", "id:tn_x"))
		l.Info("no context", slog.Int("n", 1))
	}
	if plain.String() != wrapped.String() {
		t.Fatalf("without attributes in ctx the lines changed:\n%s\nwant\n%s", wrapped.String(), plain.String())
	}
}

// TestHandlerAddsCtxAttrsOnce: a record logged with a ctx carrying a
// task's attributes carries them first, once: a key the logger (With) or
// the record names already keeps that value.
func TestHandlerAddsCtxAttrsOnce(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger := jsonLogger(&buf)
	ctx := logctx.With(context.Background(), slog.String("task_id", "t1"), slog.String("task_type", "tenant:destroy"))
	ctx = logctx.With(ctx, slog.String("tenant_id", "tn_a"))

	logger.WarnContext(ctx, "component line", slog.String("error", "boom"))
	logger.With(slog.String("task_id", "t1"), slog.String("task_type", "tenant:destroy")).InfoContext(ctx, "task logger line")
	logger.LogAttrs(ctx, slog.LevelWarn, "about another task", slog.String("task_id", "t2"), slog.String("task_type", "invoice:reminder"))
	slog.New(logctx.Handler(logger.Handler())).WarnContext(ctx, "wrapped twice")
	logger.WithGroup("g").InfoContext(ctx, "grouped", slog.Int("n", 1))

	want := []string{
		`{"time":"0001-01-01T00:00:00Z","level":"WARN","msg":"component line","task_id":"t1","task_type":"tenant:destroy","tenant_id":"tn_a","error":"boom"}`,
		`{"time":"0001-01-01T00:00:00Z","level":"INFO","msg":"task logger line","task_id":"t1","task_type":"tenant:destroy","tenant_id":"tn_a"}`,
		`{"time":"0001-01-01T00:00:00Z","level":"WARN","msg":"about another task","tenant_id":"tn_a","task_id":"t2","task_type":"invoice:reminder"}`,
		`{"time":"0001-01-01T00:00:00Z","level":"WARN","msg":"wrapped twice","task_id":"t1","task_type":"tenant:destroy","tenant_id":"tn_a"}`,
		`{"time":"0001-01-01T00:00:00Z","level":"INFO","msg":"grouped","g":{"task_id":"t1","task_type":"tenant:destroy","tenant_id":"tn_a","n":1}}`,
	}
	got := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(got), len(want), buf.String())
	}
	for i := range want {
		if !json.Valid([]byte(got[i])) || got[i] != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	if logctx.Attrs(context.Background()) != nil {
		t.Error("a bare context carries attributes")
	}
}
