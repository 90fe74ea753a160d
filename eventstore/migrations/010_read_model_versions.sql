-- Versioned read models (readmodels/versions.py): each version of a read model has its own tables
-- (read_models.<table>_v<N>), and queries read the stable name read_models.<table>, a view of
-- the live version's table, replaced in the same transaction that switches the live version.
--
-- One row per version that has tables: 'building' while a rebuild fills it, 'live' (one per read
-- model), 'retired' once another version went live (its tables dropped after drop_after), and
-- 'failed' when its rebuild's validation found rows that differ (kept for inspection until a
-- rebuild of that version starts again or is cancelled).
--
-- IF NOT EXISTS, as 004: a database whose event_store schema was dropped and re-migrated keeps
-- its read models.
CREATE TABLE IF NOT EXISTS read_models.versions (
    read_model text NOT NULL,
    version integer NOT NULL CHECK (version > 0),
    state text NOT NULL CHECK (state IN ('building', 'live', 'retired', 'failed')),
    created_at timestamptz NOT NULL DEFAULT now(),
    switched_at timestamptz,
    drop_after timestamptz,
    detail text,
    PRIMARY KEY (read_model, version)
);

CREATE UNIQUE INDEX IF NOT EXISTS versions_one_live ON read_models.versions (read_model)
    WHERE state = 'live';

-- The version whose tables a checkpoint's projection writes: the live version for a read model's
-- own checkpoint (projection = its name), N for a rebuild's ('<name>@v<N>'). The batch that
-- finds it changed since it read it applies nothing (readmodels/transaction.py).
ALTER TABLE read_models.checkpoints ADD COLUMN IF NOT EXISTS version integer NOT NULL DEFAULT 1
    CHECK (version > 0);
