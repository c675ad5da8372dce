package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/invoicing/tenantworker/tenantctx"
)

// Errors a Catalog returns; match them with errors.Is.
var (
	// ErrNotFound: no such tenant, key or document.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the slug, schema or id is already taken.
	ErrConflict = errors.New("already exists")
	// ErrInUse: the database cannot be removed: it is the catalog's own,
	// or tenants are placed there.
	ErrInUse = errors.New("in use")
	// ErrInvalidTransition: the status change is not allowed by the lifecycle.
	ErrInvalidTransition = errors.New("invalid status transition")
	// ErrInvalidationFailed: a write that revokes access (a status change,
	// a deletion, a key revocation) reached the backend, but the cache
	// could not invalidate it in Redis or publish the invalidation to the
	// other instances, so they may keep the old answer until their cached
	// entries expire. The change is saved; the write is safe to retry, and
	// a retry invalidates again. The HTTP API answers 503.
	ErrInvalidationFailed = errors.New("cache invalidation not propagated")
	// ErrInvalidationPending: a write reached the backend, and its cache
	// invalidation was still under way when the caller's deadline passed
	// (an admin request's): it goes on without the caller, within its own
	// bound (5 s), and logs its outcome. It wraps ErrInvalidationFailed:
	// until it ends, other instances may keep the old answer. The write is
	// safe to retry.
	ErrInvalidationPending = fmt.Errorf("%w yet: still under way at the caller's deadline", ErrInvalidationFailed)
	// ErrPlacementChanged: the tenant is not on the database the caller
	// expected (SetPlacement's from): another move switched it meanwhile.
	ErrPlacementChanged = errors.New("placement changed meanwhile")
	// ErrRegistrationChanged: the database is not the registration the
	// caller expected (SetPlacement's generation, Database.Generation): it
	// was removed, or removed and registered again (possibly on another
	// server), meanwhile.
	ErrRegistrationChanged = errors.New("database registration changed meanwhile")
	// ErrStatusChanged: the tenant's status is not the one the caller
	// expected (SetStatusFrom's from): another change came first.
	ErrStatusChanged = errors.New("status changed meanwhile")
	// ErrTenantDeleting: the tenant is being deleted (its status is
	// deleting), so it gets no new API key (IssueAPIKey) nor new limits
	// (SetLimits).
	ErrTenantDeleting = errors.New("tenant is being deleted")
)

// DefaultPageSize and MaxPageSize bound ListTenants.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// ListOptions pages through tenants in id order (keyset pagination, so
// 100,000 tenants never load at once).
type ListOptions struct {
	// Status filters by status; empty lists every status.
	Status tenantctx.Status
	// After is the last id of the previous page; empty starts at the top.
	After string
	// Limit is the page size; 0 means DefaultPageSize, capped at MaxPageSize.
	Limit int
}

// PageLimit returns o.Limit with its default and cap applied.
func (o ListOptions) PageLimit() int {
	switch {
	case o.Limit <= 0:
		return DefaultPageSize
	case o.Limit > MaxPageSize:
		return MaxPageSize
	}
	return o.Limit
}

