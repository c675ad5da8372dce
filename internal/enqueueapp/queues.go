package enqueueapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/tenancy"
)

// queuesCmd is "enqueue queues [--top N] [--json]": every queue's backlogs
// across its tenants, its largest ones by tenant slug, and its live
// workers, as GET /admin/queues answers them, without the HTTP service.
func queuesCmd(ctx context.Context, args []string, sio IO) error {
	fs := flagSet("queues", "queues [--top N] [--json]", sio)
	top := config.DecimalInt(10)
	fs.Var(&top, "top", fmt.Sprintf("`N` tenants with the largest backlogs named per queue (1 to %d)", tenancy.MaxQueuesTop))
	asJSON := fs.Bool("json", false, "print what GET /admin/queues answers instead of a table")
	if err := parse(fs, args); err != nil {
		return err
	}
	if top < 1 || top > tenancy.MaxQueuesTop {
		return fmt.Errorf("%w: --top must be from 1 to %d", errUsage, tenancy.MaxQueuesTop)
	}
	b, err := openCLI(ctx, sio)
	if err != nil {
		return err
	}
	defer b.close()
	qs, err := b.Tenancy.Queues(ctx, int(top))
	if errors.Is(err, tenancy.ErrNoDispatch) {
		return errors.New("fair dispatch is off (FAIR_DISPATCH=false): tenants have no backlogs; the dashboard shows every task")
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(sio.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"queues": qs})
	}
	w := tabwriter.NewWriter(sio.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "QUEUE\tWAITING\tTENANTS\tADMITTED\tPENDING\tWORKERS\tSLOTS\tHELD\tLARGEST BACKLOGS")
	for _, o := range qs {
		largest := make([]string, 0, len(o.Top))
		for _, d := range o.Top {
			name := d.TenantID
			if t, err := b.Catalog.TenantByID(ctx, d.TenantID); err == nil {
				name = t.Slug
			}
			largest = append(largest, fmt.Sprintf("%s %d", name, d.Waiting))
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", o.Queue, o.Waiting, o.BacklogTenants, o.Admitted, o.Pending,
			o.Workers, o.WorkerSlots, o.HeldTenants, strings.Join(largest, ", "))
	}
	return w.Flush()
}
