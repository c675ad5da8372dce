package enqueueapp

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Config is what the enqueue service reads from the environment. Its zero
// values are documented per field.
type Config struct {
	// DatabaseURL is the PostgreSQL URL (DATABASE_URL); required unless
	// Options.Pool is given.
	DatabaseURL string
	// RedisURL is the asynq Redis URI (REDIS_URL: redis://, rediss://,
	// redis-sentinel://); required unless Options.RedisConnOpt is given.
	RedisURL string
	// DomainSuffix follows the tenant label in Host (DOMAIN_SUFFIX); empty
	// means ".localhost".
	DomainSuffix string
	// AdminToken guards the admin routes (ADMIN_TOKEN); empty disables them.
	AdminToken string
	// HTTPAddr is the listen address (HTTP_ADDR); empty means ":8080".
	HTTPAddr string
	// AllowTenantHeader enables the X-Tenant fallback (ALLOW_TENANT_HEADER,
	// development only); default false.
	AllowTenantHeader bool
	// DashboardReadOnly makes the asynq dashboard view-only
	// (DASHBOARD_READONLY); it defaults to true when read from the
	// environment.
	DashboardReadOnly bool
	// DocumentsDir is the root of the rendered documents (DOCUMENTS_DIR);
	// empty means "./documents".
	DocumentsDir string
	// LogFormat is "text" or "json" (LOG_FORMAT); empty means text.
	LogFormat string
	// PoolMaxConns caps the PostgreSQL pool (DATABASE_MAX_CONNS); 0 keeps
	// pgx's default.
	PoolMaxConns int32
	// ShutdownTimeout bounds the graceful shutdown (SHUTDOWN_TIMEOUT); 0
	// means 15s.
	ShutdownTimeout time.Duration
}

// withDefaults fills the zero fields that have defaults.
func (c Config) withDefaults() Config {
	c.DomainSuffix = cmp.Or(c.DomainSuffix, ".localhost")
	c.HTTPAddr = cmp.Or(c.HTTPAddr, ":8080")
	c.DocumentsDir = cmp.Or(c.DocumentsDir, "./documents")
	c.LogFormat = cmp.Or(c.LogFormat, "text")
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, 15*time.Second)
	return c
}

// ConfigFromEnv reads Config from getenv (os.Getenv in production). It names
// the variable of the first invalid value.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		DatabaseURL:       getenv("DATABASE_URL"),
		RedisURL:          getenv("REDIS_URL"),
		DomainSuffix:      getenv("DOMAIN_SUFFIX"),
		AdminToken:        getenv("ADMIN_TOKEN"),
		HTTPAddr:          getenv("HTTP_ADDR"),
		DocumentsDir:      getenv("DOCUMENTS_DIR"),
		LogFormat:         strings.ToLower(getenv("LOG_FORMAT")),
		DashboardReadOnly: true,
	}
	var err error
	if c.AllowTenantHeader, err = envBool(getenv, "ALLOW_TENANT_HEADER", false); err != nil {
		return Config{}, err
	}
	if c.DashboardReadOnly, err = envBool(getenv, "DASHBOARD_READONLY", true); err != nil {
		return Config{}, err
	}
	if v := getenv("DATABASE_MAX_CONNS"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 {
			return Config{}, fmt.Errorf("DATABASE_MAX_CONNS: want a positive integer, got %q", v)
		}
		c.PoolMaxConns = int32(n)
	}
	if v := getenv("SHUTDOWN_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return Config{}, fmt.Errorf("SHUTDOWN_TIMEOUT: want a positive duration, got %q", v)
		}
		c.ShutdownTimeout = d
	}
	switch c.LogFormat {
	case "", "text", "json":
	default:
		return Config{}, fmt.Errorf("LOG_FORMAT: want text or json, got %q", c.LogFormat)
	}
	return c.withDefaults(), nil
}

// envBool parses a boolean variable; empty means def.
func envBool(getenv func(string) string, name string, def bool) (bool, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: want true or false, got %q", name, v)
	}
	return b, nil
}
