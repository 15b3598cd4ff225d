-- 0005_submitted_jobs: bulk jobs Zendesk accepted for a page that is not settled yet
-- (bridge/store/submitted_jobs.py). A process killed after a job POST and before the page's
-- commit leaves its rows here; the next run polls that job (Zendesk keeps job statuses for a
-- day) instead of writing the same items again. The page's commit deletes them.
-- Never edit this file once merged: put changes in a new NNNN_<what>.sql.

-- One row per item of a job:
-- position:     the item's place in the job (Zendesk reports results by index)
-- total:        how many items the job carried
-- payload_hash: what exactly was sent for the item (its fields and lookups)
CREATE TABLE submitted_jobs (
    job_id       text        NOT NULL,
    position     integer     NOT NULL,
    mapping      text        NOT NULL,
    external_id  text        NOT NULL,
    payload_hash text        NOT NULL,
    total        integer     NOT NULL,
    submitted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, position)
);

CREATE INDEX submitted_jobs_item_idx ON submitted_jobs (mapping, external_id);
CREATE INDEX submitted_jobs_age_idx ON submitted_jobs (submitted_at);
