package worker

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/logrepeat"
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
//
// While Redis is down, asynq's server logs the same few warnings and errors
// over and over: its forwarder every DelayedTaskCheckInterval (a second),
// its processor's dequeue every 3 s, its heartbeat every 5 s, its janitor
// and recoverer per queue. A warning or error that names no task is
// therefore written when it first comes and then at most once per
// asynqRepeatEvery, the line saying how many like it were left out
// meanwhile (suppressed); lines are alike when their text before the error
// is (repeatKey). Lines about a task, lines below warn and Fatal's are
// always written.
type AsynqLogger struct {
	logger  *slog.Logger
	exit    func(int)
	repeats *logrepeat.Limiter // by repeatKey
}

var _ asynq.Logger = (*AsynqLogger)(nil)

// asynqRepeatEvery is how often at most AsynqLogger writes one of asynq's
// warnings or errors that names no task.
const asynqRepeatEvery = time.Minute

// NewAsynqLogger returns an asynq.Logger writing to logger (nil means
// slog.Default()).
func NewAsynqLogger(logger *slog.Logger) *AsynqLogger {
	if logger == nil {
		logger = slog.Default()
	}
	return &AsynqLogger{logger: logger.With(slog.String("component", "asynq")), exit: os.Exit,
		repeats: logrepeat.New(asynqRepeatEvery, nil)}
}

// log writes args as one line at level; limit says that a warning or
// error naming no task is spaced by asynqRepeatEvery (all but Fatal's).
func (l *AsynqLogger) log(level slog.Level, args []any, limit bool) {
	ctx := context.Background()
	if !l.logger.Enabled(ctx, level) {
		return
	}
	msg := fmt.Sprint(args...)
	attrs := taskAttrsOf(msg)
	if limit && level >= slog.LevelWarn && attrs == nil {
		suppressed, ok := l.repeats.Allow(repeatKey(msg))
		if !ok {
			return
		}
		if suppressed > 0 {
			attrs = []slog.Attr{slog.Int("suppressed", suppressed)}
		}
	}
	l.logger.LogAttrs(ctx, level, msg, attrs...)
}

// repeatKey returns the kind of asynq's line msg: its text before the
// ": " where asynq puts the error, that is before the first ": ", or the
// second when the first follows one word, the component some of asynq's
// lines begin with ("recoverer: could not list lease expired tasks: ...",
// "asynq: internal error: ..."). Keyed by that word alone, the
// recoverer's failed listing while Redis is down would hide its failure to
// retry or archive a task, and its line about one queue another's.
func repeatKey(msg string) string {
	key, rest, found := strings.Cut(msg, ": ")
	if found && !strings.ContainsAny(key, " \t\n") {
		kind, _, _ := strings.Cut(rest, ": ")
		key += ": " + kind
	}
	return key
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
func (l *AsynqLogger) Debug(args ...any) { l.log(slog.LevelDebug, args, true) }

// Info implements asynq.Logger.
func (l *AsynqLogger) Info(args ...any) { l.log(slog.LevelInfo, args, true) }

// Warn implements asynq.Logger.
func (l *AsynqLogger) Warn(args ...any) { l.log(slog.LevelWarn, args, true) }

// Error implements asynq.Logger.
func (l *AsynqLogger) Error(args ...any) { l.log(slog.LevelError, args, true) }

// Fatal implements asynq.Logger: it logs at error level and exits with
// status 1, as asynq's contract for Fatal requires.
func (l *AsynqLogger) Fatal(args ...any) {
	l.log(slog.LevelError, args, false)
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
