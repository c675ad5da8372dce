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
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/internal/pgreach"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// ErrUnknownDatabase: the database is not registered in the catalog, or no
// URL is known for it. It wraps storage.ErrNotFound.
var ErrUnknownDatabase = fmt.Errorf("unknown tenant database: %w", storage.ErrNotFound)

// ErrClosed: the registry was closed.
var ErrClosed = errors.New("placement: registry closed")

// DefaultRefreshInterval is how often a registry with a catalog checks the
// pools it opened from the catalog's registrations against the catalog
// (Registry.Refresh; Options.RefreshInterval).
const DefaultRefreshInterval = time.Minute

// DefaultRecheckInterval is how often at most a TENANT_DATABASES database
// found unusable (Registry.Unusable) is checked again while it is used
// (Options.RecheckInterval).
const DefaultRecheckInterval = time.Minute

// refreshTimeout bounds one background refresh.
const refreshTimeout = 30 * time.Second

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
	// KeepConns keeps all MaxConns connections of each of those databases
	// open once it is first used (schema.PoolOptions.MinConns).
	KeepConns bool
	// Logger receives the pools' warnings and a line per pool opened or
	// closed.
	Logger *slog.Logger
	// RefreshInterval is how often, with a Catalog, the pools opened from
	// the catalog's registrations are checked against it (Refresh): the
	// pool of a database removed, or removed and registered again, is
	// closed once its connections are back. 0 means
	// DefaultRefreshInterval; a negative value turns the check off (Close
	// still closes every pool).
	RefreshInterval time.Duration
	// RecheckInterval is how often at most a TENANT_DATABASES database
	// found unusable (Unusable: its role may not create schemas there, or
	// its server refused the login or the database) is checked again, when
	// something would use it (Choose considering it, a new connection to
	// it; never a task's unit of work on an open connection): once it
	// passes, new tenants are placed on it again, without a restart. 0
	// means DefaultRecheckInterval; a negative value turns re-checks off
	// (a restart checks it). No environment setting: a re-check is one
	// query per interval on a database in use, and a fix is picked up
	// within that minute, which an operator waits for as for a restart.
	RecheckInterval time.Duration
}

// Registry maps tenant databases to pools. The pools it opens (every
// database but "main") are opened on first use and closed by Close. A
// database of the catalog removed and registered again under the same name
// is a new registration (storage.Database.Generation): a tenant read from
// the catalog carries its database's (tenantctx.Tenant.DatabaseGeneration),
// so ForTenant opens the new registration's pool when the one it holds is
// older, and closes the old one once its connections are back (a caller
// still holding the old pool without a connection gets an ordinary error
// from it); Refresh closes the pools of removed databases. While the load
// gate on a caller's ctx (storage.WithLoadGate: the worker's breaker of
// "main") holds reads of the catalog, a database is resolved from the
// catalog's list as the registry last read it (resolve, Refresh), and one
// not on it fails with the gate's error. It is safe for concurrent use.
type Registry struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	pools  map[string]openDatabase
	opened uint64 // opens so far; openDatabase.seq
	closed bool
	// listed is the catalog's database list as last read (readDatabases),
	// by name: resolve answers from it while the load gate on its ctx
	// holds reads of the catalog ("main" down). reads counts the reads
	// started, and listedRead is the one listed comes from, so that a
	// read that ends after a later one does not replace its answer.
	listed     map[string]storage.Database
	reads      uint64
	listedRead uint64

	// lateMu guards pending and unusable, the TENANT_DATABASES databases
	// CheckConfigured could not check at start (checkLate). Not r.mu: a
	// check runs on a connection being made, which must not wait for it.
	lateMu   sync.Mutex
	pending  map[string]*lateCheck
	unusable map[string]error
	// nextCheck is when an unusable database may be checked again, and
	// rechecking holds those being checked again (claimRecheck).
	nextCheck    map[string]time.Time
	rechecking   map[string]bool
	recheckEvery time.Duration // Options.RecheckInterval, its default applied

	retiring sync.WaitGroup // pools being closed once their connections are back
	stop     chan struct{}  // closed by Close; nil without a refresh loop
	done     chan struct{}  // closed when the refresh loop returns
	stopOnce sync.Once
}

// openDatabase is the pool of one tenant database (not "main").
type openDatabase struct {
	lanes *schema.Lanes
	// generation is the catalog registration the pool was opened for
	// (storage.Database.Generation); 0 for a database of Options.URLs,
	// whose URL the catalog does not change.
	generation int64
	// seq orders opens (Registry.opened): Refresh leaves alone a pool
	// opened after it read the catalog.
	seq uint64
}

// New returns a registry. It panics without a MainPool: a wiring mistake.
// With a Catalog and a RefreshInterval that is not negative it starts the
// refresh loop, which Close stops.
func New(o Options) *Registry {
	if o.MainPool == nil {
		panic("placement: New needs a MainPool")
	}
	o.MainSchemaPool = cmp.Or(o.MainSchemaPool, o.MainPool)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Registry{opts: o, log: o.Logger, pools: map[string]openDatabase{},
		pending: map[string]*lateCheck{}, unusable: map[string]error{},
		nextCheck: map[string]time.Time{}, rechecking: map[string]bool{},
		recheckEvery: cmp.Or(o.RecheckInterval, DefaultRecheckInterval)}
	if o.Catalog != nil && o.RefreshInterval >= 0 {
		r.stop, r.done = make(chan struct{}), make(chan struct{})
		go r.refreshLoop(cmp.Or(o.RefreshInterval, DefaultRefreshInterval))
	}
	return r
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
	e, err := r.lanes(ctx, name, t.DatabaseGeneration, false)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", t.ID, err)
	}
	return e.lanes.For(t.Schema), nil
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
	p, _, err := r.SchemaPoolRegistration(ctx, name)
	return p, err
}

