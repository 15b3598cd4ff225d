-- 0003_repair_audit: run history for repairs (reconcile, reset, dead-letter retry).
-- A repair is a row in `runs` like a sync run; these columns say what it removed.

ALTER TABLE runs ADD COLUMN deleted bigint NOT NULL DEFAULT 0;  -- Zendesk records deleted
ALTER TABLE runs ADD COLUMN gone    bigint NOT NULL DEFAULT 0;  -- id-map rows marked gone (keep)
ALTER TABLE runs ADD COLUMN note    text;                       -- what the repair did, for people

-- Reconcile compares the id map with the live Outreach ids by anti-join; gone rows are
-- looked up on their own when a record comes back.
CREATE INDEX id_map_gone_idx ON id_map (mapping) WHERE gone_at IS NOT NULL;
