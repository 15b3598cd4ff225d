-- 0002_leases: which process is running which mapping, so that a mapping runs on at most
-- one replica (or one backfill) at a time. Never edit this file once merged.
--
-- A lease is a row; it is taken when absent or expired, renewed by its holder's heartbeat,
-- and deleted on release. A holder killed outright (SIGKILL, a lost node) stops renewing,
-- so its leases expire after their TTL and another replica takes them (store/leases.py).
CREATE TABLE leases (
    mapping      text PRIMARY KEY,
    holder       text NOT NULL,         -- "<worker|backfill>:<host>:<pid>:<pid namespace>:<random>"
    acquired_at  timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX leases_holder_idx ON leases (holder);