// SchemaPoolRegistration is SchemaPool with the catalog registration the
// pool reaches (storage.Database.Generation), looked up in the catalog
// with the pool, as Pool does: a move copies a schema through the pool and
// switches the placement only while the name is still that registration
// (storage.PlacementStore.SetPlacement). It is 0 for "main" and the
// databases of Options.URLs, whose URL the catalog does not give: a
// registration of their name added again reaches the same server.
func (r *Registry) SchemaPoolRegistration(ctx context.Context, name string) (*pgxpool.Pool, int64, error) {
	if name == tenantctx.DefaultDatabase || name == "" {
		return r.opts.MainSchemaPool, 0, nil
	}
	e, err := r.lanes(ctx, name, 0, true)
	if err != nil {
		return nil, 0, err
	}
	return e.lanes.Any(), e.generation, nil
}

// Pool returns the application pool of database name for work that
// belongs to no one tenant: MainPool for "main"; elsewhere the lane with
// the most free connections. It opens the database's lanes on first use (a
// failed open is not remembered: the next call tries again). A database
// registered in the catalog (not in Options.URLs) is looked up there on
// every call, so a pool of a registration that was removed, or replaced by
// a new one under the same name, before the call is not returned (unless
// the load gate on ctx holds reads of the catalog: then the list read last
// answers, see Registry). The pools connect
// lazily, so an unreachable server shows in the first query, as an
// ordinary, retryable error.
func (r *Registry) Pool(ctx context.Context, name string) (*pgxpool.Pool, error) {
	if name == tenantctx.DefaultDatabase || name == "" {
		return r.opts.MainPool, nil
	}
	e, err := r.lanes(ctx, name, 0, true)
	if err != nil {
		return nil, err
	}
	return e.lanes.Any(), nil
}

// Ping checks that database name answers, on a connection of its own
// dialed with the configuration of the database's pool (MainPool for
// "main"; elsewhere its open lanes, found without asking the catalog when
// they are open: a database registered in the catalog whose lanes were
// never opened is looked up there first, or in the list read last while
// the load gate on ctx holds such reads), closed at once. It is the probe
// of the worker's database breakers (worker.DatabaseBreakers): a tenant
// database's probe must not depend on "main", which may be down while
// that database is back; and it must not take a pooled connection,
// which may wait until its timeout while the pool's connections are in use
// (a database that answers taken for one that does not) or be one the
// server dropped (a database still down taken for one that answered). It
// adds one connection to the pool's for the time of a ping. A server that
// answers but takes no writes (transaction_read_only on: a hot standby, as
// a primary demoted by a failover is, or default_transaction_read_only)
// fails the ping with SQLSTATE 25006, as a write there would
// (pgreach.Unavailable): its tasks stay held until it takes writes again.
func (r *Registry) Ping(ctx context.Context, name string) error {
	p := r.opts.MainPool
	if name != tenantctx.DefaultDatabase && name != "" {
		e, err := r.lanes(ctx, name, 0, false)
		if err != nil {
			return err
		}
		p = e.lanes.Any()
	}
	conn, release, err := dialOwn(ctx, p.Config().ConnConfig)
	if err != nil {
		return err
	}
	defer release()
	return checkWritable(ctx, conn)
}

// readOnlySQL reads whether a transaction of the session takes no writes:
// the server is in recovery (a hot standby) or default_transaction_read_only
// is on.
const readOnlySQL = "SELECT pg_catalog.current_setting('transaction_read_only')"

// checkWritable returns nil when conn's server takes writes, and a
// PostgreSQL error of SQLSTATE 25006 (read_only_sql_transaction, the
// answer a write gets there) when it takes none now.
func checkWritable(ctx context.Context, conn *pgx.Conn) error {
	var readOnly string
	if err := conn.QueryRow(ctx, readOnlySQL).Scan(&readOnly); err != nil {
		return err
	}
	if readOnly == "on" {
		return &pgconn.PgError{Severity: "ERROR", Code: pgreach.ReadOnlySQLTransaction,
			Message: "the server takes no writes now (transaction_read_only is on: a hot standby, or default_transaction_read_only)"}
	}
	return nil
}

// dialOwn makes a connection of its own dialed with cfg, the
// configuration of a database's pool (Ping, Choose's checks, re-checks, a
// move's check of its target), outside the pool: not one of the pool's,
// which may wait until ctx ends while every connection of the pool is in
// use, or be one made before the server began refusing the login or
// stopped answering. It does not run the pool's AfterConnect. release
// closes it, within a second, also once ctx ended.
func dialOwn(ctx context.Context, cfg *pgx.ConnConfig) (conn *pgx.Conn, release func(), err error) {
	conn, err = pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return conn, func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}, nil
}

