package placement

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// ErrUnknownDatabase: the database is not registered in the catalog, or no
// URL is known for it. It wraps storage.ErrNotFound.
var ErrUnknownDatabase = fmt.Errorf("unknown tenant database: %w", storage.ErrNotFound)

// ErrClosed: the registry was closed.
var ErrClosed = errors.New("placement: registry closed")

// Options configure a Registry. MainPool is required.
type Options struct {
	// MainPool is the application pool of "main" (DATABASE_URL); owned by
	// the caller.
	MainPool *pgxpool.Pool
	// MainLanes, when set, serve the tenants on "main" (ForTenant) in lanes
	// (schema.Lanes, DB_POOL_LANES); owned by the caller. nil: MainPool
	// serves them.
	MainLanes *schema.Lanes
	// MainSchemaPool runs schema changes on "main"
	// (MIGRATIONS_DATABASE_URL); nil means MainPool. Owned by the caller.
	MainSchemaPool *pgxpool.Pool
	// URLs are the configured databases (TENANT_DATABASES) by name; they
	// win over URLs stored in the catalog.
	URLs map[string]string
	// Catalog resolves databases registered with a stored URL and counts
	// tenants per database. nil: only URLs.
	Catalog storage.PlacementStore
	// MaxConns bounds the connections the registry opens to each other
	// database (TENANT_DB_MAX_CONNS); 0 keeps pgx's default.
	MaxConns int32
	// Lanes is the number of lanes (schema.Lanes) each of those databases'
	// connections are split into (DB_POOL_LANES); 0 or 1: one pool.
	Lanes int
	// Logger receives the pools' warnings and a line per pool opened.
	Logger *slog.Logger
}

// Registry maps tenant databases to pools. The pools it opens (every
// database but "main") are opened on first use and closed by Close. It is
// safe for concurrent use.
type Registry struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	pools  map[string]*schema.Lanes
	closed bool
}

// New returns a registry. It panics without a MainPool: a wiring mistake.
func New(o Options) *Registry {
	if o.MainPool == nil {
		panic("placement: New needs a MainPool")
	}
	o.MainSchemaPool = cmp.Or(o.MainSchemaPool, o.MainPool)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Registry{opts: o, log: o.Logger, pools: map[string]*schema.Lanes{}}
}

// ForTenant returns the application pool of the database holding t's
// schema, for a unit of work (schema.InTenant, InTenantBatch): t's lane of
// that database's lanes (schema.Lanes.For), or its only pool. Call it for
// each unit: the lane it returns depends on the lanes' load at the time.
func (r *Registry) ForTenant(ctx context.Context, t tenantctx.Tenant) (*pgxpool.Pool, error) {
	name := t.DatabaseName()
	if name == tenantctx.DefaultDatabase || name == "" {
		if r.opts.MainLanes != nil {
			return r.opts.MainLanes.For(t.Schema), nil
		}
		return r.opts.MainPool, nil
	}
	l, err := r.lanes(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", t.ID, err)
	}
	return l.For(t.Schema), nil
}

// SchemaForTenant returns the pool that runs schema changes on t's
// database: MIGRATIONS_DATABASE_URL's pool for "main", t's lane of the
// application pool elsewhere.
func (r *Registry) SchemaForTenant(ctx context.Context, t tenantctx.Tenant) (*pgxpool.Pool, error) {
	name := t.DatabaseName()
	if name == tenantctx.DefaultDatabase || name == "" {
		return r.opts.MainSchemaPool, nil
	}
	return r.ForTenant(ctx, t)
}

// SchemaPool is SchemaForTenant by database name.
func (r *Registry) SchemaPool(ctx context.Context, name string) (*pgxpool.Pool, error) {
	if name == tenantctx.DefaultDatabase || name == "" {
		return r.opts.MainSchemaPool, nil
	}
	return r.Pool(ctx, name)
}

// Pool returns the application pool of database name for work that
// belongs to no one tenant: MainPool for "main"; elsewhere the lane with
// the most free connections. It opens the database's lanes on first use (a
// failed open is not remembered: the next call tries again). The pools
// connect lazily, so an unreachable server shows in the first query, as an
// ordinary, retryable error.
func (r *Registry) Pool(ctx context.Context, name string) (*pgxpool.Pool, error) {
	if name == tenantctx.DefaultDatabase || name == "" {
		return r.opts.MainPool, nil
	}
	l, err := r.lanes(ctx, name)
	if err != nil {
		return nil, err
	}
	return l.Any(), nil
}

