-- 0011_record_changelog: what bridge last wrote for each record, and what each run did to it
-- (bridge explain, bridge backfill --dry-run --diff, bridge verify; bridge/store/changelog.py).
-- Never edit this file once merged: put changes in a new NNNN_<what>.sql.

-- written_payload:   the payload last sent to Zendesk ({"name", "fields"} with the lookup values
--                    sent), canonical JSON, zlib-compressed past 1 KB (store/idmap.pack); NULL
--                    for rows written before this migration
-- source_record:     the Outreach record as read for that write (attributes, relationships and
--                    the included resources its lookups used), packed the same way, so that what
--                    the current mapping would write can be rebuilt without asking Outreach
-- source_updated_at: the Outreach updatedAt of the version last written
ALTER TABLE id_map ADD COLUMN written_payload bytea;
ALTER TABLE id_map ADD COLUMN source_record bytea;
ALTER TABLE id_map ADD COLUMN source_updated_at timestamptz;
-- bridge verify matches what Zendesk lists (deleted records keep only their id) by Zendesk id.
CREATE INDEX id_map_zendesk_id_idx ON id_map (mapping, zendesk_id);

-- One compact row per record a run touched, written in the transaction of the page (or the
-- delete) it belongs to, pruned by age by the worker's upkeep (BRIDGE_CHANGELOG_DAYS).
-- action:            created | updated | skipped_unchanged | dead_lettered | parked_link |
--                    filled_link | deleted | marked_gone
-- source_updated_at: the Outreach updatedAt of the version the run read, when it read one
-- zendesk_job_id:    the bulk job that carried the write, when there was one
-- item_result:       the job's result for the item (the Zendesk record id, or its error)
-- detail:            what else explains the action (the lookup field parked or filled, …)
CREATE TABLE record_changelog (
    id                bigserial PRIMARY KEY,
    mapping           text NOT NULL,
    source_id         text NOT NULL,
    run_id            bigint,
    at                timestamptz NOT NULL DEFAULT now(),
    action            text NOT NULL CHECK (action IN (
                          'created', 'updated', 'skipped_unchanged', 'dead_lettered',
                          'parked_link', 'filled_link', 'deleted', 'marked_gone')),
    source_updated_at timestamptz,
    zendesk_job_id    text,
    item_result       text,
    detail            text
);
CREATE INDEX record_changelog_record_idx ON record_changelog (mapping, source_id, id DESC);
-- Rows arrive in time order, so a BRIN index finds the old ones for pruning at almost no
-- cost to the inserts a backfill makes.
CREATE INDEX record_changelog_at_idx ON record_changelog USING brin (at);
