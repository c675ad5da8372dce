package tenantctx

import (
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// Status is a tenant's lifecycle state. The lifecycle is
// provisioning -> active <-> suspended -> deleting -> (row removed).
type Status string

// The tenant statuses. What each allows is the status policy
// (Status.Decide).
const (
	// StatusProvisioning: the catalog row exists; the schema is being created
	// and migrated. Only tenant:migrate runs for it.
	StatusProvisioning Status = "provisioning"
	// StatusActive: ordinary work runs.
	StatusActive Status = "active"
	// StatusSuspended: work waits (retried later) until the tenant resumes.
	StatusSuspended Status = "suspended"
	// StatusDeleting: the tenant is being erased; only tenant:destroy runs,
	// every other task is archived.
	StatusDeleting Status = "deleting"
)

// ErrInvalidStatus is returned by ParseStatus for an unknown status.
var ErrInvalidStatus = errors.New("invalid tenant status")

// Statuses lists every status in lifecycle order.
var Statuses = []Status{StatusProvisioning, StatusActive, StatusSuspended, StatusDeleting}

// ParseStatus returns the Status named by s.
func ParseStatus(s string) (Status, error) {
	for _, st := range Statuses {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("parse status %.40q: %w", s, ErrInvalidStatus)
}

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	_, err := ParseStatus(string(s))
	return err == nil
}

// CanTransition reports whether a tenant may move from s to next.
// Setting the same status again is allowed (idempotent writes).
func (s Status) CanTransition(next Status) bool {
	if s == next {
		return true
	}
	switch s {
	case StatusProvisioning:
		return next == StatusActive || next == StatusDeleting
	case StatusActive:
		return next == StatusSuspended || next == StatusDeleting
	case StatusSuspended:
		return next == StatusActive || next == StatusDeleting
	}
	return false
}

// Tenant is one customer organisation of the SaaS and where its data lives.
type Tenant struct {
	// ID is the stable, opaque identifier carried in every task payload.
	ID string `json:"id"`
	// Slug is the tenant's subdomain label (acme in acme.example.com).
	Slug string `json:"slug"`
	// Name is the display name, printed on invoices.
	Name string `json:"name"`
	// Status is the lifecycle state.
	Status Status `json:"status"`
	// Schema is the PostgreSQL schema holding the tenant's data; always
	// SchemaForSlug(Slug).
	Schema string `json:"schema"`
	// Plan is the commercial plan (free text, e.g. "free", "pro"). It
	// picks the tenant's share and caps in fair dispatch.
	Plan string `json:"plan"`
	// Limits override the plan's share and caps for this tenant.
	Limits Limits `json:"limits"`
	// Database names the tenant database (a PostgreSQL database registered
	// in the catalog) holding Schema; "" or DefaultDatabase is the one
	// DATABASE_URL points to.
	Database string `json:"database"`
	// DatabaseGeneration is the catalog's number of the registration of
	// Database the tenant was read with (storage.Database.Generation): a
	// database removed and registered again under the same name gets a new,
	// larger one, so a process holding a pool opened for an older
	// registration opens the new one. 0 means unknown (a tenant built in
	// code): any pool of that name serves. The tenant cache serves no
	// tenant without it from Redis (an entry of the previous release): it
	// reads the catalog again.
	DatabaseGeneration int64 `json:"database_generation,omitempty"`
	// TimeZone is the IANA name of the tenant's time zone (ValidateTimeZone),
	// the calendar its invoices' due dates are judged in: an invoice is
	// overdue once its due date is before the tenant's current date. ""
	// (a tenant built in code, or a cache entry written by a release
	// without it) means DefaultTimeZone (TimeZoneName, Location).
	TimeZone string `json:"time_zone,omitempty"`
	// CreatedAt and UpdatedAt are set by the catalog. Every change of the
	// tenant moves UpdatedAt forward, never back, even two at the same
	// time: it orders the tenant's versions (fair.PolicyVersion).
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Validate checks the tenant's id, slug, schema, status, limits,
// database and time zone ("" allowed: DefaultTimeZone).
func (t Tenant) Validate() error {
	if err := ValidateID(t.ID); err != nil {
		return err
	}
	if err := ValidateSlug(t.Slug); err != nil {
		return err
	}
	if err := ValidateSchema(t.Schema); err != nil {
		return err
	}
	if want := SchemaForSlug(t.Slug); t.Schema != want {
		return fmt.Errorf("tenant %s: schema %q does not match slug %q", t.ID, t.Schema, t.Slug)
	}
	if !t.Status.Valid() {
		return fmt.Errorf("tenant %s: %w: %.40q", t.ID, ErrInvalidStatus, t.Status)
	}
	if err := t.Limits.Validate(); err != nil {
		return fmt.Errorf("tenant %s: %w", t.ID, err)
	}
	if t.Database != "" {
		if err := ValidateDatabaseName(t.Database); err != nil {
			return fmt.Errorf("tenant %s: %w", t.ID, err)
		}
	}
	if t.TimeZone != "" {
		if err := ValidateTimeZone(t.TimeZone); err != nil {
			return fmt.Errorf("tenant %s: %w", t.ID, err)
		}
	}
	return nil
}

// DatabaseName returns the tenant's placement: Database, or
// DefaultDatabase when it is empty.
func (t Tenant) DatabaseName() string {
	if t.Database == "" {
		return DefaultDatabase
	}
	return t.Database
}

// Bounds of a tenant's free-text fields.
const (
	// MaxNameLen bounds a tenant's name, in bytes (it is printed on its
	// invoices).
	MaxNameLen = 200
	// MaxPlanLen bounds a plan's name, in bytes.
	MaxPlanLen = 40
)

// ErrInvalidText: a tenant's name or plan is too long, not valid UTF-8,
// or holds control characters.
var ErrInvalidText = errors.New("invalid tenant text")

// ValidateText checks a free-text field of a tenant named field: at most
// max bytes of valid UTF-8 without control characters. The error wraps
// ErrInvalidText and says what is wrong with which field, not the value.
func ValidateText(field, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalidText, field, max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidText, field)
	}
	for _, c := range s {
		if unicode.IsControl(c) {
			return fmt.Errorf("%w: %s contains control characters", ErrInvalidText, field)
		}
	}
	return nil
}

// New returns a provisioning tenant with a fresh id, the schema derived
// from slug and DefaultTimeZone, after validating the slug, the name and
// the plan (ValidateText).
func New(slug, name, plan string) (Tenant, error) {
	if err := ValidateSlug(slug); err != nil {
		return Tenant{}, err
	}
	if err := errors.Join(ValidateText("name", name, MaxNameLen), ValidateText("plan", plan, MaxPlanLen)); err != nil {
		return Tenant{}, err
	}
	return Tenant{
		ID:       NewID(),
		Slug:     slug,
		Name:     name,
		Status:   StatusProvisioning,
		Schema:   SchemaForSlug(slug),
		Plan:     plan,
		Database: DefaultDatabase,
		TimeZone: DefaultTimeZone,
	}, nil
}
