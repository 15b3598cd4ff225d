-- 0012_verify_state: what `bridge verify` has read of each mapping's Zendesk records, so that a
-- repeat reads only the export pages since the last one (bridge/store/verify_state.py).
-- Never edit this file once merged: put changes in a new NNNN_<what>.sql.

-- cursor:      the export's after_cursor after the last page read; NULL: read from the beginning
-- complete:    verify_records holds every live record of the object (a pass from the beginning
--              reached the end of the stream); deletions are judged only then
-- source:      how the last pass read Zendesk: 'export' or 'listing' (the fallback)
-- report:      the last pass's counts, for `bridge status`
CREATE TABLE verify_state (
    mapping     text PRIMARY KEY,
    cursor      text,
    complete    boolean NOT NULL DEFAULT false,
    source      text,
    started_at  timestamptz,
    finished_at timestamptz,
    report      jsonb
);

-- Every live Zendesk record of the mapping's object as of `cursor`: its id and external id, and
-- its name and fields (zendesk_record, JSON) only while they differ from what bridge last wrote;
-- checked_at: the database time just before the page that showed it was read.
CREATE TABLE verify_records (
    mapping        text NOT NULL,
    zendesk_id     text NOT NULL,
    external_id    text,
    zendesk_record jsonb,
    checked_at     timestamptz NOT NULL,
    PRIMARY KEY (mapping, zendesk_id)
);
CREATE INDEX verify_records_external_id_idx ON verify_records (mapping, external_id);
CREATE INDEX verify_records_differs_idx ON verify_records (mapping) WHERE zendesk_record IS NOT NULL;
