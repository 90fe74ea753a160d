-- RabbitMQ subscriptions (DESIGN §5): the inbox that makes a redelivered message a no-op, and
-- the count of failed attempts that decides when a message is parked in the dead-letter queue.
-- Written in the same transaction as the subscriber's own changes (eventstore/subscriber.py).
--
-- IF NOT EXISTS: a database whose event_store schema was dropped and re-migrated keeps these.

CREATE SCHEMA IF NOT EXISTS subscriptions;

CREATE TABLE IF NOT EXISTS subscriptions.inbox (
    subscriber text NOT NULL,
    message_id uuid NOT NULL,
    event_type text NOT NULL,
    tenant_id text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscriber, message_id)
);

-- One row per message whose handler failed and has not succeeded since; parked_at is set when
-- the last allowed attempt failed and the message went to acci.sub.<subscriber>.dlq.
CREATE TABLE IF NOT EXISTS subscriptions.inbox_failures (
    subscriber text NOT NULL,
    message_id uuid NOT NULL,
    event_type text NOT NULL,
    tenant_id text NOT NULL,
    attempts integer NOT NULL CHECK (attempts > 0),
    last_error text NOT NULL,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at timestamptz NOT NULL DEFAULT now(),
    parked_at timestamptz,
    PRIMARY KEY (subscriber, message_id)
);
