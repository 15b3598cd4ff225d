-- 0008_alert_state: what the alerts last said about each mapping, and the messages to send.
-- Never edit this file once merged.
--
-- alert_state holds, per mapping and condition (failing, lag, dead letters, a webhook), the
-- state last alerted on. A replica that sees a different state changes the row and enqueues
-- the message in one transaction, under the row's lock, so one change makes one message
-- however many replicas see it (store/alerts.py).
CREATE TABLE alert_state (
    mapping    text NOT NULL,
    condition  text NOT NULL,          -- 'failing', 'lag', 'dead_letters', 'webhooks' (mapping '*')
    state      text,                   -- NULL: never observed
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mapping, condition)
);

-- The outbox: each row is one message, delivered by whichever replica claims it first.
-- A claim expires, so a replica that dies mid-delivery leaves the message to another.
CREATE TABLE alert_outbox (
    id              bigserial PRIMARY KEY,
    mapping         text NOT NULL,
    event           text NOT NULL,
    body            jsonb NOT NULL,        -- the message as sent (never a secret)
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_until   timestamptz,
    delivered_at    timestamptz,
    gave_up_at      timestamptz,
    last_error      text
);
CREATE INDEX alert_outbox_due_idx ON alert_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
