// Package memstore is an in-memory storage.Catalog for unit tests and
// examples. It has the semantics of the Postgres catalog (the conformance
// suite of storage/storagetest runs against both) and is safe for
// concurrent use; nothing survives the process. Production code does not
// import it: the binaries run on storage.Postgres behind storage.Cache.
package memstore

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// Catalog is the in-memory catalog: tenants, API key hashes and the audit
// log in maps.
type Catalog struct {
	mu      sync.RWMutex
	pauseMu sync.Mutex                  // serializes the writes of pause records (SyncQueuePaused)
	tenants map[string]tenantctx.Tenant // by id
	slugs   map[string]string           // slug -> id
	schemas map[string]string           // schema -> id
	keys    map[string]memoryKey        // key hash -> key
	keySeq  int64                       // the last key id handed out
	audit   []storage.AuditEntry
	dbs     map[string]storage.Database // registered tenant databases by name
	dbGen   int64                       // the last database generation handed out
	paused  map[string]bool             // tenants whose queues an operator paused
	ids     map[string]bool             // every id ever created or withdrawn (tenancy.tenant_ids)

	queries atomic.Int64
	now     func() time.Time
}

// memoryKey is one stored API key: only its hash, never the plaintext.
type memoryKey struct {
	hash string
	storage.APIKey
}

var _ storage.Catalog = (*Catalog)(nil)

// New returns an empty in-memory catalog.
func New() *Catalog {
	return &Catalog{
		tenants: make(map[string]tenantctx.Tenant),
		slugs:   make(map[string]string),
		schemas: make(map[string]string),
		dbs:     map[string]storage.Database{tenantctx.DefaultDatabase: {Name: tenantctx.DefaultDatabase, CreatedAt: time.Now(), Generation: 1}},
		dbGen:   1,
		keys:    make(map[string]memoryKey),
		paused:  make(map[string]bool),
		ids:     make(map[string]bool),
		now:     memoryNow,
	}
}

// memoryNow is the catalog clock: UTC with microsecond precision, the
// precision of a PostgreSQL timestamptz, so both catalogs return equal
// values.
func memoryNow() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// later is the UpdatedAt of a change of a tenant last updated at prev:
// now, or a microsecond past prev should the clock not have passed it (as
// PostgreSQL's catalog moves updated_at forward).
func (m *Catalog) later(prev time.Time) time.Time {
	if now := m.now(); now.After(prev) {
		return now
	}
	return prev.Add(time.Microsecond)
}

// Queries returns the number of read lookups served so far (TenantByID,
// TenantBySlug and TenantForAPIKey, found or not; malformed input is
// refused before it counts, as Postgres refuses it before SQL), so tests
// can count what reaches the backend behind a cache.
func (m *Catalog) Queries() int64 { return m.queries.Load() }

// TenantByID returns the tenant with the given id, or storage.ErrNotFound.
func (m *Catalog) TenantByID(_ context.Context, id string) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("tenant: %w: %w", storage.ErrNotFound, err)
	}
	m.queries.Add(1)
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.tenants[id]
	if !ok {
		return tenantctx.Tenant{}, fmt.Errorf("tenant %s: %w", id, storage.ErrNotFound)
	}
	return t, nil
}

// TenantBySlug returns the tenant with the given slug, or storage.ErrNotFound.
func (m *Catalog) TenantBySlug(_ context.Context, slug string) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateSlug(slug); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("tenant by slug: %w: %w", storage.ErrNotFound, err)
	}
	m.queries.Add(1)
	m.mu.RLock()
	defer m.mu.RUnlock()
	id, ok := m.slugs[slug]
	if !ok {
		return tenantctx.Tenant{}, fmt.Errorf("tenant by slug %s: %w", slug, storage.ErrNotFound)
	}
	return m.tenants[id], nil
}

// ListTenants returns one page of tenants ordered by id, after opts.After,
// optionally filtered by status.
func (m *Catalog) ListTenants(_ context.Context, opts storage.ListOptions) ([]tenantctx.Tenant, error) {
	if opts.Status != "" && !opts.Status.Valid() {
		return nil, fmt.Errorf("list tenants: %w: %.40q", tenantctx.ErrInvalidStatus, opts.Status)
	}
	m.mu.RLock()
	page := make([]tenantctx.Tenant, 0, min(len(m.tenants), opts.PageLimit()))
	for _, t := range m.tenants {
		if t.ID > opts.After && (opts.Status == "" || t.Status == opts.Status) {
			page = append(page, t)
		}
	}
	m.mu.RUnlock()
	slices.SortFunc(page, func(a, b tenantctx.Tenant) int { return cmp.Compare(a.ID, b.ID) })
	if len(page) > opts.PageLimit() {
		page = page[:opts.PageLimit()]
	}
	return page, nil
}

