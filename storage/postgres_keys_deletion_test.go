package storage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// holdFirstKeyCommitSQL makes the first API key inserted while a session
// holds advisory lock 2 wait at its commit (a deferred trigger, after the
// insert's foreign key check) until that session lets the lock go: a key
// whose issuance is in flight, as a slow commit leaves it. Keys inserted
// meanwhile by other transactions do not wait (advisory lock 1 is taken).
const holdFirstKeyCommitSQL = `
CREATE FUNCTION tenancy.test_hold_key_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF pg_try_advisory_xact_lock(1) THEN
		PERFORM pg_advisory_xact_lock(2);
	END IF;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER test_hold_key_commit AFTER INSERT ON tenancy.api_keys
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION tenancy.test_hold_key_commit()`

// connect opens a connection of the test's own on url, closed in
// t.Cleanup.
func connect(t *testing.T, ctx context.Context, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// waiting counts the sessions of the test's database waiting for a lock
// of kind wait (pg_stat_activity.wait_event: "advisory", "transactionid",
// "tuple") in a statement containing stmt.
func waiting(t *testing.T, ctx context.Context, conn *pgx.Conn, stmt string, wait ...string) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock'
		  AND wait_event = ANY($1) AND strpos(query, $2) > 0`, wait, stmt).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDeleteTenantWithKeyIssuedMeanwhileNeverDeadlocks: a key whose
// issuance is in flight when DeleteTenant starts, with a lower id than a
// key issued (and committed) after it, is flushed by a replica
// (RecordAPIKeyUse of both keys) while the delete waits for the tenant's
// row. Before the delete locked the tenant's row first, it had locked the
// second key already and its cascade then deleted the first one, which
// the flush held while waiting for the second: a deadlock (40P01). Now the
// delete waits for the issuance before it locks any key, and the flush
// and the delete both succeed; no key of the tenant is left.
func TestDeleteTenantWithKeyIssuedMeanwhileNeverDeadlocks(t *testing.T) {
	t.Parallel()
	url := testenv.Postgres(t)
	setup := newTestPool(t, url)
	ctx := testContext(t)
	if err := storage.MigrateCatalog(ctx, setup, nil); err != nil {
		t.Fatalf("MigrateCatalog: %v", err)
	}
	cat := storage.NewPostgres(setup)
	tn, err := cat.CreateTenant(ctx, tenantctx.Tenant{
		ID: tenantctx.NewID(), Slug: "leaving", Name: "Leaving", Status: tenantctx.StatusActive,
		Schema: tenantctx.SchemaForSlug("leaving"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cat.IssueAPIKey(ctx, tn.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Exec(ctx, holdFirstKeyCommitSQL); err != nil {
		t.Fatal(err)
	}
	// Each actor is a process of its own: issuers, the deleter (the
	// tenant's destroy), a flusher (an enqueue service's KeyUsage).
	c := flushCatalogs(t, url, 4)
	issuer1, issuer2, deleter, flusher := c[0], c[1], c[2], c[3]
	observer := connect(t, ctx, url)

	// Another issuance of the tenant's keys in flight all along (the
	// tenant's row share-locked, as an insert's foreign key check does),
	// which keeps the delete waiting until the test lets it end.
	other := connect(t, ctx, url)
	otherTx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = otherTx.Rollback(context.Background()) }()
	if _, err := otherTx.Exec(ctx, `SELECT 1 FROM tenancy.tenants WHERE id = $1 FOR KEY SHARE`, tn.ID); err != nil {
		t.Fatal(err)
	}

	// The first key's issuance waits at its commit.
	gate := connect(t, ctx, url)
	if _, err := gate.Exec(ctx, `SELECT pg_advisory_lock(2)`); err != nil {
		t.Fatal(err)
	}
	type issued struct {
		key storage.APIKey
		raw string
		err error
	}
	first := make(chan issued, 1)
	go func() {
		k, raw, err := issuer1.IssueAPIKey(ctx, tn.ID)
		first <- issued{k, raw, err}
	}()
	testenv.WaitFor(t, time.Minute, "the first key's commit to wait", func() bool {
		return waiting(t, ctx, observer, "api_keys", "advisory") == 1
	})
	// A second key is issued and committed meanwhile: its id is larger.
	k2, raw2, err := issuer2.IssueAPIKey(ctx, tn.ID)
	if err != nil {
		t.Fatalf("IssueAPIKey while another issuance is in flight: %v", err)
	}

	deleted := make(chan error, 1)
	go func() { deleted <- deleter.DeleteTenant(ctx, tn.ID) }()
	testenv.WaitFor(t, time.Minute, "the delete to wait for the tenant's row", func() bool {
		return waiting(t, ctx, observer, "tenancy.tenants", "transactionid", "tuple") == 1
	})

	// The first issuance commits; the delete still waits for the other.
	if _, err := gate.Exec(ctx, `SELECT pg_advisory_unlock(2)`); err != nil {
		t.Fatal(err)
	}
	r1 := <-first
	if r1.err != nil {
		t.Fatalf("the first IssueAPIKey: %v", r1.err)
	}
	if r1.key.ID >= k2.ID {
		t.Fatalf("key ids %d (first) and %d (second): the set-up needs the first smaller", r1.key.ID, k2.ID)
	}

	// A replica flushes the use of both new keys.
	at := time.Now().UTC().Truncate(time.Microsecond)
	flushed := make(chan error, 1)
	go func() {
		flushed <- flusher.RecordAPIKeyUse(ctx, map[string]time.Time{
			storage.HashAPIKey(r1.raw): at, storage.HashAPIKey(raw2): at,
		})
	}()
	var flushErr error
	flushDone := false
	testenv.WaitFor(t, time.Minute, "the flush to finish or wait for a key", func() bool {
		select {
		case flushErr = <-flushed:
			flushDone = true
			return true
		default:
		}
		return waiting(t, ctx, observer, "last_used_at", "transactionid", "tuple") == 1
	})

	// The other issuance ends; the delete goes on.
	if err := otherTx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if !flushDone {
		flushErr = <-flushed
	}
	deleteErr := <-deleted
	for what, err := range map[string]error{"RecordAPIKeyUse": flushErr, "DeleteTenant": deleteErr} {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "40P01" {
			t.Errorf("%s deadlocked with the other: %v", what, err)
		} else if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	var left int
	if err := setup.QueryRow(ctx, `SELECT count(*) FROM tenancy.api_keys WHERE tenant_id = $1`, tn.ID).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if deleteErr == nil && left != 0 {
		t.Errorf("tenant deleted, %d of its keys left", left)
	}
}

// TestIssueAPIKeyWaitsForADeletionRequest: an API key asked for while the
// tenant's deletion request (its status set to deleting) is being saved
// waits for it, and is then refused with ErrTenantDeleting: no key is
// issued to a tenant whose deletion was requested, however the two
// interleave. Before, the insert's foreign key check did not wait for the
// status change, and the key was made for a tenant being deleted.
func TestIssueAPIKeyWaitsForADeletionRequest(t *testing.T) {
	t.Parallel()
	url := testenv.Postgres(t)
	setup := newTestPool(t, url)
	ctx := testContext(t)
	if err := storage.MigrateCatalog(ctx, setup, nil); err != nil {
		t.Fatalf("MigrateCatalog: %v", err)
	}
	cat := storage.NewPostgres(setup)
	tn, err := cat.CreateTenant(ctx, tenantctx.Tenant{
		ID: tenantctx.NewID(), Slug: "requested", Name: "Requested", Status: tenantctx.StatusActive,
		Schema: tenantctx.SchemaForSlug("requested"),
	})
	if err != nil {
		t.Fatal(err)
	}
	observer := connect(t, ctx, url)
	// The deletion request, saved by a transaction that has not committed
	// yet (as SetStatus's statement, slow to commit).
	request := connect(t, ctx, url)
	tx, err := request.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, `UPDATE tenancy.tenants SET status = 'deleting', updated_at = now() WHERE id = $1`, tn.ID); err != nil {
		t.Fatal(err)
	}

	issuer := flushCatalogs(t, url, 1)[0]
	issued := make(chan error, 1)
	go func() {
		_, _, err := issuer.IssueAPIKey(ctx, tn.ID)
		issued <- err
	}()
	var issueErr error
	done := false
	testenv.WaitFor(t, time.Minute, "the issuance to wait for the deletion request or finish", func() bool {
		select {
		case issueErr = <-issued:
			done = true
			return true
		default:
		}
		return waiting(t, ctx, observer, "tenancy.tenants", "transactionid", "tuple") == 1
	})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if !done {
		issueErr = <-issued
	}
	if !errors.Is(issueErr, storage.ErrTenantDeleting) {
		t.Errorf("IssueAPIKey racing the deletion request = %v, want ErrTenantDeleting", issueErr)
	}
	keys, err := cat.ListAPIKeys(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("keys of the tenant whose deletion was requested: %+v, want none", keys)
	}
}
