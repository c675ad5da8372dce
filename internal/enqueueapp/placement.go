package enqueueapp

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// ActorCLI is the audit actor of the operator CLI.
const ActorCLI = "cli"

// dbCmd is "enqueue db list", "enqueue db add NAME URL" and "enqueue db
// remove NAME". db list prints each database with its tenant count, its
// URL (passwords redacted) and its state, checked on the spot
// (databaseStates).
func dbCmd(ctx context.Context, args []string, sio IO) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: want db list, db add NAME URL or db remove NAME", errUsage)
	}
	sub, rest := args[0], args[1:]
	if isHelp(sub) {
		fmt.Fprint(sio.Stdout, "usage: enqueue db list | db add NAME URL | db remove NAME\n")
		return flag.ErrHelp
	}
	fs := flagSet("db "+sub, "db list | db add NAME URL | db remove NAME", sio)
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	switch {
	case sub == "list" && fs.NArg() == 0:
	case sub == "add" && fs.NArg() == 2:
	case sub == "remove" && fs.NArg() == 1:
	default:
		return fmt.Errorf("%w: want db list, db add NAME URL or db remove NAME", errUsage)
	}
	if sub != "list" {
		if err := validDatabaseName("NAME", fs.Arg(0)); err != nil {
			return err
		}
	}
	b, err := openCLI(ctx, sio)
	if err != nil {
		return err
	}
	defer b.close()
	if sub == "remove" {
		if err := b.Pools.Remove(ctx, fs.Arg(0)); err != nil {
			return err
		}
		fmt.Fprintf(sio.Stdout, "removed tenant database %s\n", fs.Arg(0))
		return nil
	}
	if sub == "add" {
		d, err := b.Pools.Add(ctx, fs.Arg(0), fs.Arg(1))
		if err != nil {
			return err
		}
		fmt.Fprintf(sio.Stdout, "registered tenant database %s (%s)\n", d.Name, placement.Redact(d.URL))
		return nil
	}
	ds, err := b.Catalog.Databases(ctx)
	if err != nil {
		return err
	}
	states := databaseStates(ctx, b.Pools, ds)
	w := tabwriter.NewWriter(sio.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tTENANTS\tURL\tSTATE")
	for _, d := range ds {
		u := placement.Redact(d.URL)
		switch {
		case d.Name == tenantctx.DefaultDatabase:
			u = "(DATABASE_URL)"
		case b.cfg.TenantDatabases[d.Name] != "":
			u = placement.Redact(b.cfg.TenantDatabases[d.Name]) + " (TENANT_DATABASES)"
		case u == "":
			u = "(no URL: set it in TENANT_DATABASES)"
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", d.Name, d.Tenants, u, states[d.Name])
	}
	return w.Flush()
}

// dbCheckTimeout bounds `enqueue db list`'s check of one database.
const dbCheckTimeout = 5 * time.Second

// databaseStates checks each database of ds now, all at once, each
// within dbCheckTimeout, as `enqueue db add` checks one
// (placement.Registry.CheckSchemas), and says by name what it found:
// "usable"; "unusable: " and why (its role may not create schemas there,
// with the grant; its server refuses the login, the database or the
// URL's TLS setting); "read-only: " and why (its server takes no
// writes); or "unreachable: " and why (no answer, no URL here). The
// reasons are the
// checks' errors, which never quote a URL or its password.
func databaseStates(ctx context.Context, pools *placement.Registry, ds []storage.Database) map[string]string {
	states := make([]string, len(ds))
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, dbCheckTimeout)
			defer cancel()
			err := pools.CheckSchemas(cctx, d.Name)
			reason := ""
			if err != nil {
				reason = strings.Join(strings.Fields(err.Error()), " ")
			}
			switch {
			case err == nil:
				states[i] = "usable"
			case errors.Is(err, placement.ErrMayNotCreateSchemas), errors.Is(err, placement.ErrRefused):
				states[i] = "unusable: " + reason
			case errors.Is(err, placement.ErrReadOnly):
				states[i] = "read-only: " + reason
			case errors.Is(err, placement.ErrUnknownDatabase):
				states[i] = "unreachable: no URL here"
			default:
				states[i] = "unreachable: " + reason
			}
		})
	}
	wg.Wait()
	byName := make(map[string]string, len(ds))
	for i, d := range ds {
		byName[d.Name] = states[i]
	}
	return byName
}