// TenantStore reads and writes tenant records.
type TenantStore interface {
	// TenantByID returns the tenant with the given id, or ErrNotFound.
	TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error)
	// TenantBySlug returns the tenant with the given slug, or ErrNotFound.
	TenantBySlug(ctx context.Context, slug string) (tenantctx.Tenant, error)
	// ListTenants returns one page of tenants ordered by id.
	ListTenants(ctx context.Context, opts ListOptions) ([]tenantctx.Tenant, error)
	// CreateTenant inserts t (validated first) and returns it with its
	// timestamps set; ErrConflict when the id, slug or schema is taken, or
	// the id was used before (by a tenant since deleted, or withdrawn).
	CreateTenant(ctx context.Context, t tenantctx.Tenant) (tenantctx.Tenant, error)
	// SetStatus moves a tenant to status; ErrInvalidTransition when the
	// lifecycle forbids it, ErrNotFound for an unknown id.
	SetStatus(ctx context.Context, id string, status tenantctx.Status) (tenantctx.Tenant, error)
	// SetStatusFrom is SetStatus only while the tenant's status is from:
	// otherwise it changes nothing and returns the tenant as it is with an
	// error wrapping ErrStatusChanged.
	SetStatusFrom(ctx context.Context, id string, from, to tenantctx.Status) (tenantctx.Tenant, error)
	// SetLimits replaces the tenant's plan (an empty plan keeps it) and its
	// limits (tenantctx.Limits, validated); ErrNotFound for an unknown id,
	// ErrTenantDeleting (nothing changed) for a tenant being deleted, also
	// when its deletion is requested while the limits change.
	SetLimits(ctx context.Context, id, plan string, l tenantctx.Limits) (tenantctx.Tenant, error)
	// SetTimeZone replaces the tenant's time zone (an IANA name,
	// tenantctx.ValidateTimeZone, else an error wrapping
	// tenantctx.ErrInvalidTimeZone); ErrNotFound for an unknown id,
	// ErrTenantDeleting (nothing changed) for a tenant being deleted.
	SetTimeZone(ctx context.Context, id, zone string) (tenantctx.Tenant, error)
	// DeleteTenant removes the tenant's catalog row and its API keys. The
	// audit log is kept. Deleting an unknown id returns ErrNotFound.
	DeleteTenant(ctx context.Context, id string) error
	// WithdrawTenant is DeleteTenant for a tenant whose CreateTenant's
	// outcome is unknown to the caller (its answer lost): it also waits for
	// that creation if it is still running, and makes it fail if it reaches
	// the catalog only afterwards, so the id never exists after it
	// returned nil or ErrNotFound (nothing was there to delete).
	WithdrawTenant(ctx context.Context, id string) error
}

// MaxAPIKeysListed bounds the revoked keys ListAPIKeys lists: past it, the
// keys left out are the oldest revoked ones. An unrevoked key is never left
// out, however many there are: the list is how an operator finds a leaked
// key to revoke it.
const MaxAPIKeysListed = 1000

// APIKey describes one stored API key. The key itself is never stored:
// only its SHA-256 and its first characters (Prefix), so an operator can
// tell keys apart.
type APIKey struct {
	// ID names the key in the admin API (DELETE .../keys/{id}).
	ID       int64  `json:"id"`
	TenantID string `json:"tenant_id"`
	// Prefix is the key's first APIKeyDisplayLen characters ("tk_" and 6
	// more); empty for keys issued before prefixes were recorded.
	Prefix    string    `json:"prefix"`
	CreatedAt time.Time `json:"created_at"`
	// LastUsedAt is when the key last authenticated a request, as recorded
	// by KeyUsage (batched, so up to its flush interval late); nil when
	// never recorded.
	LastUsedAt *time.Time `json:"last_used_at"`
	// RevokedAt is when the key was revoked; nil while it is valid.
	RevokedAt *time.Time `json:"revoked_at"`
}

