package schema

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// An operator's client_encoding default (ALTER DATABASE or ALTER ROLE
// ... SET client_encoding = 'LATIN1', as a shop whose other clients speak
// Latin-1 sets) must not reach the pool's connections: pgx reads and
// writes text as UTF-8, so under LATIN1 a customer name outside Latin-1
// fails every load (22P05) and one inside it is written double-encoded
// ("MÃ¼ller") and read back as bytes that are not UTF-8.
func TestConfigurePoolOverridesClientEncodingDefault(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	ctx := context.Background()
	migrateTenant(t, b.pool, "tenant_acme")
	var db string
	if err := b.pool.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	const written = "Müller 日本 🧾"
	if _, err := b.pool.Exec(ctx, "INSERT INTO tenant_acme.customers (name, email) VALUES ($1, 'm@example.com')", written); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" SET client_encoding = 'LATIN1'"); err != nil {
		t.Fatal(err)
	}
	pool, _ := newTestPool(t, b.url, 1, nil)
	var read string
	err := InTenant(tenantCtx(ctx, "tenant_acme"), pool, func(ctx context.Context, tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, "SELECT name FROM customers WHERE email = 'm@example.com'").Scan(&read); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO customers (name, email) VALUES ($1, 'w@example.com')", "Müller")
		return err
	})
	if err != nil {
		t.Fatalf("unit under a LATIN1 client_encoding default: %v", err)
	}
	if read != written {
		t.Errorf("name read = %q, want %q", read, written)
	}
	// What the server stored, whatever any session's client_encoding.
	var stored []byte
	if err := pool.QueryRow(ctx, "SELECT convert_to(name, 'UTF8') FROM tenant_acme.customers WHERE email = 'w@example.com'").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if string(stored) != "Müller" {
		t.Errorf("name stored = %q, want %q", stored, "Müller")
	}
}