// tenantCmd is "enqueue tenant add SLUG ...", "enqueue tenant move SLUG
// --to DB", "enqueue tenant time-zone SLUG ZONE" and "enqueue tenant
// reset-policies" (no slug). Each answers --help, with or without a slug,
// and takes its flags before the slug, after it, or both.
func tenantCmd(ctx context.Context, args []string, sio IO) error {
	const want = "want tenant add SLUG [flags], tenant move SLUG --to DB, tenant time-zone SLUG ZONE or tenant reset-policies"
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", errUsage, want)
	}
	sub, rest := args[0], args[1:]
	if isHelp(sub) {
		fmt.Fprint(sio.Stdout, "usage: enqueue tenant add SLUG [flags] | tenant move SLUG --to DB [flags] | tenant time-zone SLUG ZONE | tenant reset-policies\n(tenant add --help, tenant move --help: the flags; tenant time-zone --help: ZONE; tenant reset-policies --help: when to run it)\n")
		return flag.ErrHelp
	}
	var run func(context.Context, []string, IO) error
	switch sub {
	case "add":
		run = tenantAdd
	case "move":
		run = tenantMove
	case "time-zone":
		run = tenantTimeZone
	case "reset-policies":
		// The one tenant command without a slug.
		return tenantResetPolicies(ctx, rest, sio)
	default:
		return fmt.Errorf("%w: unknown tenant command %q (%s)", errUsage, sub, want)
	}
	if len(rest) == 0 {
		return fmt.Errorf("%w: %s", errUsage, want)
	}
	return run(ctx, rest, sio)
}