// DatabaseOf names the database an error of a connection that could not
// be made was met on: the error's pgconn.ConnectError names the server and
// database it dialed, matched against "main"'s pools and the open pools of
// the other databases (by host, port and database name). false when err
// names no dial, or none of them. The worker's database breakers open the
// breaker of the database it names (a task of a tenant on another
// database that could not reach the catalog on "main" is main's outage,
// not its database's).
func (r *Registry) DatabaseOf(err error) (string, bool) {
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) || ce.Config == nil {
		return "", false
	}
	dialed := func(p *pgxpool.Pool) bool {
		c := p.Config().ConnConfig
		return c.Host == ce.Config.Host && c.Port == ce.Config.Port && c.Database == ce.Config.Database
	}
	if dialed(r.opts.MainPool) || dialed(r.opts.MainSchemaPool) {
		return tenantctx.DefaultDatabase, true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.pools))
	for n := range r.pools {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if ps := r.pools[n].lanes.Pools(); len(ps) > 0 && dialed(ps[0]) {
			return n, true
		}
	}
	return "", false
}

// configured reports whether name's URL comes from Options.URLs
// (TENANT_DATABASES), which the catalog does not change.
func (r *Registry) configured(name string) bool { return r.opts.URLs[name] != "" }

// lanes returns the lanes of database name (not "main"), opening them on
// first use, with the registration they were opened for. The lanes open for a catalog registration serve a caller
// that wants generation want or an older one (0: any) without a query,
// unless fresh; otherwise name is resolved in the catalog, and lanes of an
// older registration are replaced by the current one's and closed once
// their connections are back (those of a removed database too).
func (r *Registry) lanes(ctx context.Context, name string, want int64, fresh bool) (openDatabase, error) {
	configured := r.configured(name)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return openDatabase{}, ErrClosed
	}
	if e, ok := r.pools[name]; ok && (configured || (!fresh && want <= e.generation)) {
		r.mu.Unlock()
		return e, nil
	}
	seen := r.opened
	r.mu.Unlock()

	// Resolve outside the lock: it may ask the catalog.
	dsn, generation, err := r.resolve(ctx, name, want)
	if errors.Is(err, ErrUnknownDatabase) && !configured {
		// Only a pool opened before the catalog was read: one opened since
		// may be of a registration of name added after that read.
		r.retire(ctx, name, func(e openDatabase) bool { return e.seq <= seen }, "removed from the catalog")
	}
	if err != nil {
		return openDatabase{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return openDatabase{}, ErrClosed
	}
	old, had := r.pools[name]
	if had && (configured || old.generation >= generation) {
		return old, nil
	}
	opts := schema.PoolOptions{MaxConns: r.opts.MaxConns, Logger: r.log}
	if configured {
		opts.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
			r.checkLate(ctx, name, conn)
			return nil
		}
	}
	if r.opts.KeepConns {
		opts.MinConns = r.opts.MaxConns
	}
	l, err := schema.NewLanes(ctx, dsn, r.opts.Lanes, opts)
	if err != nil {
		return openDatabase{}, fmt.Errorf("open tenant database %s: %w", name, err)
	}
	r.opened++
	e := openDatabase{lanes: l, generation: generation, seq: r.opened}
	r.pools[name] = e
	if had {
		r.closeLater(ctx, name, old, "registered again")
	}
	r.log.InfoContext(ctx, "opened tenant database pool", slog.String("database", name),
		slog.Int64("generation", generation),
		slog.Int("max_conns", int(l.MaxConns())), slog.Int("lanes", len(l.Pools())))
	return e, nil
}

// resolve returns name's URL and the generation of its catalog
// registration: TENANT_DATABASES first (generation 0), then the catalog's
// stored URL. want is the registration the caller needs, or an older one
// (0: any); only the list read last, answering while the load gate holds
// reads of the catalog, can be older than it.
func (r *Registry) resolve(ctx context.Context, name string, want int64) (string, int64, error) {
	if err := tenantctx.ValidateDatabaseName(name); err != nil {
		return "", 0, fmt.Errorf("%w: %w", ErrUnknownDatabase, err)
	}
	if u := r.opts.URLs[name]; u != "" {
		return u, 0, nil
	}
	if r.opts.Catalog == nil {
		return "", 0, fmt.Errorf("%w: %s", ErrUnknownDatabase, name)
	}
	// The worker's database breakers hold reads of the catalog while
	// "main" is down (storage.WithLoadGate): then a database the catalog
	// listed when last read resolves as it was, and one it did not list
	// is held with the gate's error, without dialing "main"; so is a
	// caller that needs a registration newer than the one listed (the
	// database registered again since, its tenant placed there): the list
	// does not know its URL.
	if gerr := storage.PassLoadGate(ctx); gerr != nil {
		r.mu.Lock()
		d, ok := r.listed[name]
		r.mu.Unlock()
		if !ok {
			return "", 0, fmt.Errorf("resolve tenant database %s: %w", name, gerr)
		}
		if d.Generation < want {
			return "", 0, fmt.Errorf("resolve tenant database %s: registration %d needed, %d listed when the catalog was read last: %w",
				name, want, d.Generation, gerr)
		}
		r.log.DebugContext(ctx, "tenant database resolved from the catalog's list as last read: reading the catalog is held",
			slog.String("database", name), slog.Int64("generation", d.Generation), slog.String("held", gerr.Error()))
		return registered(name, d)
	}
	ds, err := r.readDatabases(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("resolve tenant database %s: %w", name, err)
	}
	for _, d := range ds {
		if d.Name == name {
			return registered(name, d)
		}
	}
	return "", 0, fmt.Errorf("%w: %s", ErrUnknownDatabase, name)
}

