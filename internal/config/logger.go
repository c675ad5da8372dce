package config

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/logctx"
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
// standard log package used by asynq's queue-metrics collector) into the
// logger, so that every line of the process has LOG_FORMAT.
func NewProcessLogger(cfg Config, w io.Writer) (logger *slog.Logger, close func() error) {
	sink := logsink.New(w)
	logger = slog.New(logctx.Handler(logsink.Handler(newHandler(cfg, sink), sink, slog.LevelWarn)))
	redis.SetLogger(redisLogger{logger.With(slog.String("component", "redis"))})
	std := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	log.SetFlags(0)
	log.SetPrefix("")
	log.SetOutput(std.Writer())
	return logger, sink.Close
}

// redisLogger is go-redis's internal logger on slog, at warn level: it
// logs failures (dials, pool, pub/sub reconnects).
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.WarnContext(ctx, fmt.Sprintf(format, v...))
}

func newHandler(cfg Config, w io.Writer) slog.Handler {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == LogFormatJSON {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}
