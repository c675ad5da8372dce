package schema

import (
	"context"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestCopyRefusedByTheTargetSaysWhy: a copy whose rows the target refuses
// (here a check constraint that an event trigger of the target's database
// adds; in production a statement_timeout, a full disk, a server
// restarting) fails with the target's error, naming the target: it failed
// with "copy customers out of the source: copy in ended", the end of the
// pipe that the target's failure closed, which sent the operator of a
// tenant move to look at the source database for a reason it did not have.
func TestCopyRefusedByTheTargetSaysWhy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
	dst, _ := newTestPool(t, testenv.Postgres(t), 0, nil)
	migrateTenant(t, src, "tenant_acme")
	// Enough rows that the source is still sending when the target
	// refuses the first.
	if _, err := src.Exec(ctx, `INSERT INTO tenant_acme.customers (name, email)
		SELECT 'c' || g, 'c' || g || '@acme.example' FROM generate_series(1, 50000) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Exec(ctx, `
		CREATE FUNCTION public.refuse_customers() RETURNS event_trigger LANGUAGE plpgsql AS $$
		DECLARE r record;
		BEGIN
			FOR r IN SELECT * FROM pg_catalog.pg_event_trigger_ddl_commands()
			          WHERE command_tag = 'CREATE TABLE' AND object_identity = 'tenant_acme.customers' LOOP
				EXECUTE 'ALTER TABLE tenant_acme.customers ADD CONSTRAINT target_refuses CHECK (false) NOT VALID';
			END LOOP;
		END $$;
		CREATE EVENT TRIGGER refuse_customers ON ddl_command_end EXECUTE FUNCTION public.refuse_customers()`); err != nil {
		t.Fatal(err)
	}
	_, err := Copy(ctx, src, dst, "tenant_acme")
	if err == nil {
		t.Fatal("set-up: the target took rows its constraint refuses")
	}
	if !strings.Contains(err.Error(), "into the target") || !strings.Contains(err.Error(), "target_refuses") {
		t.Fatalf("Copy = %v; want the target's refusal (check constraint target_refuses), naming the target", err)
	}
}
