-- The Zendesk people directory: users and organizations read from Zendesk's incremental
-- exports, so lookups matched by email, name or external id need no request per value.
CREATE TABLE directory_people (
    kind        text NOT NULL CHECK (kind IN ('users', 'organizations')),
    id          text NOT NULL,                 -- the Zendesk id
    external_id text,
    email       text,                          -- the primary email, lower-cased (users)
    name        text NOT NULL DEFAULT '',
    deleted     boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, id)
);
CREATE INDEX directory_people_external_id ON directory_people (kind, external_id)
    WHERE external_id IS NOT NULL AND NOT deleted;
CREATE INDEX directory_people_name ON directory_people (kind, lower(name)) WHERE NOT deleted;

-- Every email identity of a user (the primary one too), lower-cased.
CREATE TABLE directory_emails (
    user_id text NOT NULL,
    email   text NOT NULL,
    PRIMARY KEY (user_id, email)
);
CREATE INDEX directory_emails_email ON directory_emails (email);

-- Where each export continues; `complete` once a first load reached the end of the stream.
CREATE TABLE directory_cursors (
    kind       text PRIMARY KEY CHECK (kind IN ('users', 'organizations')),
    cursor     text,
    complete   boolean NOT NULL DEFAULT false,
    pages      bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
