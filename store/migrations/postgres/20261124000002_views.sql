-- Read models. Each row keeps the JSON document the API serves, plus the columns that
-- queries filter and sort on.
CREATE TABLE call_views
(
    call_id      text PRIMARY KEY,
    tel          text    NOT NULL,
    requested_at text    NOT NULL,
    version      bigint NOT NULL,
    doc          text    NOT NULL
);
CREATE INDEX call_views_history ON call_views (tel, requested_at DESC, call_id DESC);

CREATE TABLE driver_views
(
    driver_id     text PRIMARY KEY,
    status        text    NOT NULL,
    registered_at text    NOT NULL,
    version       bigint NOT NULL,
    doc           text    NOT NULL
);
CREATE INDEX driver_views_by_status ON driver_views (status, registered_at);

CREATE TABLE assignment_views
(
    call_id      text PRIMARY KEY,
    requested_at text    NOT NULL,
    version      bigint NOT NULL,
    doc          text    NOT NULL
);
CREATE INDEX assignment_views_by_time ON assignment_views (requested_at);

-- The dispatch saga's own state, saved with its checkpoint.
CREATE TABLE saga_drivers
(
    driver_id text PRIMARY KEY,
    doc       text NOT NULL
);

CREATE TABLE saga_dispatches
(
    call_id text PRIMARY KEY,
    doc     text NOT NULL
);
