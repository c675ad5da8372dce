package config

import (
	"io"
	"log/slog"
)

// NewLogger returns the process logger: text or JSON (LOG_FORMAT) on w at
// LOG_LEVEL.
func NewLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == LogFormatJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
