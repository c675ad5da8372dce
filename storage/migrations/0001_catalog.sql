-- Catalog version 1: tenants, their API keys, and the audit log.
-- Every name is schema-qualified: the application pool's search_path is empty.

CREATE TABLE tenancy.tenants (
    -- COLLATE "C": keyset pagination orders ids by bytes, whatever the
    -- database's default collation.
    id          text COLLATE "C" PRIMARY KEY,
    slug        text COLLATE "C" NOT NULL UNIQUE,
    name        text NOT NULL DEFAULT '',
    status      text COLLATE "C" NOT NULL
                CONSTRAINT tenants_status_check
                CHECK (status IN ('provisioning', 'active', 'suspended', 'deleting')),
    schema_name text COLLATE "C" NOT NULL UNIQUE,
    plan        text NOT NULL DEFAULT '',
    metadata    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- ListTenants with a status filter: WHERE status = $s AND id > $after ORDER BY id.
CREATE INDEX tenants_status_id_idx ON tenancy.tenants (status, id);

CREATE TABLE tenancy.api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   text COLLATE "C" NOT NULL REFERENCES tenancy.tenants (id) ON DELETE CASCADE,
    -- Lowercase hex SHA-256 of the key; the key itself is never stored.
    key_hash    text COLLATE "C" NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE INDEX api_keys_tenant_id_idx ON tenancy.api_keys (tenant_id);

CREATE TABLE tenancy.audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    -- No foreign key: the log outlives the tenant it describes.
    tenant_id   text COLLATE "C" NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    detail      jsonb
);

CREATE INDEX audit_log_tenant_id_at_idx ON tenancy.audit_log (tenant_id, at);
