package worker

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/invoicing/tenantworker/internal/pgreach"
)

// ErrDatabaseUnavailable wraps ErrTenantNotReady for a task whose attempt
// failed only because a PostgreSQL database (the catalog "main", or a
// tenant database) could not be reached at all: no connection could be
// made and no server answered (the host name did not resolve; the dial
// was refused, timed out or reset; the connection was closed or reset
// during the TLS handshake or the start-up, as by a proxy whose database
// is gone), or the server said it is shutting down or cannot take
// connections now (SQLSTATE class 57P), reported a connection exception
// (class 08), or refused a write as it takes none now (25006
// read_only_sql_transaction: a hot standby, as a primary demoted by a
// failover is, or a server set read-only; pgreach.Unavailable). The task
// is retried 15-30 s later
// (NotReadyDelayMin..Max) without counting as a failure, so a database
// outage longer than a task's retries' backoff does not archive it; on
// its last allowed attempt KeepLastAttempt keeps it. Errors met once a
// connection was made (a failing query, a constraint, a serialization
// failure or a deadlock, a connection dropped mid-query without a
// SQLSTATE), and answers of a reachable server
// to a misconfiguration (a refused authentication, a missing database or
// schema, TLS refused under sslmode=require, a certificate that does not
// verify) stay failures.
var ErrDatabaseUnavailable = fmt.Errorf("database unavailable: %w", ErrTenantNotReady)

// unavailableError is the error DatabaseUnavailable makes of an attempt's
// error: it names the database and wraps both ErrDatabaseUnavailable and
// the attempt's own error.
type unavailableError struct {
	db  string // "database x on host:port", or "" when unknown
	err error
}

func (e *unavailableError) Error() string {
	if pgreach.OutOfFiles(e.err) {
		// The process's descriptors, not the database, are what is
		// missing.
		db := e.db
		if db == "" {
			db = "the database"
		}
		return "process out of file descriptors to connect to " + db + ", retried later without counting as a failure: " + e.err.Error()
	}
	if e.db == "" {
		return "database unavailable, retried later without counting as a failure: " + e.err.Error()
	}
	return e.db + " unavailable, retried later without counting as a failure: " + e.err.Error()
}

func (e *unavailableError) Unwrap() []error { return []error{ErrDatabaseUnavailable, e.err} }

// DatabaseUnavailable turns the error of an attempt that failed only
// because a database could not be reached (databaseUnreachable) into a
// not-ready one wrapping ErrDatabaseUnavailable: counted as not_ready,
// logged at warn, retried later without using up a retry. It runs right
// outside ResolveTenant, so that both the tenant look-up's errors (the
// catalog on "main") and the handler's (after droppedIfDeleted) pass it,
// for tenant and system tasks alike, and inside KeepLastAttempt, which
// keeps such a task on its last attempt. An error that archives the task
// (asynq.SkipRetry), one already not ready, and that of an attempt whose
// ctx ended (asynq settles it itself) are returned as they are.
func DatabaseUnavailable() asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			err := next.ProcessTask(ctx, t)
			if err == nil || ctx.Err() != nil || IsPermanent(err) || errors.Is(err, ErrTenantNotReady) || errors.Is(err, asynq.RevokeTask) {
				return err
			}
			if db, ok := databaseUnreachable(err); ok {
				return &unavailableError{db: db, err: err}
			}
			return err
		})
	}
}

// databaseUnreachable reports whether err says that a PostgreSQL database
// could not be reached at all, and names it when the error does
// ("database x on host:port"). A server's answer decides when there is
// one: a SQLSTATE pgreach.Unavailable names (class 08, connection
// exception; class 57P, admin shutdown, crash shutdown, cannot connect
// now; 25006, a server that takes no writes now) is unreachable, any other
// (an authentication failure, an unknown database, a query error) is not.
// Without one, a connection that could not be made (pgconn.ConnectError)
// is unreachable when every attempt of it failed in the network before
// any server answered (pgreach.NoAnswer, the classification the start
// checks of a tenant database share): the host name did not resolve, the dial
// failed (refused, timed out, reset), or the connection was closed or
// reset during the TLS handshake or the start-up. A server that answered
// otherwise (it refused TLS under sslmode=require, a certificate that
// does not verify, a TLS alert) is reachable and misconfigured: a
// failure. A connection lost after it was made (no ConnectError) is a
// failure too: see P27 in docs/architecture.md.
func databaseUnreachable(err error) (string, bool) {
	var ce *pgconn.ConnectError
	db := ""
	if errors.As(err, &ce) && ce.Config != nil {
		db = fmt.Sprintf("database %s on %s", ce.Config.Database, net.JoinHostPort(ce.Config.Host, fmt.Sprint(ce.Config.Port)))
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return db, pgreach.Unavailable(pe.Code)
	}
	if ce == nil {
		return "", false
	}
	return db, pgreach.NoAnswer(ce.Unwrap())
}
