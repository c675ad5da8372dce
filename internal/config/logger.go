package config

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/logctx"
	"github.com/invoicing/tenantworker/internal/logrepeat"
	"github.com/invoicing/tenantworker/internal/logsink"
)

// NewLogger returns a logger writing text or JSON (LOG_FORMAT) to w at
// LOG_LEVEL, one synchronous Write per record. A record logged with a ctx
// that carries log attributes (logctx: a task's, on a worker) carries them
// too.
func NewLogger(cfg Config, w io.Writer) *slog.Logger {
	return slog.New(logctx.Handler(newHandler(cfg, w)))
}

// NewProcessLogger is NewLogger for a long-running process: records go to
// w through a logsink.Writer, so that under load many lines share one
// write, and records at warn or above are written before the logging call
// returns. Call close before the process exits: it writes what is pending.
// As with NewLogger, a record logged with a ctx that carries log attributes
// (logctx) carries them too.
//
// It also routes the libraries that log on their own (go-redis's pool, the
// standard log package, which libraries such as asynqmon use) into the
// logger, so that every line of the process has LOG_FORMAT; go-redis's
// lines, which it repeats at every failed dial while Redis is down, at most
// once a minute per kind (redisLogger).
func NewProcessLogger(cfg Config, w io.Writer) (logger *slog.Logger, close func() error) {
	sink := logsink.New(w)
	logger = slog.New(logctx.Handler(logsink.Handler(newHandler(cfg, sink), sink, slog.LevelWarn)))
	redis.SetLogger(newRedisLogger(logger, nil))
	std := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	log.SetFlags(0)
	log.SetPrefix("")
	log.SetOutput(std.Writer())
	return logger, sink.Close
}

// redisLogger is go-redis's internal logger on slog, at warn level: it
// logs failures (dials, pool, pub/sub reconnects). While Redis is down
// go-redis logs a failed dial at every dial (about three lines a second
// for a worker's clients), so each kind of line (its format and what it is
// about: redisLineKind) is written when it first comes and then at most
// once per redisRepeatEvery, saying how many like it were left out
// meanwhile (suppressed).
type redisLogger struct {
	l       *slog.Logger
	repeats *logrepeat.Limiter // by redisLineKind
}

// redisLineKind returns the kind of go-redis's line of format and v: the
// line with its errors and numbers (counts of attempts, connection ids)
// left out. go-redis puts what a line is about in its other arguments (the
// master a Sentinel failover went to, the sentinel that did not answer),
// so a failover to another master within the minute is written, while the
// failed dials of an outage, whatever their error and attempts, are alike.
func redisLineKind(format string, v []any) string {
	args := make([]any, len(v))
	for i, a := range v {
		switch a.(type) {
		case error:
			a = "(error)"
		case int, int32, int64, uint, uint32, uint64:
			a = 0
		}
		args[i] = a
	}
	return fmt.Sprintf(format, args...)
}

// redisRepeatEvery is how often at most redisLogger writes a line of one
// kind (redisLineKind).
const redisRepeatEvery = time.Minute

// newRedisLogger returns go-redis's logger writing to logger with
// component=redis, spacing its lines by the clock now (nil: time.Now).
func newRedisLogger(logger *slog.Logger, now func() time.Time) redisLogger {
	return redisLogger{l: logger.With(slog.String("component", "redis")), repeats: logrepeat.New(redisRepeatEvery, now)}
}

// Printf implements go-redis's logger.
func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	suppressed, ok := r.repeats.Allow(redisLineKind(format, v))
	if !ok {
		return
	}
	if suppressed > 0 {
		r.l.WarnContext(ctx, fmt.Sprintf(format, v...), slog.Int("suppressed", suppressed))
		return
	}
	r.l.WarnContext(ctx, fmt.Sprintf(format, v...))
}

func newHandler(cfg Config, w io.Writer) slog.Handler {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == LogFormatJSON {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}