// CreateTenant validates and inserts t with its timestamps set; storage.ErrConflict
// when the id, slug or schema is taken, or the id was used before (by a
// tenant since deleted, or withdrawn).
func (m *Catalog) CreateTenant(_ context.Context, t tenantctx.Tenant) (tenantctx.Tenant, error) {
	if err := t.Validate(); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("create tenant: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.ids[t.ID]:
		return tenantctx.Tenant{}, fmt.Errorf("create tenant %s: id: %w", t.ID, storage.ErrConflict)
	case m.slugs[t.Slug] != "":
		return tenantctx.Tenant{}, fmt.Errorf("create tenant %s: slug %s: %w", t.ID, t.Slug, storage.ErrConflict)
	case m.schemas[t.Schema] != "":
		return tenantctx.Tenant{}, fmt.Errorf("create tenant %s: schema %s: %w", t.ID, t.Schema, storage.ErrConflict)
	case m.dbs[t.DatabaseName()].Name == "":
		return tenantctx.Tenant{}, fmt.Errorf("create tenant %s: database %s: %w", t.ID, t.DatabaseName(), storage.ErrNotFound)
	}
	t.Database = t.DatabaseName()
	t.TimeZone = t.TimeZoneName()
	t.DatabaseGeneration = m.dbs[t.Database].Generation
	now := m.now()
	t.CreatedAt, t.UpdatedAt = now, now
	m.tenants[t.ID] = t
	m.ids[t.ID] = true
	m.slugs[t.Slug] = t.ID
	m.schemas[t.Schema] = t.ID
	return t, nil
}

// SetStatus moves a tenant to status when the lifecycle allows it. Setting
// the current status again changes nothing.
func (m *Catalog) SetStatus(_ context.Context, id string, status tenantctx.Status) (tenantctx.Tenant, error) {
	return m.setStatus(id, "", status)
}

// SetStatusFrom moves a tenant to status only while its status is from.
func (m *Catalog) SetStatusFrom(_ context.Context, id string, from, status tenantctx.Status) (tenantctx.Tenant, error) {
	if !from.Valid() {
		return tenantctx.Tenant{}, fmt.Errorf("set status of tenant %s: %w: %w: from %.40q",
			id, storage.ErrInvalidTransition, tenantctx.ErrInvalidStatus, from)
	}
	return m.setStatus(id, from, status)
}

// setStatus is SetStatus, and SetStatusFrom when from is set.
func (m *Catalog) setStatus(id string, from, status tenantctx.Status) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set status: %w: %w", storage.ErrNotFound, err)
	}
	if !status.Valid() {
		return tenantctx.Tenant{}, fmt.Errorf("set status of tenant %s: %w: %w: %.40q",
			id, storage.ErrInvalidTransition, tenantctx.ErrInvalidStatus, status)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tenants[id]
	if !ok {
		return tenantctx.Tenant{}, fmt.Errorf("set status of tenant %s: %w", id, storage.ErrNotFound)
	}
	if from != "" && t.Status != from {
		return t, fmt.Errorf("set status of tenant %s to %s: %w: it is %s, not %s", id, status, storage.ErrStatusChanged, t.Status, from)
	}
	if !t.Status.CanTransition(status) {
		return tenantctx.Tenant{}, fmt.Errorf("set status of tenant %s from %s to %s: %w", id, t.Status, status, storage.ErrInvalidTransition)
	}
	if t.Status == status {
		return t, nil
	}
	t.Status = status
	t.UpdatedAt = m.later(t.UpdatedAt)
	m.tenants[id] = t
	return t, nil
}

// SetTimeZone replaces the tenant's time zone.
func (m *Catalog) SetTimeZone(_ context.Context, id, zone string) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set time zone: %w: %w", storage.ErrNotFound, err)
	}
	if err := tenantctx.ValidateTimeZone(zone); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set time zone of tenant %s: %w", id, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tenants[id]
	if !ok {
		return tenantctx.Tenant{}, fmt.Errorf("set time zone of tenant %s: %w", id, storage.ErrNotFound)
	}
	if t.Status == tenantctx.StatusDeleting {
		return t, fmt.Errorf("set time zone of tenant %s: %w", id, storage.ErrTenantDeleting)
	}
	t.TimeZone = zone
	t.UpdatedAt = m.later(t.UpdatedAt)
	m.tenants[id] = t
	return t, nil
}

