package worker_test

import (
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// handlerEnv is a real PostgreSQL database (catalog + tenant schemas), a
// real Redis, a document store in a temporary directory, the Handlers
// wired to them, and a workertest.Worker running payloads through the
// production chain in front of those handlers.
type handlerEnv struct {
	ctx       context.Context
	pool      *pgxpool.Pool
	catalog   *storage.Postgres
	docs      *storage.FS
	redis     asynq.RedisClientOpt
	enqueuer  *tasks.Enqueuer
	inspector *asynq.Inspector
	h         *worker.Handlers
	w         *workertest.Worker
	clock     atomic.Pointer[time.Time] // the handlers' now when set (setToday)
}

// setToday makes the handlers' clock read noon UTC of day (YYYY-MM-DD),
// as if the tasks ran that day.
func (e *handlerEnv) setToday(t *testing.T, day string) {
	t.Helper()
	d, err := time.Parse(time.DateOnly, day)
	if err != nil {
		t.Fatal(err)
	}
	noon := d.Add(12 * time.Hour)
	e.clock.Store(&noon)
}

// now is the handlers' clock: the day setToday set, or time.Now.
func (e *handlerEnv) now() time.Time {
	if c := e.clock.Load(); c != nil {
		return *c
	}
	return time.Now()
}

// testMailFrom is the From address of reminders in tests.
const testMailFrom = "Billing <billing@invoices.example>"

// newHandlerEnv sets up a handlerEnv whose Handlers send mail through m,
// on a database whose default TimeZone is handlerEnvDatabaseZone.
func newHandlerEnv(t *testing.T, m mailer.Mailer) *handlerEnv {
	t.Helper()
	dbURL := testenv.Postgres(t)
	setDatabaseTimeZone(t, dbURL, handlerEnvDatabaseZone)
	return newHandlerEnvOn(t, m, dbURL)
}

// handlerEnvDatabaseZone is the default TimeZone of newHandlerEnv's
// databases: far east of UTC (+14), so that neither the handlers nor a
// test's fixture judge or store a date in the session's zone unnoticed.
// Left to the server's default, it is the zone of the host the tests run
// on (initdb takes it): fixtures that stored a bare date as a due date
// passed in UTC and failed east of it, with the due date a day early.
const handlerEnvDatabaseZone = "Pacific/Kiritimati"

// setDatabaseTimeZone sets the default TimeZone of the database of dbURL
// (ALTER DATABASE ... SET timezone), for the sessions that connect after.
func setDatabaseTimeZone(t *testing.T, dbURL, zone string) {
	t.Helper()
	ctx := testContext(t)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var alter string
	if err := conn.QueryRow(ctx, `SELECT format('ALTER DATABASE %I SET timezone = %L', current_database(), $1::text)`, zone).Scan(&alter); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, alter); err != nil {
		t.Fatalf("set the database's time zone to %s: %v", zone, err)
	}
}

