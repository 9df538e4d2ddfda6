-- Durable waits (sleep, messages, events), suspension, workflow timeouts, and timers.
--
-- A wait is a step of its own kind, recorded WAITING until it ends; its condition lives in
-- the step row (wake_at, wait_topic, wait_target). A workflow whose execution was given
-- back while it waits is `suspended`: no worker holds it, the dispatcher does not hand it
-- out, and the transaction that ends one of its waits clears the flag.
--
-- Lock order, kept by every transaction that touches more than one of these: the
-- workflows rows first, in workflow_id order; then steps, messages, events and timers.

ALTER TABLE workflows DROP CONSTRAINT workflows_status_check;
ALTER TABLE workflows ADD CONSTRAINT workflows_status_check CHECK (status IN (
    'ENQUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED',
    'TIMED_OUT'));
ALTER TABLE workflows
    ADD COLUMN suspended   boolean NOT NULL DEFAULT false,
    -- When the coordinator ends it TIMED_OUT (its timers row fires then).
    ADD COLUMN deadline_at timestamptz;

-- Ready: unowned, unfinished, and not suspended (store/conditions.py writes the same).
DROP INDEX workflows_ready;
CREATE INDEX workflows_ready ON workflows (name, seq)
    WHERE owner_id IS NULL AND NOT suspended AND status IN ('ENQUEUED', 'RUNNING');

ALTER TABLE steps DROP CONSTRAINT steps_status_check;
ALTER TABLE steps ADD CONSTRAINT steps_status_check CHECK (status IN (
    'RUNNING', 'SUCCEEDED', 'FAILED', 'WAITING'));
ALTER TABLE steps
    ADD COLUMN kind        text    NOT NULL DEFAULT 'step' CHECK (kind IN (
                               'step', 'sleep', 'recv', 'get_event', 'send', 'set_event')),
    -- sleep: when it ends; recv, get_event: when it times out (NULL: never).
    ADD COLUMN wake_at     timestamptz,
    -- recv: the topic ('' is the default one); get_event: the event's key.
    ADD COLUMN wait_topic  text,
    -- get_event: the workflow whose event it waits for (which need not exist yet).
    ADD COLUMN wait_target text,
    -- recv, get_event: ended without a message or event.
    ADD COLUMN timed_out   boolean NOT NULL DEFAULT false;
-- A workflow's open waits (few per workflow; tiny, as waits end).
CREATE INDEX steps_waiting ON steps (workflow_seq) WHERE status = 'WAITING';
-- Who waits for an event, found when it is set.
CREATE INDEX steps_event_waiters ON steps (wait_target, wait_topic)
    WHERE status = 'WAITING' AND kind = 'get_event';

-- Due times: a wait's wake or timeout (step_id), or a workflow's deadline (step_id '').
-- A coordinator keeps only the next due time in memory; firing deletes the row in the
-- transaction that applies its effect, so each timer fires once whichever coordinator
-- fires it.
CREATE TABLE timers (
    workflow_seq bigint      NOT NULL,
    step_id      text        NOT NULL,
    due_at       timestamptz NOT NULL,
    PRIMARY KEY (workflow_seq, step_id)
);
CREATE INDEX timers_due ON timers (due_at);

-- Mailboxes. A message is read by the recv step that consumed it (consumed_by), in the
-- transaction that records it as that step's output.
CREATE TABLE messages (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_seq    bigint      NOT NULL,
    topic           text        NOT NULL,
    data            bytea       NOT NULL,
    encoding        text        NOT NULL,
    idempotency_key text,
    sent_at         timestamptz NOT NULL DEFAULT now(),
    consumed_by     text
);
CREATE UNIQUE INDEX messages_dedupe ON messages (workflow_seq, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_unread ON messages (workflow_seq, topic, seq) WHERE consumed_by IS NULL;

-- Events: the latest value of each key a workflow set.
CREATE TABLE workflow_events (
    workflow_seq bigint      NOT NULL,
    key          text        NOT NULL,
    data         bytea       NOT NULL,
    encoding     text        NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_seq, key)
);