// registered is resolve's answer for d, the catalog's registration of
// database name.
func registered(name string, d storage.Database) (string, int64, error) {
	if d.URL == "" {
		return "", 0, fmt.Errorf("%w: %s is registered without a URL: set it in TENANT_DATABASES", ErrUnknownDatabase, name)
	}
	return d.URL, d.Generation, nil
}

// readDatabases reads the catalog's database list and keeps it as the
// list last read (Registry.listed) unless a read started later was kept
// already.
func (r *Registry) readDatabases(ctx context.Context) ([]storage.Database, error) {
	r.mu.Lock()
	r.reads++
	read := r.reads
	r.mu.Unlock()
	ds, err := r.opts.Catalog.Databases(ctx)
	if err != nil {
		return nil, err
	}
	listed := make(map[string]storage.Database, len(ds))
	for _, d := range ds {
		listed[d.Name] = d
	}
	r.mu.Lock()
	if read > r.listedRead {
		r.listed, r.listedRead = listed, read
	}
	r.mu.Unlock()
	return ds, nil
}

// retire forgets name's pool when stale says so and closes it once its
// connections are back.
func (r *Registry) retire(ctx context.Context, name string, stale func(openDatabase) bool, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.pools[name]; ok && stale(e) {
		delete(r.pools, name)
		r.closeLater(ctx, name, e, why)
	}
}

// closeLater closes e's lanes in the background: pgxpool's Close waits
// until the connections in use are released, and refuses new acquires.
// Close waits for it. The caller holds r.mu.
func (r *Registry) closeLater(ctx context.Context, name string, e openDatabase, why string) {
	r.log.InfoContext(ctx, "closing tenant database pool", slog.String("database", name),
		slog.Int64("generation", e.generation), slog.String("reason", why))
	r.retiring.Go(e.lanes.Close)
}

// Refresh checks the pools opened from the catalog's registrations
// against the catalog: the pool of a database that was removed, or
// removed and registered again (a newer generation), is forgotten and
// closed once its connections are back; the next use opens the current
// registration's. Pools of Options.URLs are kept. It asks the catalog only
// when such a pool is open. The refresh loop calls it every
// Options.RefreshInterval.
func (r *Registry) Refresh(ctx context.Context) error {
	if r.opts.Catalog == nil {
		return nil
	}
	r.mu.Lock()
	seen, fromCatalog := r.opened, false
	for name := range r.pools {
		fromCatalog = fromCatalog || !r.configured(name)
	}
	r.mu.Unlock()
	if !fromCatalog {
		return nil
	}
	ds, err := r.readDatabases(ctx)
	if err != nil {
		return fmt.Errorf("refresh tenant database pools: %w", err)
	}
	current := make(map[string]int64, len(ds))
	for _, d := range ds {
		current[d.Name] = d.Generation
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, e := range r.pools {
		// A pool opened after the catalog was read may be of a newer
		// registration than the one read: the next refresh checks it.
		if r.configured(name) || e.seq > seen {
			continue
		}
		switch g, ok := current[name]; {
		case !ok:
			delete(r.pools, name)
			r.closeLater(ctx, name, e, "removed from the catalog")
		case g > e.generation:
			delete(r.pools, name)
			r.closeLater(ctx, name, e, "registered again")
		}
	}
	return nil
}

// refreshLoop calls Refresh every interval until Close.
func (r *Registry) refreshLoop(every time.Duration) {
	defer close(r.done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
			if err := r.Refresh(ctx); err != nil {
				r.log.WarnContext(ctx, "refresh tenant database pools", slog.Any("error", err))
			}
			cancel()
		}
	}
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

// chooseTimeout bounds Choose's check of a database (a ping, a re-check).
const chooseTimeout = 5 * time.Second

// Choose returns the database a new tenant goes to: want when it is set
// (it must be registered and reachable by name), otherwise the registered
// database with the fewest tenants whose URL is known (ties: by name, so
// "main" wins among equals when it sorts first) and whose server answers:
// one that does not (a ping within chooseTimeout) is skipped and logged,
// so a server that is down does not fail every new tenant; so is one
// that answers but takes no writes (a standby, a database set
// default_transaction_read_only), logged as such. When none
// answers, the least loaded is returned (the provisioning then fails
// with its error). The candidates are checked all at once, each on a
// connection of its own (not one of its pool, which its tenants' work may
// all hold), so a provisioning request waits at most one chooseTimeout
// however many do not answer: the first by the order above that answers
// is chosen once those before it failed, and the pings still running are
// cut short. A TENANT_DATABASES database that failed its late check
// (checkLate, Unusable) is never chosen, not even then: by name it is an
// error wrapping the check's; it is checked again instead of its ping
// when its re-check is due (Options.RecheckInterval; recheckAt, which
// the choice does not cut short), and chosen as any other once it passes.
// One whose late check is still due is checked by the ping (by name too),
// and skipped when that check does not conclude that it is usable.
func (r *Registry) Choose(ctx context.Context, want string) (string, error) {
	if want != "" && want != tenantctx.DefaultDatabase && r.configured(want) {
		if err := r.usable(ctx, want); err != nil {
			return "", fmt.Errorf("place a new tenant on %s: %w", want, err)
		}
	}
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
	var candidates []storage.Database
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
		if usable {
			candidates = append(candidates, d)
		}
	}
	if want != "" {
		return "", fmt.Errorf("%w: %.70q", ErrUnknownDatabase, want)
	}
	if len(candidates) == 0 {
		return tenantctx.DefaultDatabase, nil
	}
	// Fewest tenants first; the catalog lists them by name, which breaks
	// ties.
	slices.SortStableFunc(candidates, func(a, b storage.Database) int { return cmp.Compare(a.Tenants, b.Tenants) })
	// Every check ends before Choose returns (wg.Wait, deferred first: it
	// runs last), the pings still running cut short once it has chosen.
	var wg sync.WaitGroup
	defer wg.Wait()
	pingCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	outcomes := make([]chan error, len(candidates))
	for i, d := range candidates {
		outcomes[i] = make(chan error, 1)
		wg.Go(func() { outcomes[i] <- r.checkCandidate(ctx, pingCtx, d.Name) })
	}
	for i, d := range candidates {
		err := <-outcomes[i]
		if err == nil {
			if err = r.lateOutcome(d.Name); err == nil {
				return d.Name, nil
			}
			// Logged once by its check (or below, while still due).
			if errors.Is(err, errCheckDue) {
				r.log.WarnContext(ctx, "placing a new tenant: tenant database not checked yet (TENANT_DATABASES), skipped",
					slog.String("database", d.Name))
			}
			continue
		}
		if ctx.Err() != nil {
			break
		}
		if r.unusableErr(d.Name) != nil {
			continue // unusable, or made so by the ping's refused login: logged once by checkLate
		}
		msg := "placing a new tenant: tenant database does not answer, skipped"
		if pgreach.ReadOnly(err) {
			msg = "placing a new tenant: tenant database takes no writes (a standby, or default_transaction_read_only), skipped"
		}
		r.log.WarnContext(ctx, msg, slog.String("database", d.Name), slog.String("error", err.Error()))
	}
	for _, d := range candidates {
		if r.unusableErr(d.Name) == nil {
			return d.Name, nil
		}
	}
	return tenantctx.DefaultDatabase, nil
}