// SetLimits replaces the tenant's plan (an empty plan keeps it) and
// limits.
func (m *Catalog) SetLimits(_ context.Context, id, plan string, l tenantctx.Limits) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set limits: %w: %w", storage.ErrNotFound, err)
	}
	if err := l.Validate(); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set limits of tenant %s: %w", id, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tenants[id]
	if !ok {
		return tenantctx.Tenant{}, fmt.Errorf("set limits of tenant %s: %w", id, storage.ErrNotFound)
	}
	if t.Status == tenantctx.StatusDeleting {
		return t, fmt.Errorf("set limits of tenant %s: %w", id, storage.ErrTenantDeleting)
	}
	if plan != "" {
		t.Plan = plan
	}
	t.Limits = l
	t.UpdatedAt = m.later(t.UpdatedAt)
	m.tenants[id] = t
	return t, nil
}

// DeleteTenant removes the tenant and its API keys; the audit log stays.
func (m *Catalog) DeleteTenant(_ context.Context, id string) error {
	if err := tenantctx.ValidateID(id); err != nil {
		return fmt.Errorf("delete tenant: %w: %w", storage.ErrNotFound, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.deleteLocked("delete", id)
}

// WithdrawTenant is DeleteTenant, and no tenant with id can be created
// after it; ErrNotFound when there was none to delete (the id is
// withdrawn all the same). In memory nothing is ever in flight: see
// storage.TenantStore for what it waits for in PostgreSQL.
func (m *Catalog) WithdrawTenant(_ context.Context, id string) error {
	if err := tenantctx.ValidateID(id); err != nil {
		return fmt.Errorf("withdraw tenant: %w: %w", storage.ErrNotFound, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ids[id] = true
	return m.deleteLocked("withdraw", id)
}

// deleteLocked removes tenant id and its keys, with m.mu held.
func (m *Catalog) deleteLocked(verb, id string) error {
	t, ok := m.tenants[id]
	if !ok {
		return fmt.Errorf("%s tenant %s: %w", verb, id, storage.ErrNotFound)
	}
	delete(m.tenants, id)
	delete(m.slugs, t.Slug)
	delete(m.schemas, t.Schema)
	delete(m.paused, id)
	for hash, k := range m.keys {
		if k.TenantID == id {
			delete(m.keys, hash)
		}
	}
	return nil
}

// CreateAPIKey stores the hash of a new key for the tenant and returns the
// plaintext key, the only time it is ever seen.
func (m *Catalog) CreateAPIKey(ctx context.Context, tenantID string) (string, error) {
	_, key, err := m.IssueAPIKey(ctx, tenantID)
	return key, err
}

// TenantForAPIKey returns the id of the tenant owning key, or storage.ErrNotFound
// for a malformed, unknown or revoked key.
//
// The map is indexed by the key's SHA-256, so lookup timing can at most
// reveal something about a hash, never about a key; the stored hash is then
// compared in constant time, as the contract asks.
func (m *Catalog) TenantForAPIKey(_ context.Context, key string) (string, error) {
	if err := storage.CheckAPIKeyFormat(key); err != nil {
		return "", fmt.Errorf("tenant for api key: %w", err)
	}
	m.queries.Add(1)
	hash := storage.HashAPIKey(key)
	m.mu.RLock()
	k, ok := m.keys[hash]
	m.mu.RUnlock()
	if !ok || subtle.ConstantTimeCompare([]byte(k.hash), []byte(hash)) != 1 || k.RevokedAt != nil {
		return "", fmt.Errorf("tenant for api key: %w", storage.ErrNotFound)
	}
	return k.TenantID, nil
}

// RevokeAPIKeys revokes every key of the tenant. A tenant without keys (or
// no such tenant) is not an error, as in Postgres.
func (m *Catalog) RevokeAPIKeys(_ context.Context, tenantID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for hash, k := range m.keys {
		if k.TenantID == tenantID && k.RevokedAt == nil {
			k.RevokedAt = &now
			m.keys[hash] = k
		}
	}
	return nil
}

// AppendAudit records e; a zero At means now.
func (m *Catalog) AppendAudit(_ context.Context, e storage.AuditEntry) error {
	if err := checkAudit(e); err != nil {
		return err
	}
	if e.At.IsZero() {
		e.At = m.now()
	}
	e.Detail = slices.Clone(e.Detail)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.audit = append(m.audit, e)
	return nil
}

// AppendAuditOnce records e unless the tenant's entries hold one of
// e.Action, and reports whether it did.
func (m *Catalog) AppendAuditOnce(_ context.Context, e storage.AuditEntry) (bool, error) {
	if err := checkAudit(e); err != nil {
		return false, err
	}
	if e.At.IsZero() {
		e.At = m.now()
	}
	e.Detail = slices.Clone(e.Detail)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, old := range m.audit {
		if old.TenantID == e.TenantID && old.Action == e.Action {
			return false, nil
		}
	}
	m.audit = append(m.audit, e)
	return true, nil
}

// AppendAuditUnlessLatest records e unless, of the tenant's entries of
// e.Action whose detail contains among (all of them when among is
// empty), the latest has a detail containing match, and reports whether
// it did.
func (m *Catalog) AppendAuditUnlessLatest(_ context.Context, e storage.AuditEntry, among, match json.RawMessage) (bool, error) {
	if err := checkAudit(e); err != nil {
		return false, err
	}
	if e.At.IsZero() {
		e.At = m.now()
	}
	e.Detail = slices.Clone(e.Detail)
	m.mu.Lock()
	defer m.mu.Unlock()
	var latest *storage.AuditEntry
	for i, old := range m.audit {
		if old.TenantID != e.TenantID || old.Action != e.Action || (len(among) > 0 && !containsJSON(old.Detail, among)) {
			continue
		}
		if latest == nil || !old.At.Before(latest.At) {
			latest = &m.audit[i]
		}
	}
	if len(match) == 0 {
		match = json.RawMessage("{}")
	}
	if latest != nil && containsJSON(latest.Detail, match) {
		return false, nil
	}
	m.audit = append(m.audit, e)
	return true, nil
}

// containsJSON reports whether detail is a JSON object holding each member
// of the JSON object want with an equal value (jsonb's @> on the members
// the catalog compares: strings and numbers).
func containsJSON(detail, want json.RawMessage) bool {
	var d, w map[string]any
	if json.Unmarshal(detail, &d) != nil || json.Unmarshal(want, &w) != nil {
		return false
	}
	for k, v := range w {
		if dv, ok := d[k]; !ok || !reflect.DeepEqual(dv, v) {
			return false
		}
	}
	return true
}

// checkAudit refuses an entry without tenant id or action, as the
// PostgreSQL catalog does.
func checkAudit(e storage.AuditEntry) error {
	if e.TenantID == "" || e.Action == "" {
		return fmt.Errorf("append audit %q for tenant %.64q: tenant id and action are required", e.Action, e.TenantID)
	}
	return nil
}

// AuditEntries returns the entries of one tenant, oldest first. Entries of
// a deleted tenant are still there.
func (m *Catalog) AuditEntries(_ context.Context, tenantID string) ([]storage.AuditEntry, error) {
	m.mu.RLock()
	var out []storage.AuditEntry
	for _, e := range m.audit {
		if e.TenantID == tenantID {
			e.Detail = slices.Clone(e.Detail)
			out = append(out, e)
		}
	}
	m.mu.RUnlock()
	slices.SortStableFunc(out, func(a, b storage.AuditEntry) int { return a.At.Compare(b.At) })
	return out, nil
}

// AddDatabase registers a tenant database.
func (m *Catalog) AddDatabase(_ context.Context, name, url string) (storage.Database, error) {
	if err := tenantctx.ValidateDatabaseName(name); err != nil {
		return storage.Database{}, fmt.Errorf("add database: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.dbs[name]; ok {
		return storage.Database{}, fmt.Errorf("add database %s: %w", name, storage.ErrConflict)
	}
	m.dbGen++
	d := storage.Database{Name: name, URL: url, CreatedAt: m.now(), Generation: m.dbGen}
	m.dbs[name] = d
	return d, nil
}

// RemoveDatabase unregisters a database that holds no tenant.
func (m *Catalog) RemoveDatabase(_ context.Context, name string) error {
	if name == tenantctx.DefaultDatabase {
		return fmt.Errorf("remove database %s: %w: it is the catalog's own database", name, storage.ErrInUse)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.dbs[name]; !ok {
		return fmt.Errorf("remove database %.70q: %w", name, storage.ErrNotFound)
	}
	n := 0
	for _, t := range m.tenants {
		if t.DatabaseName() == name {
			n++
		}
	}
	if n > 0 {
		return fmt.Errorf("remove database %s: %w: %d tenants are placed there (move them first)", name, storage.ErrInUse, n)
	}
	delete(m.dbs, name)
	return nil
}

// Databases lists the registered databases in name order with their
// tenant counts.
func (m *Catalog) Databases(_ context.Context) ([]storage.Database, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]storage.Database, 0, len(m.dbs))
	for _, d := range m.dbs {
		d.Tenants = 0
		for _, t := range m.tenants {
			if t.DatabaseName() == d.Name {
				d.Tenants++
			}
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b storage.Database) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// SetPlacement records the tenant's database, if it is on from (and, when
// generation is not 0, to's registration is that one).
func (m *Catalog) SetPlacement(_ context.Context, id, from, to string, generation int64) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set placement: %w: %w", storage.ErrNotFound, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tenants[id]
	if !ok {
		return tenantctx.Tenant{}, fmt.Errorf("set placement of tenant %s: %w", id, storage.ErrNotFound)
	}
	// In Postgres' order: the placement and the status first (the
	// statement's WHERE), then the registration.
	if t.DatabaseName() != from {
		return tenantctx.Tenant{}, fmt.Errorf("set placement of tenant %s: on %s, not %.70s: %w", id, t.DatabaseName(), from, storage.ErrPlacementChanged)
	}
	if t.Status != tenantctx.StatusActive && t.Status != tenantctx.StatusSuspended {
		return tenantctx.Tenant{}, fmt.Errorf("set placement of tenant %s (%s): %w", id, t.Status, storage.ErrInvalidTransition)
	}
	d, registered := m.dbs[to]
	if generation != 0 && d.Generation != generation {
		return tenantctx.Tenant{}, fmt.Errorf("set placement of tenant %s: database %.70q is registration %d, not %d: %w",
			id, to, d.Generation, generation, storage.ErrRegistrationChanged)
	}
	if !registered {
		return tenantctx.Tenant{}, fmt.Errorf("set placement of tenant %s: database %.70q: %w", id, to, storage.ErrNotFound)
	}
	t.Database = to
	t.DatabaseGeneration = m.dbs[to].Generation
	t.UpdatedAt = m.later(t.UpdatedAt)
	m.tenants[id] = t
	return t, nil
}

// SetQueuePaused records or clears an operator's pause of the tenant's
// queues, in turn with SyncQueuePaused.
func (m *Catalog) SetQueuePaused(_ context.Context, id string, paused bool) error {
	if err := tenantctx.ValidateID(id); err != nil {
		return fmt.Errorf("set queue paused: %w: %w", storage.ErrNotFound, err)
	}
	m.pauseMu.Lock()
	defer m.pauseMu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !paused {
		delete(m.paused, id)
		return nil
	}
	if _, ok := m.tenants[id]; !ok {
		return fmt.Errorf("record queue pause of tenant %s: %w", id, storage.ErrNotFound)
	}
	m.paused[id] = true
	return nil
}

// SyncQueuePaused records or clears an operator's pause of the tenant's
// queues as read says, calling read while no other write of a pause
// record runs (see storage.PauseStore). A deletion does not wait for it
// (nothing waits in memory): a write after one finds no tenant
// (ErrNotFound), as a write after PostgreSQL's deletion does.
func (m *Catalog) SyncQueuePaused(ctx context.Context, id string, read func(context.Context) (bool, error)) (bool, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return false, fmt.Errorf("sync queue pause: %w: %w", storage.ErrNotFound, err)
	}
	m.pauseMu.Lock()
	defer m.pauseMu.Unlock()
	m.mu.RLock()
	_, ok := m.tenants[id]
	m.mu.RUnlock()
	if !ok {
		return false, fmt.Errorf("sync queue pause of tenant %s: %w", id, storage.ErrNotFound)
	}
	paused, err := read(ctx)
	if err != nil {
		return false, fmt.Errorf("sync queue pause of tenant %s: read the pause: %w", id, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.tenants[id]; !ok {
		return false, fmt.Errorf("sync queue pause of tenant %s: %w", id, storage.ErrNotFound)
	}
	if paused {
		m.paused[id] = true
	} else {
		delete(m.paused, id)
	}
	return paused, nil
}

// PausedTenants returns the tenants whose queues are paused, in id order.
func (m *Catalog) PausedTenants(_ context.Context) ([]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids := make([]string, 0, len(m.paused))
	for id := range m.paused {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}
