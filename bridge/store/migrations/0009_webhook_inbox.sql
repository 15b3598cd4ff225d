-- 0009_webhook_inbox: Outreach webhook deliveries, stored before the endpoint answers 2xx and
-- drained as targeted syncs (bridge/store/inbox.py, bridge/webhooks/).
-- Never edit this file once merged: put changes in a new NNNN_<what>.sql.

-- digest:          sha256 of the raw body; the same delivery sent twice is stored once
-- resource/action: from meta.eventName ("prospect.updated"); source_id: data.id as text
-- changed_at:      when Outreach says the change happened (data.attributes.updatedAt, else
--                  meta.deliveredAt), for change-to-write freshness
-- next_attempt_at, attempts, error: a delivery that could not be handled is retried with backoff
-- handled_at:      set once handled; such rows are pruned after the retention period
-- No body is kept: the consumer fetches the current record and never trusts a delivery's
-- partial attributes, so storing them would only keep personal data around.
CREATE TABLE webhook_inbox (
    id              bigserial PRIMARY KEY,
    digest          bytea NOT NULL UNIQUE,
    resource        text NOT NULL,
    action          text NOT NULL,
    source_id       text NOT NULL,
    event_name      text NOT NULL,
    changed_at      timestamptz,
    received_at     timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    error           text,
    handled_at      timestamptz
);

CREATE INDEX webhook_inbox_due_idx ON webhook_inbox (resource, next_attempt_at)
    WHERE handled_at IS NULL;
CREATE INDEX webhook_inbox_handled_idx ON webhook_inbox (handled_at)
    WHERE handled_at IS NOT NULL;
