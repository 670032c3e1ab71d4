-- One snapshot per aggregate: its state after `version` events, so that loading a long
-- stream reads the snapshot and only the events after it. A cache, never the truth: a
-- row of another `format` is ignored and the stream is read from its start.
CREATE TABLE snapshots
(
    aggregate_type text    NOT NULL,
    aggregate_id   text    NOT NULL,
    version        integer NOT NULL CHECK (version > 0),
    format         integer NOT NULL,
    state          text    NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
) STRICT;