// KeyStore manages tenant API keys. Only a SHA-256 of a key is stored.
type KeyStore interface {
	// CreateAPIKey is IssueAPIKey returning only the key.
	CreateAPIKey(ctx context.Context, tenantID string) (string, error)
	// IssueAPIKey returns a new key for the tenant ("tk_" and 32 random
	// bytes in unpadded base64url; the plaintext is returned only here) and
	// its record; ErrNotFound for an unknown tenant, ErrTenantDeleting for
	// one being deleted. A key is issued either before the tenant's
	// deletion is requested (its status set to deleting) or not at all,
	// and DeleteTenant waits for an issuance in progress.
	IssueAPIKey(ctx context.Context, tenantID string) (APIKey, string, error)
	// StoreAPIKey is IssueAPIKey with a key the caller made (NewAPIKey):
	// it stores the key's hash and display prefix and returns its record.
	// A caller that knows the key before the catalog answers can take it
	// back (WithdrawAPIKey) when that answer is lost. ErrConflict when the
	// key is stored already (a withdrawn one included).
	StoreAPIKey(ctx context.Context, tenantID, key string) (APIKey, error)
	// WithdrawAPIKey makes sure that key, given to a StoreAPIKey whose
	// outcome the caller does not know (its answer was lost), never
	// authenticates: it revokes the key if it is stored, and otherwise
	// stores it revoked, so that such a StoreAPIKey still in flight fails
	// (ErrConflict) instead of storing it later. It returns the key's
	// record, revoked (a key revoked before keeps its revocation time);
	// ErrNotFound for an unknown tenant (whose keys went with it) or a key
	// of another tenant.
	WithdrawAPIKey(ctx context.Context, tenantID, key string) (APIKey, error)
	// TenantForAPIKey returns the id of the tenant owning key, or
	// ErrNotFound for an unknown or revoked key. The comparison of the
	// stored hash is constant-time.
	TenantForAPIKey(ctx context.Context, key string) (string, error)
	// ListAPIKeys returns the tenant's keys, revoked ones included, oldest
	// first: every unrevoked key, then the most recently issued revoked
	// ones, MaxAPIKeysListed keys in all unless more are unrevoked; none
	// for an unknown tenant.
	ListAPIKeys(ctx context.Context, tenantID string) ([]APIKey, error)
	// RevokeAPIKey revokes one key of the tenant and reports whether this
	// call revoked it: revoking a revoked key again is not an error, and of
	// concurrent calls exactly one reports true. ErrNotFound when the
	// tenant has no key with that id (another tenant's key included).
	RevokeAPIKey(ctx context.Context, tenantID string, keyID int64) (revoked bool, err error)
	// RevokeAPIKeys revokes every key of the tenant.
	RevokeAPIKeys(ctx context.Context, tenantID string) error
	// RecordAPIKeyUse sets the last use of the keys named by their hashes
	// (HashAPIKey) to the times given, where those are later than what is
	// recorded. Unknown hashes are ignored.
	RecordAPIKeyUse(ctx context.Context, uses map[string]time.Time) error
}

// AuditEntry is one line of the audit log. It outlives a deleted tenant and
// holds no personal data: ids, slugs, actions and counts only.
type AuditEntry struct {
	At       time.Time       `json:"at"`
	TenantID string          `json:"tenant_id"`
	Actor    string          `json:"actor"`  // e.g. "admin", "worker", "dev"
	Action   string          `json:"action"` // e.g. "tenant.provision", "tenant.status", "tenant.delete", "tenant.migrate"
	Detail   json.RawMessage `json:"detail,omitempty"`
}

// AuditLog appends to and reads the audit log.
type AuditLog interface {
	// AppendAudit records e; a zero At means now.
	AppendAudit(ctx context.Context, e AuditEntry) error
	// AppendAuditOnce records e unless the tenant's log already holds an
	// entry of e.Action, and reports whether it did; of concurrent calls
	// for one tenant and action, one appends.
	AppendAuditOnce(ctx context.Context, e AuditEntry) (bool, error)
	// AppendAuditUnlessLatest records e unless, of the tenant's entries of
	// e.Action whose detail contains among (all of them when among is
	// empty), the latest has a detail containing match, and reports
	// whether it did; of concurrent calls (and AppendAuditOnce calls) for
	// one tenant and action, each sees what the others appended. A detail
	// contains a JSON object when it is an object holding each of its
	// members with an equal value. It records a change whose outcome the
	// caller could not know (a lost answer) once, whichever call records it.
	AppendAuditUnlessLatest(ctx context.Context, e AuditEntry, among, match json.RawMessage) (bool, error)
	// AuditEntries returns the entries of one tenant, oldest first.
	AuditEntries(ctx context.Context, tenantID string) ([]AuditEntry, error)
}

