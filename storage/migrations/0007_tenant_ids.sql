-- Catalog: every tenant id ever used. A tenant's creation claims its id
-- here in the same statement that inserts its row; the clean-up of a
-- provisioning whose INSERT's outcome was unknown (its answer lost, or its
-- caller's deadline passed while it ran) claims it too, marked withdrawn.
-- The primary key makes the two take turns: a clean-up waits for a
-- creation still running and then deletes the row it committed, and a
-- creation that reaches the server after the clean-up fails on the id
-- instead of holding the slug for good. Rows are kept after a tenant's
-- deletion: ids are random and never reused.

CREATE TABLE tenancy.tenant_ids (
    id            text COLLATE "C" PRIMARY KEY,
    withdrawn_at  timestamptz
);

INSERT INTO tenancy.tenant_ids (id) SELECT id FROM tenancy.tenants;
