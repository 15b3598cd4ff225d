-- 0007_rate_budget: one request budget per API account and one pool of bulk-job slots per
-- Zendesk account, shared by every bridge process on the database. Never edit this file
-- once merged.
--
-- A budget row is a GCRA ("virtual scheduling") clock: `tat` is the theoretical arrival time
-- of the next request, in epoch seconds on the database clock. A claim of n requests moves it
-- n emission intervals on; `paused_until` holds a Retry-After that one process saw, so that
-- no process is handed a send time before it (store/budget.py, http/budget.py).
CREATE TABLE rate_budgets (
    scope        text PRIMARY KEY,              -- "zendesk:<host>", "outreach:<host>"
    tat          double precision NOT NULL DEFAULT 0,
    paused_until double precision NOT NULL DEFAULT 0,
    claimed_at   double precision NOT NULL DEFAULT 0,  -- the clock's reading at the last claim
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- A job slot is a lease on one of an account's queued-or-running bulk jobs. Its holder renews
-- it while the job runs; a holder that dies stops renewing, and the slot is free again once
-- `expires_at` has passed.
CREATE TABLE job_slots (
    scope      text NOT NULL,                   -- "zendesk:<host>"
    slot       integer NOT NULL,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (scope, slot)
);
CREATE INDEX job_slots_holder_idx ON job_slots (holder);
