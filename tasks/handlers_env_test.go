package tasks

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// handlerEnv is a real PostgreSQL database (catalog + tenant schemas), a
// real Redis, a document store in a temporary directory and the Handlers
// wired to them.
type handlerEnv struct {
	ctx       context.Context
	pool      *pgxpool.Pool
	catalog   *storage.Postgres
	docs      *storage.FS
	redis     asynq.RedisClientOpt
	enqueuer  *Enqueuer
	inspector *asynq.Inspector
	h         *Handlers
}

// testMailFrom is the From address of reminders in tests.
const testMailFrom = "Billing <billing@invoices.example>"

// newHandlerEnv sets up a handlerEnv whose Handlers send mail through m.
func newHandlerEnv(t *testing.T, m mailer.Mailer) *handlerEnv {
	t.Helper()
	ctx := testContext(t)
	pool, err := schema.NewPool(ctx, testenv.Postgres(t), schema.PoolOptions{MaxConns: 8})
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
	e.h = &Handlers{
		Pool:      pool,
		Catalog:   catalog,
		Documents: docs,
		Mailer:    m,
		Enqueuer:  enq,
		Logger:    discardLogger(),
		MailFrom:  testMailFrom,
	}
	return e
}

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
	tn, err := tenantctx.New(slug, name, "pro")
	if err != nil {
		t.Fatal(err)
	}
	if tn, err = e.catalog.CreateTenant(e.ctx, tn); err != nil {
		t.Fatal(err)
	}
	if _, err := schema.Migrate(e.ctx, e.pool, tn.Schema, 0); err != nil {
		t.Fatal(err)
	}
	return tn
}

// tenantCtx returns the test's ctx carrying tn, as the tenant middleware
// hands it to a handler.
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

// testCustomer is a customers row.
type testCustomer struct {
	Name, Company, Email, Address string
}

// testLine is a line_items row; money as exact decimal strings.
type testLine struct {
	Description, Quantity, UnitPrice string
}

// testInvoice is an invoices row with its line items. ID 0 lets the
// identity column choose.
type testInvoice struct {
	ID       int64
	Number   string
	Status   string
	Currency string
	IssuedAt time.Time
	DueAt    time.Time
	Notes    string
	Lines    []testLine
}

// addInvoice inserts a customer and an invoice with its lines into tn's
// schema and returns the invoice id.
func (e *handlerEnv) addInvoice(t *testing.T, tn tenantctx.Tenant, c testCustomer, inv testInvoice) int64 {
	t.Helper()
	var id int64
	e.inTenant(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		var customerID int64
		if err := tx.QueryRow(ctx,
			`INSERT INTO customers (name, company, email, address) VALUES ($1, NULLIF($2, ''), $3, NULLIF($4, '')) RETURNING id`,
			c.Name, c.Company, c.Email, c.Address).Scan(&customerID); err != nil {
			return err
		}
		var explicitID *int64
		if inv.ID != 0 {
			explicitID = &inv.ID
		}
		if err := tx.QueryRow(ctx,
			`INSERT INTO invoices (id, number, customer_id, status, currency, issued_at, due_date, notes)
			 VALUES (COALESCE($1, nextval(pg_get_serial_sequence('invoices', 'id'))), $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			explicitID, inv.Number, customerID, inv.Status, inv.Currency, inv.IssuedAt, inv.DueAt, inv.Notes).Scan(&id); err != nil {
			return err
		}
		for i, l := range inv.Lines {
			if _, err := tx.Exec(ctx,
				`INSERT INTO line_items (invoice_id, position, description, quantity, unit_price)
				 VALUES ($1, $2, $3, $4::numeric, $5::numeric)`,
				id, i+1, l.Description, l.Quantity, l.UnitPrice); err != nil {
				return err
			}
		}
		return nil
	})
	return id
}

// invoiceStatus returns the status of invoice id in tn's schema.
func (e *handlerEnv) invoiceStatus(t *testing.T, tn tenantctx.Tenant, id int64) string {
	t.Helper()
	var status string
	e.inTenant(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT status FROM invoices WHERE id = $1`, id).Scan(&status)
	})
	return status
}

// setInvoiceStatus sets the status of invoice id in tn's schema.
func (e *handlerEnv) setInvoiceStatus(t *testing.T, tn tenantctx.Tenant, id int64, status string) {
	t.Helper()
	e.inTenant(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE invoices SET status = $2 WHERE id = $1`, id, status)
		return err
	})
}

// documentRow is an invoice_documents row.
type documentRow struct {
	Key, SHA256 string
	Bytes       int64
	RenderedAt  time.Time
}

// documentRow returns the invoice_documents row of invoice id, and whether
// there is one.
func (e *handlerEnv) documentRow(t *testing.T, tn tenantctx.Tenant, id int64) (documentRow, bool) {
	t.Helper()
	var r documentRow
	found := true
	e.inTenant(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		err := tx.QueryRow(ctx,
			`SELECT storage_key, sha256, bytes, rendered_at FROM invoice_documents WHERE invoice_id = $1`, id).
			Scan(&r.Key, &r.SHA256, &r.Bytes, &r.RenderedAt)
		if err == pgx.ErrNoRows {
			found = false
			return nil
		}
		return err
	})
	return r, found
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