// newHandlerEnvSetting is newHandlerEnv on a fresh database whose
// sessions all begin with the run-time parameter param set to value, as an
// operator's ALTER DATABASE or role setting would have them: the
// parameter travels in the connection URL, which every connection of the
// pool, the Handlers' included, is opened with.
func newHandlerEnvSetting(t *testing.T, m mailer.Mailer, param, value string) *handlerEnv {
	t.Helper()
	u, err := url.Parse(testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(param, value)
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20") // pgx reads + as itself
	return newHandlerEnvOn(t, m, u.String())
}

// newHandlerEnvOn is newHandlerEnv on the database of dbURL (a dedicated
// server a fault test stops and starts).
func newHandlerEnvOn(t *testing.T, m mailer.Mailer, dbURL string) *handlerEnv {
	t.Helper()
	ctx := testContext(t)
	pool, err := schema.NewPool(ctx, dbURL, schema.PoolOptions{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := storage.MigrateCatalog(ctx, pool, nil); err != nil {
		t.Fatal(err)
	}
	catalog := storage.NewPostgres(pool)
	docs, err := storage.NewFS(filepath.Join(t.TempDir(), "documents"))
	if err != nil {
		t.Fatal(err)
	}
	redis := newRedis(t)
	enq, insp := newTestEnqueuer(t, redis)
	e := &handlerEnv{ctx: ctx, pool: pool, catalog: catalog, docs: docs, redis: redis, enqueuer: enq, inspector: insp}
	e.h = &worker.Handlers{
		Pool:      pool,
		Catalog:   catalog,
		Documents: docs,
		Mailer:    m,
		Enqueuer:  enq,
		Tenancy:   tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enq, Documents: docs, SchemaPool: pool}),
		MailFrom:  testMailFrom,
		Now:       e.now,
	}
	e.w = workertest.New(e.h, worker.MuxOptions{Logger: discardLogger()})
	return e
}

// work runs p through the production chain, as a worker would.
func (e *handlerEnv) work(p tasks.Payload) error { return e.w.Work(e.ctx, p) }

// provision creates an active tenant with a migrated schema, as
// provisioning does in production.
func (e *handlerEnv) provision(t *testing.T, slug, name string) tenantctx.Tenant {
	t.Helper()
	tn := e.provisionAs(t, slug, name)
	tn, err := e.catalog.SetStatus(e.ctx, tn.ID, tenantctx.StatusActive)
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

// provisionAs creates a tenant with a migrated schema that stays
// provisioning.
func (e *handlerEnv) provisionAs(t *testing.T, slug, name string) tenantctx.Tenant {
	t.Helper()
	tn, err := tenantctx.New(slug, "", "pro")
	if err != nil {
		t.Fatal(err)
	}
	// The name as the catalog may hold it, checked or not (rows written
	// before names were checked, or by another system): handlers must
	// cope with anything in it.
	tn.Name = name
	if tn, err = e.catalog.CreateTenant(e.ctx, tn); err != nil {
		t.Fatal(err)
	}
	if _, err := schema.Migrate(e.ctx, e.pool, tn.Schema, 0); err != nil {
		t.Fatal(err)
	}
	return tn
}

// tenantCtx returns the test's ctx carrying tn, for the tests that call a
// handler past the chain on purpose.
func (e *handlerEnv) tenantCtx(tn tenantctx.Tenant) context.Context {
	return tenantctx.WithTenant(e.ctx, tn)
}

// inTenant runs fn in a transaction pinned to tn's schema.
func (e *handlerEnv) inTenant(t *testing.T, tn tenantctx.Tenant, fn func(ctx context.Context, tx pgx.Tx) error) {
	t.Helper()
	if err := schema.InTenant(e.tenantCtx(tn), e.pool, fn); err != nil {
		t.Fatalf("tenant %s: %v", tn.Slug, err)
	}
}

// line is an invoice line; money as exact decimal strings.
func line(desc, qty, price string) invoice.Line {
	return invoice.Line{Description: desc, Quantity: decimal.RequireFromString(qty), UnitPrice: decimal.RequireFromString(price)}
}

// addInvoice inserts inv, billed to a new customer c, into tn's schema
// with the one fixture builder, and returns the invoice id.
func (e *handlerEnv) addInvoice(t *testing.T, tn tenantctx.Tenant, c invoice.Customer, inv invoice.New) int64 {
	t.Helper()
	inv.Customer = c
	var ids []int64
	e.inTenant(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		ids, err = invoice.Create(ctx, tx, inv)
		return err
	})
	return ids[0]
}

// invoiceStatus returns the status of invoice id in tn's schema.
func (e *handlerEnv) invoiceStatus(t *testing.T, tn tenantctx.Tenant, id int64) string {
	t.Helper()
	var inv invoice.Invoice
	e.inTenant(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		inv, err = invoice.Load(ctx, tx, id)
		return err
	})
	return inv.Status
}

// documentRow returns the invoice_documents row of invoice id, and whether
// there is one.
func (e *handlerEnv) documentRow(t *testing.T, tn tenantctx.Tenant, id int64) (invoice.Document, bool) {
	t.Helper()
	var d invoice.Document
	found := true
	e.inTenant(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		d, err = invoice.LoadDocument(ctx, tx, id)
		if errors.Is(err, invoice.ErrNoDocument) {
			found = false
			return nil
		}
		return err
	})
	return d, found
}

// reminderRow is an invoice_reminders row.
type reminderRow struct {
	Day       string
	Recipient string
	Status    string
	SentAt    *time.Time
}

// reminderRows returns the invoice_reminders rows of invoice id.
func (e *handlerEnv) reminderRows(t *testing.T, tn tenantctx.Tenant, id int64) []reminderRow {
	t.Helper()
	var out []reminderRow
	e.inTenant(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx,
			`SELECT sent_on::text, recipient, status, sent_at FROM invoice_reminders WHERE invoice_id = $1 ORDER BY sent_on`, id)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowToStructByPos[reminderRow])
		return err
	})
	return out
}

// readDocument returns a stored document's bytes.
func (e *handlerEnv) readDocument(t *testing.T, tn tenantctx.Tenant, key string) []byte {
	t.Helper()
	rc, _, err := e.docs.Open(e.ctx, tn.ID, key)
	if err != nil {
		t.Fatalf("open document %s of %s: %v", key, tn.Slug, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read document %s of %s: %v", key, tn.Slug, err)
	}
	return data
}

// pdfToText extracts the text of a PDF with pdftotext -layout.
func pdfToText(t *testing.T, doc []byte) string {
	t.Helper()
	bin, err := exec.LookPath("pdftotext")
	if err != nil {
		t.Fatalf("pdftotext not found (install poppler-utils: apt-get install poppler-utils): %v", err)
	}
	path := filepath.Join(t.TempDir(), "doc.pdf")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-layout", "-enc", "UTF-8", path, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v\n%s", err, out)
	}
	return string(out)
}
