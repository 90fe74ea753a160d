-- Per-tenant data keys for payload encryption (DESIGN §4 "Encryption"; README, "Encryption at
-- rest and crypto-shredding"; eventstore/keyring.py).
--
-- One row per tenant and key version: the tenant's 256-bit AES-GCM data key, wrapped (encrypted)
-- by a master key that never reaches the database. master_key_id names the master key that
-- wrapped it, so `acci keys rotate` knows which rows still need re-wrapping and can resume.
-- Event data and snapshot state hold {"$enc": 1, "kver": <key_version>, ...}: the key version
-- finds the row, the tenant is the row's own.
--
-- Shredding (`acci tenant shred`) sets wrapped_key to NULL and shredded_at: the key is gone,
-- every payload it sealed is unreadable, and the row stays as the record of when and that it
-- happened (a later first append cannot quietly create a new key for the tenant).
CREATE TABLE event_store.tenant_keys (
    tenant_id text NOT NULL,
    key_version integer NOT NULL CHECK (key_version >= 1),
    wrapped_key bytea,
    master_key_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    rotated_at timestamptz,
    shredded_at timestamptz,
    PRIMARY KEY (tenant_id, key_version),
    CHECK ((wrapped_key IS NULL) = (shredded_at IS NOT NULL))
);

-- The rotation walks the rows not yet wrapped by the current master key.
CREATE INDEX tenant_keys_master_key ON event_store.tenant_keys (master_key_id, tenant_id)
    WHERE wrapped_key IS NOT NULL;

-- The command path (acci_app) reads its tenant's key and creates it on the tenant's first
-- encrypted append (INSERT ... ON CONFLICT DO NOTHING: two first appends at once keep one key).
-- Never UPDATE or DELETE: rotating and shredding are the owner's (cross-tenant) work.
GRANT SELECT, INSERT ON event_store.tenant_keys TO acci_app;

ALTER TABLE event_store.tenant_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON event_store.tenant_keys
    USING (tenant_id = event_store.current_tenant())
    WITH CHECK (tenant_id = event_store.current_tenant());