// checkCandidate is Choose's check of database name: an unusable one is
// checked again when its re-check is due (claimRecheck, recheckAt, within
// ctx: its outcome is kept whatever Choose chooses meanwhile) and is
// otherwise not pinged (its error); any other is pinged within pingCtx
// (ping). nil when it answered and, checked again, passed.
func (r *Registry) checkCandidate(ctx, pingCtx context.Context, name string) error {
	if r.claimRecheck(name) {
		r.recheckAt(ctx, name)
		return r.unusableErr(name)
	}
	if err := r.unusableErr(name); err != nil {
		return err
	}
	return r.ping(pingCtx, name)
}

// usable is Choose's check of a TENANT_DATABASES database named by the
// operator: an error when its late check failed, or fails on a ping now
// (within chooseTimeout); nil when it passed, was never due, or could not
// run (the server does not answer: the provisioning then fails with its
// error, as without the check). An unusable one is checked again first
// when its re-check is due (recheckDue).
func (r *Registry) usable(ctx context.Context, name string) error {
	r.recheckDue(ctx, name)
	if err := r.unusableErr(name); err != nil {
		return err
	}
	if !r.checkDue(name) {
		return nil
	}
	_ = r.ping(ctx, name)
	return r.unusableErr(name)
}

// ping checks that database name answers, within chooseTimeout, on a
// connection of its own (dialOwn: not one of its pool, which may wait
// until the timeout while its tenants' work holds every connection of
// the pool) dialed with the configuration schema.NewPool gives the pool
// of its URL (resolve: the catalog's current registration), without
// opening the pool (with Options.KeepConns an open pool keeps MaxConns
// connections, and Choose checks every candidate). "main" holds the
// catalog, which just answered. A TENANT_DATABASES database whose late
// check is due gets it on the connection pinged (checkLate), or, when its
// server refuses the login, the database or the URL's TLS setting
// (refusal), fails it. A server that answers but takes no writes
// (transaction_read_only on: a standby, default_transaction_read_only)
// fails the ping with SQLSTATE 25006 (checkWritable): a tenant placed
// there could not have its schema created, and its work would wait.
func (r *Registry) ping(ctx context.Context, name string) error {
	if name == tenantctx.DefaultDatabase {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, chooseTimeout)
	defer cancel()
	cfg, err := r.connConfig(ctx, name)
	if err != nil {
		return err
	}
	conn, release, err := dialOwn(ctx, cfg)
	if err != nil {
		if ref := refusal(ctx, err); ref != nil {
			r.failLate(ctx, name, fmt.Errorf("connect: %w: %w", ref, err))
		}
		return err
	}
	defer release()
	if err := conn.Ping(ctx); err != nil {
		return err
	}
	r.checkLate(ctx, name, conn)
	return checkWritable(ctx, conn)
}

// connConfig returns the configuration a connection of database name's
// pool (not "main") is dialed with, schema.ConfigurePool's on the URL of
// its current registration (resolve), without opening the pool: for a
// connection of its own (dialOwn) that checks it.
func (r *Registry) connConfig(ctx context.Context, name string) (*pgx.ConnConfig, error) {
	dsn, _, err := r.resolve(ctx, name, 0)
	if err != nil {
		return nil, err
	}
	// schema's parse, as the pool's: pgx's error quotes the URL, its
	// password masked only as best it can.
	cfg, err := schema.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("tenant database %s: %w", name, err)
	}
	schema.ConfigurePool(cfg, r.log)
	return cfg.ConnConfig, nil
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

