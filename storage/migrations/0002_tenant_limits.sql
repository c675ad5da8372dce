-- Catalog version 2: per-tenant overrides of the plan's share and caps in
-- fair dispatch (0 = the plan's value).

ALTER TABLE tenancy.tenants
    ADD COLUMN weight      integer NOT NULL DEFAULT 0 CONSTRAINT tenants_weight_check CHECK (weight BETWEEN 0 AND 1000000),
    ADD COLUMN max_running integer NOT NULL DEFAULT 0 CONSTRAINT tenants_max_running_check CHECK (max_running BETWEEN 0 AND 1000000),
    ADD COLUMN max_waiting integer NOT NULL DEFAULT 0 CONSTRAINT tenants_max_waiting_check CHECK (max_waiting BETWEEN 0 AND 1000000);
