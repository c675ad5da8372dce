package tenancy

import (
	"context"
	"errors"
	"fmt"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// ActionTimeZoneChanged: the tenant's time zone changed {time_zone}.
const ActionTimeZoneChanged Action = "tenant.time_zone_changed"

// SetTimeZone changes the tenant's time zone (an IANA name,
// tenantctx.ValidateTimeZone), the calendar its invoices' due dates are
// judged in from its next overdue sweep or reminder on. It writes
// ActionTimeZoneChanged. Errors: tenantctx.ErrInvalidTimeZone,
// storage.ErrNotFound, ErrRefused for a tenant being deleted (also one
// whose deletion is requested while the zone changes: the catalog then
// changes nothing), or storage.ErrInvalidationFailed (with the tenant)
// when the change is saved but other processes may use the old zone until
// their cache entry expires; repeating the call is safe. A change saved is
// recorded also when ctx ends right after the write (completing).
func (s *Service) SetTimeZone(ctx context.Context, id, zone, actor string) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateTimeZone(zone); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set time zone of tenant %s: %w", id, err)
	}
	t, err := s.catalog.TenantByID(ctx, id)
	if err != nil {
		return t, fmt.Errorf("set time zone of tenant %s: %w", id, err)
	}
	if err := refuseDeleting(t, "set time zone of"); err != nil {
		return t, err
	}
	t, err = s.catalog.SetTimeZone(ctx, id, zone)
	if errors.Is(err, storage.ErrTenantDeleting) {
		// The deletion was requested after the check above: the catalog
		// changed nothing.
		return t, fmt.Errorf("set time zone of tenant %s: %w: %w", id, ErrRefused, err)
	}
	if err != nil && !errors.Is(err, storage.ErrInvalidationFailed) {
		return t, fmt.Errorf("set time zone of tenant %s: %w", id, err)
	}
	// Saved (perhaps not yet propagated: the error says so after the
	// entry): record it, also when the caller went away right after the
	// write (a retry would record it, but a client that disconnected
	// does not retry).
	actx, cancel := completing(ctx)
	defer cancel()
	s.logFailure(actx, id, ActionTimeZoneChanged, s.audit(actx, id, actor, ActionTimeZoneChanged, map[string]string{"time_zone": t.TimeZoneName()}))
	if err != nil {
		return t, fmt.Errorf("set time zone of tenant %s: %w", id, err)
	}
	return t, nil
}
