-- Catalog: each tenant's time zone, an IANA name (tenantctx.ValidateTimeZone
-- checks it in Go; PostgreSQL's own zone database is never consulted). Its
-- calendar judges when an invoice is overdue. Existing tenants get UTC,
-- the zone the overdue sweep's day was closest to before.

ALTER TABLE tenancy.tenants
    ADD COLUMN time_zone text COLLATE "C" NOT NULL DEFAULT 'UTC'
        CONSTRAINT tenants_time_zone_check CHECK (time_zone ~ '^[A-Za-z0-9_+/-]{1,64}$' AND time_zone <> 'Local');