// parseSlug parses the arguments of a tenant command: its flags, one slug
// and then one argument for each of names (tenant time-zone's ZONE; a
// missing one is named in the usage error), the flags before the slug
// ("tenant move --to eu2 acme"), after it ("tenant move acme --to eu2"),
// or both. It returns the slug and those arguments.
func parseSlug(fs *flag.FlagSet, args []string, names ...string) (string, []string, error) {
	if err := parseFlags(fs, args); err != nil {
		return "", nil, err
	}
	if fs.NArg() == 0 {
		return "", nil, fmt.Errorf("%w: the tenant's SLUG is missing", errUsage)
	}
	slug := fs.Arg(0)
	var vals []string
	for _, name := range names {
		if err := parseFlags(fs, fs.Args()[1:]); err != nil {
			return "", nil, err
		}
		if fs.NArg() == 0 {
			return "", nil, fmt.Errorf("%w: the tenant's %s is missing", errUsage, name)
		}
		vals = append(vals, fs.Arg(0))
	}
	if err := parse(fs, fs.Args()[1:]); err != nil {
		return "", nil, err
	}
	if err := tenantctx.ValidateSlug(slug); err != nil {
		return "", nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	return slug, vals, nil
}

// validDatabaseName refuses, as a command-line mistake, a tenant
// database's name that no database can have, given as what (a URL given
// for it is not quoted: tenantctx.ValidateDatabaseName).
func validDatabaseName(what, name string) error {
	if err := tenantctx.ValidateDatabaseName(name); err != nil {
		return fmt.Errorf("%w: %s: %w", errUsage, what, err)
	}
	return nil
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return isHelpFlag(arg)
}

// tenantAdd provisions a tenant (as POST /admin/tenants) and prints its id,
// database and first API key.
func tenantAdd(ctx context.Context, args []string, sio IO) error {
	fs := flagSet("tenant add", "tenant add SLUG [--name NAME] [--plan PLAN] [--database DB] [--time-zone ZONE]", sio)
	name := fs.String("name", "", "display name (default: the slug)")
	plan := fs.String("plan", "", "plan (default: "+tenancy.DefaultPlan+")")
	db := fs.String("database", "", "tenant database to place it on (default: the one with the fewest tenants)")
	zone := fs.String("time-zone", tenantctx.DefaultTimeZone, "IANA time zone its invoices' due dates are judged in, e.g. Europe/Berlin")
	slug, _, err := parseSlug(fs, args)
	if err != nil {
		return err
	}
	if err := tenantctx.ValidateTimeZone(*zone); err != nil {
		return fmt.Errorf("%w: --time-zone: %w", errUsage, err)
	}
	if *db != "" {
		if err := validDatabaseName("--database", *db); err != nil {
			return err
		}
	}
	b, err := openCLI(ctx, sio)
	if err != nil {
		return err
	}
	defer b.close()
	p, err := b.Tenancy.Provision(ctx, tenancy.NewTenant{Slug: slug, Name: *name, Plan: *plan, Database: *db, TimeZone: *zone}, ActorCLI)
	if err != nil {
		return err
	}
	return json.NewEncoder(sio.Stdout).Encode(map[string]any{
		"id": p.Tenant.ID, "slug": p.Tenant.Slug, "status": p.Tenant.Status, "database": p.Tenant.DatabaseName(),
		"time_zone": p.Tenant.TimeZoneName(), "api_key": p.APIKey, "task_id": p.MigrateTaskID,
	})
}

// tenantMove is "enqueue tenant move SLUG --to DB". It prints each step
// of the move on stderr as it starts (tenancy.MoveOptions.Progress), its
// verdict last ("moved to DB"; "failed": the tenant stayed where it was;
// or, after the switch, that it was not propagated or that its outcome is
// unknown), and what it moved as JSON on stdout.
func tenantMove(ctx context.Context, args []string, sio IO) error {
	fs := flagSet("tenant move", "tenant move SLUG --to DB [--drain-timeout 5m] [--grace 3s]", sio)
	to := fs.String("to", "", "target tenant database (required)")
	drain := fs.Duration("drain-timeout", 5*time.Minute, "how long to wait for the tenant's running tasks")
	grace := fs.Duration("grace", 3*time.Second, "how long the old schema stays after the switch")
	slug, _, err := parseSlug(fs, args)
	if err != nil {
		return err
	}
	if *to == "" {
		return fmt.Errorf("%w: --to is required", errUsage)
	}
	if err := validDatabaseName("--to", *to); err != nil {
		return err
	}
	if *drain <= 0 || *grace <= 0 {
		return fmt.Errorf("%w: --drain-timeout and --grace must be positive", errUsage)
	}
	b, err := openCLI(ctx, sio)
	if err != nil {
		return err
	}
	defer b.close()
	t, err := b.Catalog.TenantBySlug(ctx, slug)
	if err != nil {
		return fmt.Errorf("tenant %s: %w", slug, err)
	}
	// Each step on stderr as it starts, with the time since the move
	// began: stdout keeps the JSON result alone.
	start := time.Now()
	progress := func(step string) {
		fmt.Fprintf(sio.Stderr, "tenant move %s: %6.1fs: %s\n", slug, time.Since(start).Seconds(), step)
	}
	m, err := b.Tenancy.Move(ctx, t.ID, *to, ActorCLI, tenancy.MoveOptions{DrainTimeout: *drain, Grace: *grace, Progress: progress})
	switch {
	case errors.Is(err, tenancy.ErrMoveNotPropagated):
		// Not "failed", which says the tenant stayed where it was: it is
		// on the target now, and its copy there is no leftover to drop.
		progress(fmt.Sprintf("switched to %s, but not propagated to every process: the tenant is on %s now (what is left to do below)", *to, *to))
		return err
	case errors.Is(err, tenancy.ErrMoveOutcomeUnknown):
		progress(fmt.Sprintf("outcome unknown: the catalog did not say whether it switched the tenant to %s (what is left to do below)", *to))
		return err
	case err != nil:
		progress("failed")
		return err
	}
	progress("moved to " + m.To)
	switch {
	case len(m.OldSchemaWritten) > 0:
		fmt.Fprintf(sio.Stderr, "warning: writes reached the old schema %s on %s after the switch (tables %s): it is kept; "+
			"copy the rows %s lacks from them, then drop it by hand\n", m.Schema, m.From, strings.Join(m.OldSchemaWritten, ", "), m.To)
	case !m.OldSchemaDropped:
		fmt.Fprintf(sio.Stderr, "warning: the old schema %s on %s could not be dropped; drop it by hand\n", m.Schema, m.From)
	}
	return json.NewEncoder(sio.Stdout).Encode(m)
}
