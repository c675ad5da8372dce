package tasks

import (
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/storage"
)

// Handlers holds what the task handlers need. Build one at start-up and
// register it with NewServeMux.
type Handlers struct {
	// Pool is the application pool (empty search_path; see package schema).
	Pool *pgxpool.Pool
	// MigrationsPool runs schema changes; nil means Pool. It may be a direct
	// connection when Pool goes through PgBouncer.
	MigrationsPool *pgxpool.Pool
	// Catalog is the (cached) tenant catalog.
	Catalog storage.Catalog
	// Documents stores rendered PDFs.
	Documents storage.DocumentStore
	// Mailer sends reminders.
	Mailer mailer.Mailer
	// Enqueuer enqueues follow-up tasks (sweep fan-out, reminders).
	Enqueuer *Enqueuer
	// Logger receives handler logs; nil means slog.Default().
	Logger *slog.Logger
	// MailFrom is the From address of reminders.
	MailFrom string
	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time
}
