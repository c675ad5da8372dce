-- Catalog version 3: what an operator sees of a tenant's API keys. The key
-- itself is still never stored: only its first characters (to tell keys
-- apart) and when it was last used (written in batches, not per request).

ALTER TABLE tenancy.api_keys
    ADD COLUMN prefix       text COLLATE "C" NOT NULL DEFAULT '',
    ADD COLUMN last_used_at timestamptz;
