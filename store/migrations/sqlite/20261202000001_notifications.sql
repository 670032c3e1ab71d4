-- The notifier's outbox: one row per message to a customer, written in the same
-- transaction as the notifier's checkpoint and then delivered. The id is the id of the
-- event that caused the message, so a redelivered event cannot add a second row.
-- Instants are RFC 3339 text in one fixed UTC format, so text order is time order.
CREATE TABLE notifications
(
    id                 text PRIMARY KEY,
    call_id            text    NOT NULL,
    -- The causing event's place in the call's stream: a call's messages in their order.
    call_sequence      integer NOT NULL,
    kind               text    NOT NULL,
    recipient          text    NOT NULL,
    template_code      text    NOT NULL,
    template_variables text    NOT NULL,
    text               text    NOT NULL,
    state              text    NOT NULL CHECK (state IN ('PENDING', 'DELIVERED', 'DEAD')),
    attempts           integer NOT NULL DEFAULT 0,
    next_attempt_at    text    NOT NULL,
    -- Set while a deliverer holds the row; its finishing update must present it.
    lease_token        text,
    last_error         text,
    created_at         text    NOT NULL,
    delivered_at       text
) STRICT;

CREATE INDEX notifications_due ON notifications (state, next_attempt_at);
CREATE INDEX notifications_by_call ON notifications (call_id, call_sequence);
