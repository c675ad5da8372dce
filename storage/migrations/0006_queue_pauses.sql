-- Catalog: operators' pauses of tenants' queues. Fair dispatch holds a
-- paused tenant's work in Redis; this row is written before that hold and
-- removed after its release, so that the workers can put the hold back
-- when Redis lost its data (a restart without persistence, a flush).

CREATE TABLE tenancy.queue_pauses (
    tenant_id   text COLLATE "C" PRIMARY KEY REFERENCES tenancy.tenants (id) ON DELETE CASCADE,
    paused_at   timestamptz NOT NULL DEFAULT now()
);
