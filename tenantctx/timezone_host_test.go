package tenantctx_test

import (
	"errors"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/tenantctx"
)

// TestHostOnlyZoneNamesAreRefused: time.LoadLocation reads the host's
// zoneinfo before the embedded database, so names only a host has were
// accepted on one that has them (a Debian image: "localtime", the host's
// own zone, which "Local" is refused for; "posixrules"; the "posix/" and
// "right/" copies, the latter with leap seconds Go misreads) and, saved,
// judged in UTC by a worker without them (a distroless image:
// Tenant.Location's fallback). Only names of the embedded database are
// accepted, wherever the process runs; a tenant holding another is in UTC
// on every host.
func TestHostOnlyZoneNamesAreRefused(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"localtime", "posixrules", "posix/Europe/Berlin", "right/Europe/Berlin", "right/UTC", "zone.tab"} {
		if err := tenantctx.ValidateTimeZone(name); !errors.Is(err, tenantctx.ErrInvalidTimeZone) {
			t.Errorf("ValidateTimeZone(%q) = %v, want ErrInvalidTimeZone (not a zone of the embedded database)", name, err)
		}
		if loc := (tenantctx.Tenant{TimeZone: name}).Location(); loc != time.UTC {
			t.Errorf("tenant in %q: Location() = %v, want UTC on every host", name, loc)
		}
	}
	// Names of the embedded database, canonical or links, stay accepted.
	for _, name := range []string{"UTC", "Etc/UTC", "Europe/Kyiv", "Europe/Kiev", "Etc/GMT+5", "US/Pacific", "America/Argentina/Buenos_Aires"} {
		if err := tenantctx.ValidateTimeZone(name); err != nil {
			t.Errorf("ValidateTimeZone(%q) = %v, want nil", name, err)
		}
	}
}
