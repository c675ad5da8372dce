package devstack

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"time"
)

// Defaults of Options.
const (
	DefaultHTTPAddr     = "localhost:8080"
	DefaultWorkerAddr   = "127.0.0.1:0"
	DefaultDataDir      = "./devdata"
	DefaultDomainSuffix = ".localhost"
	DefaultSweepCron    = "@every 1m"
	// DefaultActivateTimeout bounds waiting for the demo tenants'
	// migrations.
	DefaultActivateTimeout = 2 * time.Minute
	// DatabaseName is the database created on the throwaway server.
	DatabaseName = "tenantworker"
	// workerConcurrency is the dev worker's concurrency; the shared pool
	// gets headroom on top for the enqueue service and the catalog.
	workerConcurrency = 4
	poolHeadroom      = 8
)

// Options configures Run. The zero value runs the stack as `worker -dev`
// does: the enqueue service on localhost:8080, everything under ./devdata,
// a throwaway PostgreSQL.
type Options struct {
	// HTTPAddr is the enqueue service's listen address; "" means
	// DefaultHTTPAddr. Port 0 picks a free port.
	HTTPAddr string
	// WorkerAddr is the worker's health and metrics address; "" means
	// DefaultWorkerAddr (a free loopback port).
	WorkerAddr string
	// DataDir holds documents/, outbox/ and the throwaway PostgreSQL's
	// directory; "" means DefaultDataDir. It is created when missing.
	DataDir string
	// DatabaseURL, when set, is used instead of a throwaway PostgreSQL
	// server; nothing is created on it but the catalog and the demo
	// tenants, and nothing is removed at the end.
	DatabaseURL string
	// AdminToken guards the admin routes and the dashboard; "" means a
	// random token for this run.
	AdminToken string
	// DomainSuffix follows the tenant label in Host; "" means
	// DefaultDomainSuffix (*.localhost resolves to loopback).
	DomainSuffix string
	// SweepCron is the overdue sweep's schedule; "" means DefaultSweepCron.
	SweepCron string
	// ActivateTimeout bounds waiting for the demo tenants to become
	// active; 0 means DefaultActivateTimeout.
	ActivateTimeout time.Duration
	// Stdout receives the banner, once everything is ready; nil discards it.
	Stdout io.Writer
	// Logger receives the logs of every component; nil discards them.
	Logger *slog.Logger
	// Ready, when set, is called with the stack's details right after the
	// banner is printed.
	Ready func(Info)
}

// withDefaults fills the zero fields.
func (o Options) withDefaults() Options {
	o.HTTPAddr = cmp.Or(o.HTTPAddr, DefaultHTTPAddr)
	o.WorkerAddr = cmp.Or(o.WorkerAddr, DefaultWorkerAddr)
	o.DataDir = cmp.Or(o.DataDir, DefaultDataDir)
	o.DomainSuffix = cmp.Or(o.DomainSuffix, DefaultDomainSuffix)
	o.SweepCron = cmp.Or(o.SweepCron, DefaultSweepCron)
	o.ActivateTimeout = cmp.Or(o.ActivateTimeout, DefaultActivateTimeout)
	if o.AdminToken == "" {
		o.AdminToken = randomToken()
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// randomToken returns 32 random hex digits.
func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
