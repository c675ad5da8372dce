package config

import (
	"io"
	"log/slog"

	"github.com/invoicing/tenantworker/internal/logsink"
)

// NewLogger returns a logger writing text or JSON (LOG_FORMAT) to w at
// LOG_LEVEL, one synchronous Write per record.
func NewLogger(cfg Config, w io.Writer) *slog.Logger {
	return slog.New(newHandler(cfg, w))
}

// NewProcessLogger is NewLogger for a long-running process: records go to
// w through a logsink.Writer, so that under load many lines share one
// write, and records at warn or above are written before the logging call
// returns. Call close before the process exits: it writes what is pending.
func NewProcessLogger(cfg Config, w io.Writer) (logger *slog.Logger, close func() error) {
	sink := logsink.New(w)
	return slog.New(logsink.Handler(newHandler(cfg, sink), sink, slog.LevelWarn)), sink.Close
}

func newHandler(cfg Config, w io.Writer) slog.Handler {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == LogFormatJSON {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}
