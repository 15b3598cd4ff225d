-- 0001_initial: the state every bridge process reads and writes.
-- Never edit this file once merged: put changes in a new NNNN_<what>.sql.

-- Per mapping: how far incremental sync has got, and where an unfinished run stopped.
CREATE TABLE checkpoints (
    mapping     text PRIMARY KEY,
    watermark   timestamptz,            -- only ever moves forward (see store/checkpoints.py)
    resume_url  text,                   -- links.next after the last settled page; NULL when idle
    run_id      bigint,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Outreach record <-> Zendesk record, and the hash of the payload last written.
CREATE TABLE id_map (
    mapping      text NOT NULL,
    source_id    text NOT NULL,
    zendesk_id   text,
    external_id  text NOT NULL,
    payload_hash text NOT NULL,
    synced_at    timestamptz NOT NULL DEFAULT now(),
    gone_at      timestamptz,
    PRIMARY KEY (mapping, source_id)
);
CREATE INDEX id_map_external_id_idx ON id_map (mapping, external_id);

-- One row per backfill / worker pass / dry run, with running totals.
CREATE TABLE runs (
    id          bigserial PRIMARY KEY,
    mapping     text NOT NULL,
    kind        text NOT NULL,
    status      text NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'succeeded', 'failed', 'partial', 'interrupted')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    fetched     bigint NOT NULL DEFAULT 0,
    written     bigint NOT NULL DEFAULT 0,
    skipped     bigint NOT NULL DEFAULT 0,
    failed      bigint NOT NULL DEFAULT 0,
    parked      bigint NOT NULL DEFAULT 0,
    error       text,
    actor       text,
    replica     text
);
CREATE INDEX runs_mapping_started_idx ON runs (mapping, started_at DESC, id DESC);
CREATE INDEX runs_running_idx ON runs (mapping) WHERE status = 'running';

-- Records that could not be translated or written, until a later run writes them.
CREATE TABLE dead_letters (
    mapping         text NOT NULL,
    source_id       text NOT NULL,
    external_id     text,
    error           text NOT NULL,
    payload         jsonb,
    attempts        integer NOT NULL DEFAULT 1,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    run_id          bigint,
    PRIMARY KEY (mapping, source_id)
);

-- Rotated OAuth tokens, Fernet-encrypted (store/crypto.py); never plaintext.
CREATE TABLE oauth_tokens (
    name       text PRIMARY KEY,
    ciphertext bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Relationships whose target did not exist yet; filled in when the target appears.
CREATE TABLE parked_links (
    mapping          text NOT NULL,
    source_id        text NOT NULL,
    field            text NOT NULL,
    target           text NOT NULL,     -- target mapping name, or zen:user / zen:organization
    target_source_id text NOT NULL,
    parked_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mapping, source_id, field)
);
CREATE INDEX parked_links_target_idx ON parked_links (target, target_source_id);
