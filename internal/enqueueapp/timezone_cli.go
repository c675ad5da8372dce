package enqueueapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// tenantTimeZone is "enqueue tenant time-zone SLUG ZONE", as PUT
// /admin/tenants/{id}/time_zone: it changes the tenant's time zone (an
// IANA name, tenantctx.ValidateTimeZone), audited with ActorCLI, and
// prints the tenant as JSON on stdout.
func tenantTimeZone(ctx context.Context, args []string, sio IO) error {
	fs := flagSet("tenant time-zone", "tenant time-zone SLUG ZONE", sio)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: enqueue tenant time-zone SLUG ZONE\n\n"+
			"ZONE is the IANA name of the time zone the tenant's invoices' due dates\n"+
			"are judged in from its next overdue sweep or reminder on, e.g.\n"+
			"Europe/Berlin or UTC. The command takes no flags.\n")
	}
	slug, vals, err := parseSlug(fs, args, "ZONE")
	if err != nil {
		return err
	}
	zone := vals[0]
	if err := tenantctx.ValidateTimeZone(zone); err != nil {
		return fmt.Errorf("%w: ZONE: %w", errUsage, err)
	}
	b, err := openCLI(ctx, sio)
	if err != nil {
		return err
	}
	defer b.close()
	cur, err := b.Catalog.TenantBySlug(ctx, slug)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("tenant %s not found", slug)
	}
	if err != nil {
		return fmt.Errorf("tenant %s: %w", slug, err)
	}
	t, err := b.Tenancy.SetTimeZone(ctx, cur.ID, zone, ActorCLI)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("tenant %s not found (deleted meanwhile)", slug)
	case errors.Is(err, tenancy.ErrRefused):
		return fmt.Errorf("tenant %s (%s) is being deleted: its time zone stays %s", slug, cur.ID, cur.TimeZoneName())
	case errors.Is(err, storage.ErrInvalidationFailed):
		return fmt.Errorf("tenant %s: time zone %s saved, but other processes may judge its due dates in the old one until their cache entry expires; repeat the command: %w", slug, zone, err)
	case err != nil:
		return err
	}
	return json.NewEncoder(sio.Stdout).Encode(t)
}