// lanes returns the lanes of database name (not "main"), opening them on
// first use.
func (r *Registry) lanes(ctx context.Context, name string) (*schema.Lanes, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	if p := r.pools[name]; p != nil {
		r.mu.Unlock()
		return p, nil
	}
	r.mu.Unlock()

	// Resolve outside the lock: it may ask the catalog.
	dsn, err := r.url(ctx, name)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if p := r.pools[name]; p != nil {
		return p, nil
	}
	l, err := schema.NewLanes(ctx, dsn, r.opts.Lanes, schema.PoolOptions{MaxConns: r.opts.MaxConns, Logger: r.log})
	if err != nil {
		return nil, fmt.Errorf("open tenant database %s: %w", name, err)
	}
	r.pools[name] = l
	r.log.InfoContext(ctx, "opened tenant database pool", slog.String("database", name),
		slog.Int("max_conns", int(l.MaxConns())), slog.Int("lanes", len(l.Pools())))
	return l, nil
}

// url resolves name: TENANT_DATABASES first, then the catalog's stored URL.
func (r *Registry) url(ctx context.Context, name string) (string, error) {
	if err := tenantctx.ValidateDatabaseName(name); err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnknownDatabase, err)
	}
	if u := r.opts.URLs[name]; u != "" {
		return u, nil
	}
	if r.opts.Catalog == nil {
		return "", fmt.Errorf("%w: %s", ErrUnknownDatabase, name)
	}
	ds, err := r.opts.Catalog.Databases(ctx)
	if err != nil {
		return "", fmt.Errorf("resolve tenant database %s: %w", name, err)
	}
	for _, d := range ds {
		if d.Name != name {
			continue
		}
		if d.URL == "" {
			return "", fmt.Errorf("%w: %s is registered without a URL: set it in TENANT_DATABASES", ErrUnknownDatabase, name)
		}
		return d.URL, nil
	}
	return "", fmt.Errorf("%w: %s", ErrUnknownDatabase, name)
}

// Register records every database of Options.URLs in the catalog (without
// its URL, which stays in the configuration); names already registered are
// left as they are. Each process calls it at start.
func (r *Registry) Register(ctx context.Context) error {
	if r.opts.Catalog == nil {
		return nil
	}
	names := make([]string, 0, len(r.opts.URLs))
	for n := range r.opts.URLs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if _, err := r.opts.Catalog.AddDatabase(ctx, n, ""); err != nil && !errors.Is(err, storage.ErrConflict) {
			return fmt.Errorf("register tenant database %s (TENANT_DATABASES): %w", n, err)
		}
	}
	return nil
}

// Choose returns the database a new tenant goes to: want when it is set
// (it must be registered and reachable by name), otherwise the registered
// database with the fewest tenants whose URL is known (ties: by name, so
// "main" wins among equals when it sorts first).
func (r *Registry) Choose(ctx context.Context, want string) (string, error) {
	if r.opts.Catalog == nil {
		if want == "" || want == tenantctx.DefaultDatabase {
			return tenantctx.DefaultDatabase, nil
		}
		if r.opts.URLs[want] == "" {
			return "", fmt.Errorf("%w: %.70q", ErrUnknownDatabase, want)
		}
		return want, nil
	}
	ds, err := r.opts.Catalog.Databases(ctx)
	if err != nil {
		return "", fmt.Errorf("choose a tenant database: %w", err)
	}
	best, bestN := "", 0
	for _, d := range ds {
		usable := d.Name == tenantctx.DefaultDatabase || d.URL != "" || r.opts.URLs[d.Name] != ""
		if want != "" {
			if d.Name == want {
				if !usable {
					return "", fmt.Errorf("%w: %s is registered without a URL: set it in TENANT_DATABASES", ErrUnknownDatabase, want)
				}
				return want, nil
			}
			continue
		}
		if usable && (best == "" || d.Tenants < bestN) {
			best, bestN = d.Name, d.Tenants
		}
	}
	if want != "" {
		return "", fmt.Errorf("%w: %.70q", ErrUnknownDatabase, want)
	}
	return cmp.Or(best, tenantctx.DefaultDatabase), nil
}

// Open lists the databases whose pools are open, "main" first.
func (r *Registry) Open() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := []string{tenantctx.DefaultDatabase}
	for n := range r.pools {
		names = append(names, n)
	}
	slices.Sort(names[1:])
	return names
}

// Close closes the pools the registry opened (not the main pools) and
// refuses further opens.
func (r *Registry) Close() error {
	r.mu.Lock()
	pools := r.pools
	r.pools, r.closed = map[string]*schema.Lanes{}, true
	r.mu.Unlock()
	for _, l := range pools {
		l.Close()
	}
	return nil
}

