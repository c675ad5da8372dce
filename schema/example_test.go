package schema_test

import (
	"context"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/tenantctx"
)

// Run a function in a tenant's schema. The tenant comes from ctx (the task
// middleware puts it there); InTenant pins search_path for one transaction,
// so the unqualified table name resolves to tenant_acme.invoices and to
// nothing else. (This example needs a database, so it is compiled but not
// run; the package's tests run the same calls against a real server.)
func ExampleInTenant() {
	ctx := context.Background()
	pool, err := schema.NewPool(ctx, os.Getenv("DATABASE_URL"), schema.PoolOptions{MaxConns: 4})
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	acme, err := tenantctx.New("acme", "Acme Inc.", "pro")
	if err != nil {
		panic(err)
	}
	if _, err := schema.Migrate(ctx, pool, acme.Schema, 0); err != nil {
		panic(err)
	}

	ctx = tenantctx.WithTenant(ctx, acme)
	var open int
	err = schema.InTenant(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM invoices WHERE status IN ('sent', 'overdue')`).Scan(&open)
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("open invoices:", open)
}
