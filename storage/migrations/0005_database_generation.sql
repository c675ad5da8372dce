-- Catalog: each registration of a tenant database gets its own number. A
-- database removed and registered again under the same name (possibly on
-- another server) gets a new, larger one; tenants are read with the number
-- of their database's registration, so a running process that opened a
-- pool for an older registration of that name knows to open the new one.
-- Rows inserted without it (by a process of the previous release) get one
-- too.

ALTER TABLE tenancy.databases
    ADD COLUMN generation bigint GENERATED ALWAYS AS IDENTITY;

ALTER TABLE tenancy.databases
    ADD CONSTRAINT databases_generation_key UNIQUE (generation);
