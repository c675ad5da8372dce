package enqueueapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/tenantctx"
)

// documentsCmd is "enqueue documents prune [--tenant SLUG]".
func documentsCmd(ctx context.Context, args []string, sio IO) error {
	if len(args) == 0 || args[0] != "prune" {
		if len(args) > 0 && isHelpFlag(args[0]) {
			fmt.Fprintln(sio.Stdout, "usage: enqueue documents prune [--tenant SLUG]")
			return nil
		}
		return fmt.Errorf("%w: want documents prune [--tenant SLUG]", errUsage)
	}
	fs := flagSet("documents prune", "documents prune [--tenant SLUG]", sio)
	slug := fs.String("tenant", "", "prune this tenant's documents only (default: every tenant's)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *slug != "" {
		if err := tenantctx.ValidateSlug(*slug); err != nil {
			return fmt.Errorf("%w: --tenant: %w", errUsage, err)
		}
	}
	if err := documentsDirExists(sio); err != nil {
		return err
	}
	b, err := openCLI(ctx, sio)
	if err != nil {
		return err
	}
	defer b.close()
	// One JSON line per tenant on stdout as it is done, a line per
	// tenant that failed on stderr (the others go on, as in the workers'
	// sweep), the totals on stderr at the end.
	enc := json.NewEncoder(sio.Stdout)
	var total tenancy.DocumentsPruned
	var tenants, failed int
	each := func(r tenancy.DocumentsPruned, err error) error {
		// A tenant that failed after a batch had documents removed
		// already: the totals count them.
		total.Checked += r.Checked
		total.Removed += r.Removed
		total.Busy += r.Busy
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			failed++
			fmt.Fprintf(sio.Stderr, "tenant %s: %v (%d documents removed before the error)\n", r.TenantID, err, r.Removed)
			return nil
		}
		tenants++
		return enc.Encode(r)
	}
	if *slug != "" {
		t, err := b.Catalog.TenantBySlug(ctx, *slug)
		if err != nil {
			return fmt.Errorf("tenant %s: %w", *slug, err)
		}
		if err := each(b.Tenancy.PruneDocuments(ctx, t.ID)); err != nil {
			return err
		}
	} else if err := b.Tenancy.PruneAllDocuments(ctx, each); err != nil {
		return fmt.Errorf("%w (%d tenants done, %d documents removed before the error)", err, tenants, total.Removed)
	}
	fmt.Fprintf(sio.Stderr, "%d tenants: %d invoice documents checked, %d removed (their invoices deleted), %d left for a running render\n",
		tenants, total.Checked, total.Removed, total.Busy)
	if failed > 0 {
		return fmt.Errorf("%d tenants failed (above); run the command again once their databases answer", failed)
	}
	return nil
}

// documentsDirExists refuses a prune whose DOCUMENTS_DIR does not exist:
// opening the backend would create it empty, and the prune would find
// nothing to remove and report success, where the operator pointed it at
// the wrong directory (or left DOCUMENTS_DIR unset, ./data/documents,
// outside the workers' directory).
func documentsDirExists(sio IO) error {
	cfg, err := config.FromEnv(sio.Getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	info, err := os.Stat(cfg.DocumentsDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("documents directory %s (DOCUMENTS_DIR) does not exist: set DOCUMENTS_DIR to the workers' documents directory", cfg.DocumentsDir)
	case err != nil:
		return fmt.Errorf("documents directory %s (DOCUMENTS_DIR): %w", cfg.DocumentsDir, err)
	case !info.IsDir():
		return fmt.Errorf("documents directory %s (DOCUMENTS_DIR) is not a directory", cfg.DocumentsDir)
	}
	return nil
}
