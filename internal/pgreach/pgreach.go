// Package pgreach tells a PostgreSQL database that could not be reached
// from one whose server answered a connection with a refusal: the one
// classification of a failed connect that the worker's breakers
// (internal/worker: an outage waits, a misconfiguration fails) and the
// checks of a tenant database's URL (internal/placement: an outage is a
// warning at start, a misconfiguration stops it) share; and which answers
// of a server that was reached say it cannot serve now (Unavailable: shut
// down, starting, read-only), the worker's waits and the enqueue
// service's 503s alike. See P27 and I33 in docs/architecture.md.
package pgreach

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// NoAnswer reports whether err, the cause of a failed connect (a
// pgconn.ConnectError's Unwrap), is a network failure met before any
// server answered: a name resolution failure, a dial, read or write error
// (refused, reset, timed out), the connection closed (EOF) during the TLS
// handshake or the start-up, or the connect's own deadline
// (connect_timeout). Of several attempts (pgconn joins them: hosts,
// addresses, sslmode=prefer's TLS and plain tries) every one must be such
// a failure. A server that answered otherwise is reachable and
// misconfigured: TLS refused under sslmode=require ("server refused TLS
// connection"), a TLS alert or a certificate that does not verify, as is
// any error NoAnswer does not know.
func NoAnswer(err error) bool {
	if err == nil {
		return false
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs := joined.Unwrap()
		for _, e := range errs {
			if !NoAnswer(e) {
				return false
			}
		}
		return len(errs) > 0
	}
	var (
		alert     tls.AlertError
		recordErr tls.RecordHeaderError
		certErr   *tls.CertificateVerificationError
		authErr   x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	if errors.As(err, &alert) || errors.As(err, &recordErr) || errors.As(err, &certErr) ||
		errors.As(err, &authErr) || errors.As(err, &hostErr) || errors.As(err, &invalid) {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		// crypto/tls reports alerts as "remote error" / "local error".
		return oe.Op == "dial" || oe.Op == "read" || oe.Op == "write"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	// connect_timeout: pgconn reports the connect's own deadline as a
	// timeout (a caller's ctx ending is the caller's to tell apart).
	if pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if next := errors.Unwrap(err); next != nil {
		return NoAnswer(next)
	}
	return false
}

// OutOfFiles reports whether err says that a connection could not be
// made because this process (EMFILE, "too many open files") or the system
// (ENFILE) has no file descriptor left: the dial failed before reaching
// the network. NoAnswer counts it as an unreachable database (its tasks
// wait, as they can run once descriptors are free again), but the cause
// is the process's, not the database's, and the lines that report it say
// so.
func OutOfFiles(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// ReadOnlySQLTransaction is SQLSTATE 25006 (read_only_sql_transaction):
// the server refused a write because it takes none now.
const ReadOnlySQLTransaction = "25006"

// ReadOnly reports whether err is, or wraps, a PostgreSQL error of
// SQLSTATE 25006 (ReadOnlySQLTransaction): the server answered but takes
// no writes now.
func ReadOnly(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == ReadOnlySQLTransaction
}

// Unavailable reports whether code, a SQLSTATE a PostgreSQL server
// answered, says the server cannot serve the unit of work now for a reason
// of its own that a restart or a failover ends, not the unit's: class 08
// (connection exception), class 57P (admin shutdown, crash shutdown,
// cannot connect now: starting up, shutting down or in recovery) and
// 25006 read_only_sql_transaction (it takes no writes: a hot standby, as a
// primary demoted by a failover is, or a cached DNS name still leads to,
// or a server set read-only with default_transaction_read_only). The same
// unit succeeds once the server, or its successor, is back. It is the one
// classification of a server's answer that the worker (a wait that does
// not count as a failure, its database's breaker open) and the enqueue
// service (503 with Retry-After) share.
func Unavailable(code string) bool {
	return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "57P") || code == ReadOnlySQLTransaction
}

// Conflict reports whether code, a SQLSTATE a PostgreSQL server answered,
// says it rolled the transaction back to resolve a conflict with another
// one: 40001 serialization_failure (under REPEATABLE READ or SERIALIZABLE,
// as a database's default_transaction_isolation may make every
// transaction) or 40P01 deadlock_detected. Nothing of the transaction was
// kept, and the same work run again can commit: the enqueue service
// answers 503 with Retry-After, and the worker retries the task as after
// any failure (counted: a conflict that never ends is a bug to see).
func Conflict(code string) bool { return code == "40001" || code == "40P01" }