// Close stops the refresh loop, closes the pools the registry opened (not
// the main pools), waits for those it was closing, and refuses further
// opens. It is safe to call more than once.
func (r *Registry) Close() error {
	if r.stop != nil {
		r.stopOnce.Do(func() { close(r.stop) })
		<-r.done
	}
	r.mu.Lock()
	pools := r.pools
	r.pools, r.closed = map[string]openDatabase{}, true
	r.mu.Unlock()
	for _, e := range pools {
		e.lanes.Close()
	}
	r.retiring.Wait()
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
	u = maskUserPassword(u)
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

// maskUserPassword replaces the password of a postgres:// or
// postgresql:// URL's user information as pgx (like libpq) finds it: the
// text up to the first '@' that comes before any '/', whatever it holds.
// Go's url.Parse ends the user information at '?' or '#' too, so a
// password holding one of them ("app:?s3cret@db") would otherwise reach
// the output as a host, a query or a fragment.
func maskUserPassword(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok || (scheme != "postgres" && scheme != "postgresql") {
		return u
	}
	i := strings.IndexAny(rest, "@/")
	if i < 0 || rest[i] != '@' {
		return u
	}
	user, _, hasPassword := strings.Cut(rest[:i], ":")
	if !hasPassword {
		return u
	}
	return scheme + "://" + user + ":xxxxx" + rest[i:]
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
// add`), after checking that the URL parses, the server answers with an
// empty search_path (schema.NewPool's check), the URL's role may create
// schemas in the database (CREATE on it, which its owner has) and the
// server takes writes (ErrReadOnly: a replica's URL registered by
// mistake, whose tenants would wait for as long as it stays so): tenants
// placed there get their schema created over that URL, and a database
// that refuses it would take every new tenant placed by load and leave
// each provisioning. ErrConflict (storage) when the name is taken.
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
	if err := CheckDatabase(ctx, dsn, r.log); err != nil {
		return storage.Database{}, fmt.Errorf("add database %s: %w", name, err)
	}
	return r.opts.Catalog.AddDatabase(ctx, name, dsn)
}

// Remove unregisters database name (`enqueue db remove`): one that holds
// no tenant and whose URL is not configured here (TENANT_DATABASES would
// register it again at the next start). Its pool, when this registry
// opened one, is closed; other processes close theirs at their next
// Refresh, or sooner when they look the name up in the catalog again (a
// tenant of a newer registration of that name, Pool). Errors:
// storage.ErrNotFound for a name not registered, storage.ErrInUse for
// "main", a configured database or one holding tenants.
func (r *Registry) Remove(ctx context.Context, name string) error {
	if _, ok := r.opts.URLs[name]; ok {
		return fmt.Errorf("remove database %s: %w: it is in TENANT_DATABASES (remove it there first, on every process)", name, storage.ErrInUse)
	}
	if r.opts.Catalog == nil {
		return errors.New("remove database: no catalog")
	}
	r.mu.Lock()
	seen := r.opened
	r.mu.Unlock()
	if err := r.opts.Catalog.RemoveDatabase(ctx, name); err != nil {
		return err
	}
	// Only a pool opened before the removal: one opened since is of a
	// registration of name added after it (Refresh closes any other).
	r.mu.Lock()
	e, ok := r.pools[name]
	ok = ok && e.seq <= seen
	if ok {
		delete(r.pools, name)
	}
	delete(r.listed, name)
	r.mu.Unlock()
	if ok {
		e.lanes.Close()
	}
	return nil
}

// ErrMayNotCreateSchemas: the role of a tenant database's URL may not
// create schemas in the database (CREATE on it, which its owner has), as
// provisioning a tenant there does.
var ErrMayNotCreateSchemas = errors.New("may not create schemas")

// ErrUnreachable wraps the error of a tenant database CheckDatabase could
// not check: no connection (a server down or not answering, one at its
// connection limit, the connection closed during the TLS handshake or
// the start-up), or no answer in time. A server that refuses the login,
// the database or the URL's TLS setting is ErrRefused instead.
var ErrUnreachable = errors.New("could not connect")

// ErrReadOnly wraps the error of a tenant database whose server answered
// but takes no writes (transaction_read_only on: a hot standby, as a
// replica is, or default_transaction_read_only set for the database or
// the role): its tenants' work would wait for as long as it stays so
// (pgreach.Unavailable), and their schemas could not be created there.
var ErrReadOnly = errors.New("takes no writes (transaction_read_only is on: a standby or default_transaction_read_only)")

// ErrRefused wraps the error of a tenant database whose server answered
// that the URL's login or database is wrong (refusal: SQLSTATE class 28,
// a wrong password or an unknown role; 3D000, no such database): a
// misconfiguration, not an outage. ErrRefusedTLS is one too (errors.Is).
var ErrRefused = errors.New("server refused the login or the database")

// ErrRefusedTLS wraps the error of a tenant database whose server answered
// a connection that could not be set up as the URL's TLS setting asks
// (refusal: no SQLSTATE, and pgreach.NoAnswer says a server answered):
// TLS refused under sslmode=require by a server without TLS, a
// certificate that does not verify under verify-ca or verify-full, a TLS
// alert. It is an ErrRefused (errors.Is): a misconfiguration, not an
// outage, so every caller that checks ErrRefused treats it the same.
var ErrRefusedTLS error = refusedError("server refused the URL's TLS setting (sslmode, certificates)")

// ErrNotUTF8 wraps the error of a tenant database whose server encoding
// is not UTF8 (schema.CheckEncoding, whose schema.ErrNotUTF8 it wraps too):
// tenants' text outside its character set would fail there (LATIN1 and
// other national encodings) or be stored unchecked (SQL_ASCII). It is an
// ErrRefused (errors.Is): a misconfiguration no retry fixes.
var ErrNotUTF8 error = refusedError("not a UTF8 database")

// refusedError is a refusal of its own text that is also an ErrRefused.
type refusedError string

func (e refusedError) Error() string { return string(e) }

// Is makes a refusedError match ErrRefused.
func (e refusedError) Is(target error) bool { return target == ErrRefused }

// refusal returns the refusal that err, of a connection that could not be
// made, is: ErrRefused when the server answered that the URL's login
// (SQLSTATE class 28: invalid_password 28P01,
// invalid_authorization_specification 28000) or its database
// (invalid_catalog_name 3D000) is wrong; ErrRefusedTLS when a server
// answered without a SQLSTATE (a pgconn.ConnectError for which
// pgreach.NoAnswer, the worker's test of an outage, is false: its TLS)
// while ctx is live; nil for every other failure (the worker's
// "unreachable" ones, internal/worker.DatabaseUnavailable, other
// SQLSTATEs such as a server at its connection limit, and a connect cut
// by ctx).
func refusal(ctx context.Context, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if strings.HasPrefix(pe.Code, "28") || pe.Code == "3D000" {
			return ErrRefused
		}
		return nil
	}
	var ce *pgconn.ConnectError
	if ctx.Err() == nil && errors.As(err, &ce) && !pgreach.NoAnswer(ce.Unwrap()) {
		return ErrRefusedTLS
	}
	return nil
}

