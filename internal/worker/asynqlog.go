package worker

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/hibiken/asynq"
)

// AsynqLogger adapts an slog.Logger to asynq.Logger, so asynq's own
// messages (server start, shutdown, Redis errors) go to the same log with
// component=asynq.
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
		l.logger.Log(ctx, level, fmt.Sprint(args...))
	}
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
