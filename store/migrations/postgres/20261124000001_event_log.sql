-- The event log. Columns up to `metadata` are the ones postgres-es names in its INSERT
-- and SELECT; the rest have defaults, so the library writes them without knowing.
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    -- Positions are handed out at insert but transactions commit in any order, so a
    -- reader orders by the writing transaction first and never reads past the oldest
    -- transaction still running (see store::log).
    position       bigserial                    NOT NULL,
    transaction_id xid8 DEFAULT pg_current_xact_id() NOT NULL,
    recorded_at    timestamptz DEFAULT now()    NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE INDEX events_in_commit_order ON events (transaction_id, position);
CREATE INDEX events_by_correlation ON events ((metadata ->> 'correlation_id'), transaction_id, position);

CREATE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    -- Delivered at commit; identical notifications of one transaction fold into one.
    PERFORM pg_notify('drivercenter_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify();

CREATE TABLE checkpoints
(
    name             text PRIMARY KEY,
    commit_position  bigint NOT NULL,
    prepare_position bigint NOT NULL
);

CREATE TABLE idempotency_keys
(
    key          text PRIMARY KEY,
    request_hash text NOT NULL,
    call_id      text NOT NULL,
    created_at   text NOT NULL
);