// CheckDatabase checks what the binaries need of a tenant database's URL
// (`enqueue db add`, TENANT_DATABASES at start): it parses, the server
// answers with an empty search_path (schema.NewPool's check), the URL's
// role may create schemas in the database and the server takes writes. A
// server that refuses the login or the database fails with ErrRefused,
// one that refuses the URL's TLS setting with ErrRefusedTLS (an
// ErrRefused); a database that cannot be reached otherwise, with
// ErrUnreachable; a role that may not create schemas, with
// ErrMayNotCreateSchemas and the grant that fixes it; a database whose
// server encoding is not UTF8, with ErrNotUTF8 (an ErrRefused); a server
// that takes no writes (a replica's URL, default_transaction_read_only),
// with ErrReadOnly. Errors never quote the URL.
func CheckDatabase(ctx context.Context, dsn string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p, err := schema.NewPool(ctx, dsn, schema.PoolOptions{MaxConns: 1, Logger: log})
	if err != nil {
		return err
	}
	defer p.Close()
	return CheckPool(ctx, p)
}

// CheckPool is CheckDatabase's check on p, a pool of a tenant database
// already open (a move's target, `enqueue db list`): on one of its
// connections, the role may create schemas in the database, and the
// server takes writes. Its errors are CheckDatabase's: ErrRefused
// (ErrRefusedTLS too), ErrUnreachable (also for a check cut by ctx),
// ErrMayNotCreateSchemas with the grant, ErrNotUTF8, ErrReadOnly; they never quote
// the URL.
func CheckPool(ctx context.Context, p *pgxpool.Pool) error {
	c, err := p.Acquire(ctx)
	if err != nil {
		return connectError(ctx, err)
	}
	defer c.Release()
	if err := checkPrivileges(ctx, c); err != nil {
		return checkError(ctx, err)
	}
	return checkError(ctx, checkWrites(ctx, c))
}

// checkWrites is CheckPool's check that q's server takes writes:
// ErrReadOnly, naming the database, when transaction_read_only is on.
func checkWrites(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) error {
	var readOnly, db string
	if err := q.QueryRow(ctx, readOnlySQL+", pg_catalog.current_database()").Scan(&readOnly, &db); err != nil {
		return fmt.Errorf("check writes: %w", err)
	}
	if readOnly == "on" {
		return fmt.Errorf("database %s %w: register a primary", db, ErrReadOnly)
	}
	return nil
}

// checkOwn is CheckPool's check on a connection of its own (dialOwn)
// dialed with cfg, the configuration of a database's pool, instead of one
// of the pool's, each query within checkTimeout, as a re-check makes it
// (recheckAt, CheckTarget). It checks that the server takes writes only
// when writes is set (CheckTarget's; a re-check is of the privileges a
// late check found lacking). Its errors are CheckPool's.
func checkOwn(ctx context.Context, cfg *pgx.ConnConfig, writes bool) error {
	conn, release, err := dialOwn(ctx, cfg)
	if err != nil {
		return connectError(ctx, err)
	}
	defer release()
	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	if err := checkPrivileges(cctx, conn); err != nil || !writes {
		return checkError(cctx, err)
	}
	return checkError(cctx, checkWrites(cctx, conn))
}

// connectError is CheckPool's error for err, of a connection that could
// not be made: ErrRefused (ErrRefusedTLS) when the server refused it
// (refusal), ErrUnreachable otherwise.
func connectError(ctx context.Context, err error) error {
	if ref := refusal(ctx, err); ref != nil {
		return fmt.Errorf("connect: %w: %w", ref, err)
	}
	return fmt.Errorf("connect: %w: %w", ErrUnreachable, err)
}

