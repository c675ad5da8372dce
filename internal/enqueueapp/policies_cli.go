package enqueueapp

import (
	"context"
	"errors"
	"fmt"

	"github.com/invoicing/tenantworker/internal/tenancy"
)

// tenantResetPolicies is "enqueue tenant reset-policies": every tenant's
// queues get the policy (weight and caps) of its catalog row as it is now
// (tenancy.Service.ResetPolicies), also where they record a later one:
// the step of restoring the catalog from a backup that docs/operations.md
// describes. It prints how many tenants it reset.
func tenantResetPolicies(ctx context.Context, args []string, sio IO) error {
	fs := flagSet("tenant reset-policies", "tenant reset-policies", sio)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: enqueue tenant reset-policies\n\n"+
			"Gives every tenant's queues the weight and caps of its catalog row as it\n"+
			"is now, also where they record those of a later change: run it after\n"+
			"restoring the catalog from a backup, once the tenant cache's keys are\n"+
			"deleted (docs/operations.md). The command takes no flags.\n")
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	b, err := openCLI(ctx, sio)
	if err != nil {
		return err
	}
	defer b.close()
	n, err := b.Tenancy.ResetPolicies(ctx)
	if errors.Is(err, tenancy.ErrNoDispatch) {
		return errors.New("fair dispatch is off (FAIR_DISPATCH=false): there are no policies in Redis to reset")
	}
	if err != nil {
		return fmt.Errorf("%w (%d tenants reset before it; run the command again)", err, n)
	}
	fmt.Fprintf(sio.Stdout, "reset the policies of %d tenants to the catalog's\n", n)
	return nil
}
