-- Catalog: tenant placement across PostgreSQL servers. Tenant databases
-- are registered by name; each tenant records the database holding its
-- schema. "main" is the database DATABASE_URL points to: registered here,
-- its URL never stored, and the placement of every existing tenant.

CREATE TABLE tenancy.databases (
    name        text COLLATE "C" PRIMARY KEY
                CONSTRAINT databases_name_check CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$'),
    -- Connection URL of a database registered with `enqueue db add`; empty
    -- for "main" and for databases whose URL comes from TENANT_DATABASES.
    url         text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO tenancy.databases (name) VALUES ('main');

ALTER TABLE tenancy.tenants
    ADD COLUMN database text COLLATE "C" NOT NULL DEFAULT 'main'
        CONSTRAINT tenants_database_fkey REFERENCES tenancy.databases (name);

-- Placement by load (tenant count per database) and moves.
CREATE INDEX tenants_database_idx ON tenancy.tenants (database);