// Redact returns u with its passwords replaced, for printing a database's
// URL: the one of the user information, and the query parameters that
// carry one ("password", "sslpassword": libpq and pgx read them as the
// user information's, and the client key's); a string that does not parse
// as a URL is replaced whole.
func Redact(u string) string {
	if u == "" {
		return ""
	}
	parsed, err := url.Parse(u)
	if err != nil || parsed.Scheme == "" {
		return "(unprintable: not a URL)"
	}
	if parsed.RawQuery != "" {
		params := strings.Split(parsed.RawQuery, "&")
		for i, p := range params {
			name, _, _ := strings.Cut(p, "=")
			if n, err := url.QueryUnescape(name); err != nil || secretParam(n) {
				params[i] = name + "=xxxxx"
			}
		}
		parsed.RawQuery = strings.Join(params, "&")
	}
	return parsed.Redacted()
}

// secretParam reports whether a URL query parameter of a PostgreSQL
// connection string holds a password.
func secretParam(name string) bool {
	switch strings.ToLower(name) {
	case "password", "sslpassword":
		return true
	}
	return false
}

// PoolFor returns the application pool of t's database: from r, or, when r
// is nil (tests, tools wired with one pool), fallback for a tenant on
// "main"; a tenant placed elsewhere then fails closed with
// ErrUnknownDatabase rather than reaching another server's schema.
func PoolFor(ctx context.Context, r *Registry, fallback *pgxpool.Pool, t tenantctx.Tenant) (*pgxpool.Pool, error) {
	if r != nil {
		return r.ForTenant(ctx, t)
	}
	if t.DatabaseName() != tenantctx.DefaultDatabase {
		return nil, fmt.Errorf("tenant %s is on database %s: %w (no pool registry)", t.ID, t.DatabaseName(), ErrUnknownDatabase)
	}
	if fallback == nil {
		return nil, fmt.Errorf("tenant %s: no database pool configured", t.ID)
	}
	return fallback, nil
}

// InTenantBatch runs b as one unit of work pinned to the tenant in ctx
// (schema.InTenantBatch: one round trip) on the pool of its database
// (PoolFor).
func InTenantBatch(ctx context.Context, r *Registry, fallback *pgxpool.Pool, b *pgx.Batch) error {
	t, ok := tenantctx.FromContext(ctx)
	if !ok {
		return fmt.Errorf("in tenant batch: %w", schema.ErrNoTenant)
	}
	pool, err := PoolFor(ctx, r, fallback, t)
	if err != nil {
		return err
	}
	return schema.InTenantBatch(ctx, pool, b)
}

// Add registers database name with its URL in the catalog (`enqueue db
// add`), after checking that the URL parses and the server answers with an
// empty search_path (schema.NewPool's check). ErrConflict (storage) when
// the name is taken.
func (r *Registry) Add(ctx context.Context, name, dsn string) (storage.Database, error) {
	if err := tenantctx.ValidateDatabaseName(name); err != nil {
		return storage.Database{}, err
	}
	if name == tenantctx.DefaultDatabase {
		return storage.Database{}, fmt.Errorf("add database: %w: %q is DATABASE_URL's database", storage.ErrConflict, name)
	}
	if r.opts.Catalog == nil {
		return storage.Database{}, errors.New("add database: no catalog")
	}
	p, err := schema.NewPool(ctx, dsn, schema.PoolOptions{MaxConns: 1, Logger: r.log})
	if err != nil {
		return storage.Database{}, fmt.Errorf("add database %s: %w", name, err)
	}
	defer p.Close()
	if err := p.Ping(ctx); err != nil {
		return storage.Database{}, fmt.Errorf("add database %s: connect: %w", name, err)
	}
	return r.opts.Catalog.AddDatabase(ctx, name, dsn)
}

// Remove unregisters database name (`enqueue db remove`): one that holds
// no tenant and whose URL is not configured here (TENANT_DATABASES would
// register it again at the next start). Its pool, when this registry
// opened one, is closed; other processes keep theirs until they restart,
// unused, since no tenant is placed there. Errors: storage.ErrNotFound for
// a name not registered, storage.ErrConflict for "main", a configured
// database or one holding tenants.
func (r *Registry) Remove(ctx context.Context, name string) error {
	if _, ok := r.opts.URLs[name]; ok {
		return fmt.Errorf("remove database %s: %w: it is in TENANT_DATABASES (remove it there first, on every process)", name, storage.ErrConflict)
	}
	if r.opts.Catalog == nil {
		return errors.New("remove database: no catalog")
	}
	if err := r.opts.Catalog.RemoveDatabase(ctx, name); err != nil {
		return err
	}
	r.mu.Lock()
	l := r.pools[name]
	delete(r.pools, name)
	r.mu.Unlock()
	if l != nil {
		l.Close()
	}
	return nil
}
