-- 0004_parked_link_details: what a parked link needs to be filled later without the page
-- it came from (bridge/store/links.py).
-- Never edit this file once merged: put changes in a new NNNN_<what>.sql.

-- match:             external_id | email | name for zen: targets; NULL for mapping targets
-- target_type:       the Outreach type of the related record (prospect, account, ...)
-- match_value:       the value to match a Zendesk user/organization by (external id, email
--                    or name); NULL when the page did not carry it (the link waits for the
--                    referrer to be written again)
-- failed_zendesk_id: a Zendesk id that was refused for this lookup (its target was deleted
--                    in Zendesk); the link is never filled with that id again
ALTER TABLE parked_links
    ADD COLUMN match             text,
    ADD COLUMN target_type       text NOT NULL DEFAULT '',
    ADD COLUMN match_value       text,
    ADD COLUMN failed_zendesk_id text;

CREATE INDEX parked_links_mapping_idx ON parked_links (mapping, parked_at);
