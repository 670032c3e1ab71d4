-- The event log. Columns up to `metadata` are the ones sqlite-es names in its INSERT and
-- SELECT; the rest have defaults, so the library writes them without knowing.
CREATE TABLE events
(
    aggregate_type text                          NOT NULL,
    aggregate_id   text                          NOT NULL,
    sequence       integer CHECK (sequence >= 0) NOT NULL,
    event_type     text                          NOT NULL,
    event_version  text                          NOT NULL,
    payload        text                          NOT NULL,
    metadata       text                          NOT NULL,
    -- Global order. Not the primary key: a clash on the primary key is what sqlite-es
    -- reports as an optimistic-concurrency conflict (code 1555).
    position       integer,
    recorded_at    text DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;

CREATE UNIQUE INDEX events_by_position ON events (position);
CREATE INDEX events_by_correlation ON events (json_extract(metadata, '$.correlation_id'), position);

-- SQLite has one writer at a time, so "last position + 1" taken inside the writing
-- transaction is gap-free and in commit order.
CREATE TRIGGER events_assign_position AFTER INSERT ON events
BEGIN
    UPDATE events
    SET position = (SELECT IFNULL(MAX(position), 0) + 1 FROM events)
    WHERE rowid = NEW.rowid;
END;

CREATE TABLE checkpoints
(
    name             text PRIMARY KEY,
    commit_position  integer NOT NULL,
    prepare_position integer NOT NULL
) STRICT;

CREATE TABLE idempotency_keys
(
    key          text PRIMARY KEY,
    request_hash text NOT NULL,
    call_id      text NOT NULL,
    created_at   text NOT NULL
) STRICT;
