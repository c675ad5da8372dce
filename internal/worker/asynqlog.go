package worker

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/tasks"
)

// AsynqLogger adapts an slog.Logger to asynq.Logger, so asynq's own
// messages (server start, shutdown, Redis errors) go to the same log with
// component=asynq. A message about a task ("Retry exhausted for task
// id=...", "revoke task id=..." for a parked task, "Pushed task id=...
// back to queue" at shutdown, the heartbeat's "Lease reset failed for
// ..." of a running task whose lease expired) carries its task_id, and the
// task_type and tenant_id its id names (tasks.ParseID), as the task's own
// lines do.
type AsynqLogger struct {
	logger *slog.Logger
	exit   func(int)
}

var _ asynq.Logger = (*AsynqLogger)(nil)

// NewAsynqLogger returns an asynq.Logger writing to logger (nil means
// slog.Default()).
func NewAsynqLogger(logger *slog.Logger) *AsynqLogger {
	if logger == nil {
		logger = slog.Default()
	}
	return &AsynqLogger{logger: logger.With(slog.String("component", "asynq")), exit: os.Exit}
}

func (l *AsynqLogger) log(level slog.Level, args []any) {
	ctx := context.Background()
	if l.logger.Enabled(ctx, level) {
		msg := fmt.Sprint(args...)
		l.logger.LogAttrs(ctx, level, msg, taskAttrsOf(msg)...)
	}
}

// taskIDMarkers precede a task id in asynq's messages about a task: most
// say "task id=", the heartbeat's warning about a running task whose lease
// it could not extend says "Lease reset failed for <id>; lease deadline:
// ..." (asynq v0.26).
var taskIDMarkers = []string{"task id=", "Lease reset failed for "}

// taskAttrsOf returns the attributes of the task msg names after one of
// taskIDMarkers: its task_id, and the task_type and tenant_id (none for a
// system task) its id names; nil when msg names no task.
func taskAttrsOf(msg string) []slog.Attr {
	var id string
	found := false
	for _, m := range taskIDMarkers {
		if _, id, found = strings.Cut(msg, m); found {
			break
		}
	}
	if !found {
		return nil
	}
	if j := strings.IndexAny(id, " \t\n,;"); j >= 0 {
		id = id[:j]
	}
	if id == "" {
		return nil
	}
	attrs := []slog.Attr{slog.String("task_id", id)}
	if typ, tenantID, ok := tasks.ParseID(id); ok {
		attrs = append(attrs, slog.String("task_type", typ))
		if tenantID != "" {
			attrs = append(attrs, slog.String("tenant_id", tenantID))
		}
	}
	return attrs
}

// Debug implements asynq.Logger.
func (l *AsynqLogger) Debug(args ...any) { l.log(slog.LevelDebug, args) }

// Info implements asynq.Logger.
func (l *AsynqLogger) Info(args ...any) { l.log(slog.LevelInfo, args) }

// Warn implements asynq.Logger.
func (l *AsynqLogger) Warn(args ...any) { l.log(slog.LevelWarn, args) }

// Error implements asynq.Logger.
func (l *AsynqLogger) Error(args ...any) { l.log(slog.LevelError, args) }

// Fatal implements asynq.Logger: it logs at error level and exits with
// status 1, as asynq's contract for Fatal requires.
func (l *AsynqLogger) Fatal(args ...any) {
	l.log(slog.LevelError, args)
	l.exit(1)
}

// asynqLogLevel returns the asynq log level matching what logger emits, so
// asynq does not format debug messages nobody reads.
func asynqLogLevel(logger *slog.Logger) asynq.LogLevel {
	if logger.Enabled(context.Background(), slog.LevelDebug) {
		return asynq.DebugLevel
	}
	return asynq.InfoLevel
}