// Database is a tenant database registered in the catalog: a PostgreSQL
// database holding tenant schemas. tenantctx.DefaultDatabase ("main") is
// the one DATABASE_URL points to and is always registered.
type Database struct {
	// Name is the catalog's name for it (tenantctx.ValidateDatabaseName).
	Name string `json:"name"`
	// URL is the connection URL stored by `enqueue db add`; empty for
	// "main" and for databases configured in TENANT_DATABASES. It may hold
	// a password: never log or print it unredacted.
	URL string `json:"-"`
	// Tenants counts the tenants placed there, whatever their status.
	Tenants   int       `json:"tenants"`
	CreatedAt time.Time `json:"created_at"`
	// Generation numbers this registration of Name: a database removed
	// and registered again under the same name gets a new, larger one.
	// Tenants carry it (tenantctx.Tenant.DatabaseGeneration).
	Generation int64 `json:"generation"`
}

// PlacementStore registers tenant databases and records which one holds
// each tenant's schema.
type PlacementStore interface {
	// AddDatabase registers a tenant database (name validated, url stored
	// as given, possibly empty) with a Generation larger than any before;
	// ErrConflict when the name is taken.
	AddDatabase(ctx context.Context, name, url string) (Database, error)
	// Databases lists the registered databases in name order, each with
	// its tenant count.
	Databases(ctx context.Context) ([]Database, error)
	// RemoveDatabase unregisters a tenant database that holds no tenant.
	// Errors: ErrNotFound for a name not registered, ErrConflict for
	// tenantctx.DefaultDatabase (the catalog's own) or a database that
	// holds tenants (also one placed there while the removal ran).
	RemoveDatabase(ctx context.Context, name string) error
	// SetPlacement records that the tenant's schema now lives in database
	// to, if it is placed on from (a compare-and-set: of two moves started
	// from the same placement, only the first switch succeeds; from == to
	// saves the placement again) and, when generation is not 0, if to is
	// still that registration (Database.Generation: the one a move copied
	// the schema to). Errors: ErrNotFound for an unknown tenant or an
	// unregistered database, ErrPlacementChanged when the tenant is not on
	// from, ErrInvalidTransition for a tenant that is not active or
	// suspended (one being deleted keeps its placement for its destroy),
	// ErrRegistrationChanged when to was removed, or removed and
	// registered again, since the caller read generation. Nothing changes
	// on an error.
	SetPlacement(ctx context.Context, id, from, to string, generation int64) (tenantctx.Tenant, error)
}

// PauseStore records operators' pauses of tenants' queues, so that a
// pause outlives Redis's data (fair dispatch's holds live in Redis: the
// workers put back the holds of the tenants recorded here when Redis lost
// them).
type PauseStore interface {
	// SetQueuePaused records (paused true) or clears an operator's pause
	// of the tenant's queues; recording or clearing it again changes
	// nothing. ErrNotFound for an unknown tenant (clearing the pause of
	// one is not an error). A deleted tenant's pause goes with it.
	//
	// The writes of one tenant's record are serialized with each other
	// (and with SyncQueuePaused's) and with the tenant's deletion.
	SetQueuePaused(ctx context.Context, id string, paused bool) error
	// SyncQueuePaused makes the record follow the pause's state where it
	// lives (fair dispatch's hold in Redis): it locks the tenant's record
	// against every other write of it (SetQueuePaused, SyncQueuePaused)
	// and the tenant's deletion, calls read while it holds the lock,
	// records or clears the pause as read returned, and releases the lock
	// once the write is saved. It returns what it recorded. So of calls
	// that each follow a change of the state, the write saved last is the
	// one that read last: the record agrees with the state after the last
	// change, whichever call's write would have landed last unlocked.
	// ErrNotFound for an unknown tenant (read is not called; a deleted
	// tenant's record went with it); read's error is returned wrapped,
	// and nothing is written.
	SyncQueuePaused(ctx context.Context, id string, read func(context.Context) (bool, error)) (bool, error)
	// PausedTenants returns the ids of the tenants whose queues are
	// paused, in id order.
	PausedTenants(ctx context.Context) ([]string, error)
}

// Catalog is the whole tenant catalog: tenants, keys, audit log,
// placement and queue pauses.
type Catalog interface {
	TenantStore
	KeyStore
	AuditLog
	PlacementStore
	PauseStore
}