// checkError is CheckPool's error for err, checkPrivileges' on a
// connection made: a query cut by ctx is ErrUnreachable.
func checkError(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && !errors.Is(err, ErrMayNotCreateSchemas) {
		err = fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return err
}

// CheckTarget is CheckPool's check of p, the open pool of database name
// (a move's target: SchemaPoolRegistration), made on a connection of its
// own (as a re-check makes it: one of p's may wait while p is busy, or be
// one made before the server began refusing the login). When it passes, a
// TENANT_DATABASES database found unusable (Unusable) is usable again at
// once, with the info line of a re-check that passes, not only at its
// next re-check (Options.RecheckInterval). Like CheckPool it requires the
// server to take writes (ErrReadOnly otherwise: a move there would fail
// at the copy's CREATE SCHEMA, after the queue's pause). Its errors are
// CheckPool's; a failure leaves Unusable as it is.
func (r *Registry) CheckTarget(ctx context.Context, name string, p *pgxpool.Pool) error {
	if err := checkOwn(ctx, p.Config().ConnConfig, true); err != nil {
		return err
	}
	r.passedAgain(ctx, name)
	return nil
}

// CheckSchemas checks database name now, whatever Unusable says, as
// `enqueue db add` checks one (CheckDatabase: one connection of its own,
// closed at once, not the registry's pool of the database, which with
// Options.KeepConns would open MaxConns connections to each database
// checked); "main" on the pool that creates its tenants' schemas
// (MIGRATIONS_DATABASE_URL's, CheckPool). `enqueue db list` shows its
// outcome. ErrUnknownDatabase for a database not registered, or without
// a URL here.
func (r *Registry) CheckSchemas(ctx context.Context, name string) error {
	if name == tenantctx.DefaultDatabase || name == "" {
		return CheckPool(ctx, r.opts.MainSchemaPool)
	}
	dsn, _, err := r.resolve(ctx, name, 0)
	if err != nil {
		return err
	}
	return CheckDatabase(ctx, dsn, r.log)
}

// checkPrivileges is CheckDatabase's check of the URL's role on q, a
// connection to its database, and of the database's encoding (ErrNotUTF8).
func checkPrivileges(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) error {
	if err := schema.CheckEncoding(ctx, q); err != nil {
		if errors.Is(err, schema.ErrNotUTF8) {
			return fmt.Errorf("%w: %w", ErrNotUTF8, err)
		}
		return err
	}
	var role, db string
	var mayCreate bool
	if err := q.QueryRow(ctx, "SELECT current_user, pg_catalog.current_database(), "+
		"pg_catalog.has_database_privilege(current_user, pg_catalog.current_database(), 'CREATE')").Scan(&role, &db, &mayCreate); err != nil {
		return fmt.Errorf("check privileges: %w", err)
	}
	if !mayCreate {
		return fmt.Errorf("role %s %w in database %s, which provisioning a tenant there does: "+
			"make the role the database's owner (ALTER DATABASE %s OWNER TO %s) or GRANT CREATE ON DATABASE %s TO %s",
			role, ErrMayNotCreateSchemas, db, pgx.Identifier{db}.Sanitize(), pgx.Identifier{role}.Sanitize(), pgx.Identifier{db}.Sanitize(), pgx.Identifier{role}.Sanitize())
	}
	return nil
}

// checkTimeout bounds CheckConfigured's check of one database.
const checkTimeout = 10 * time.Second

// CheckConfigured checks each database of Options.URLs (TENANT_DATABASES)
// as `enqueue db add` checks a database (CheckDatabase), all at once, each
// within 10 s. Each process calls it at start. A role that may not create
// schemas in its database is an error naming the database and the grant
// (ErrMayNotCreateSchemas): a tenant placed there would stay
// provisioning; so is a server that refuses the login or the database
// (ErrRefused: a wrong password, an unknown role or database) or the
// URL's TLS setting (ErrRefusedTLS: sslmode=require against a server
// without TLS, a certificate that does not verify), a misconfiguration
// rather than an outage. A database that takes no writes (ErrReadOnly)
// is a warning saying so, not an error: a failover may be under way, and
// its tenants' work waits until it takes writes. A database that cannot be
// reached otherwise (ErrUnreachable) is not: it is logged as a warning
// saying its privileges were not checked yet, its tenants wait for it
// while the others are served, as before the check, and it is checked
// the first time a connection to it is made (checkLate).
func (r *Registry) CheckConfigured(ctx context.Context) error {
	names := make([]string, 0, len(r.opts.URLs))
	for n := range r.opts.URLs {
		names = append(names, n)
	}
	slices.Sort(names)
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			err := CheckDatabase(cctx, r.opts.URLs[n], r.log)
			switch {
			case err == nil:
			case errors.Is(err, ErrReadOnly):
				// Its privileges passed; a failover may be under way.
				r.log.WarnContext(ctx, "tenant database takes no writes at start (TENANT_DATABASES): its tenants' work waits until it does; a replica's URL or a database left read-only must be replaced by its primary's",
					slog.String("database", n), slog.String("error", err.Error()))
			case errors.Is(err, ErrMayNotCreateSchemas), errors.Is(err, ErrRefused):
				errs[i] = fmt.Errorf("TENANT_DATABASES: database %s: %w", n, err)
			case errors.Is(err, ErrUnreachable) || cctx.Err() != nil:
				r.lateMu.Lock()
				r.pending[n] = &lateCheck{sem: make(chan struct{}, 1)}
				r.lateMu.Unlock()
				r.log.WarnContext(ctx, "tenant database could not be checked at start (TENANT_DATABASES): its privileges were not checked yet, they are on its first connection; its tenants wait for it, the others are served",
					slog.String("database", n), slog.String("error", err.Error()))
			default:
				errs[i] = fmt.Errorf("TENANT_DATABASES: database %s: %w", n, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
