-- Workflows and their steps.
--
-- A workflow's internal `seq` keys its steps: it grows with every insert, so step rows of
-- new workflows land at the right edge of the steps primary key instead of all over it,
-- which keeps the hot path's index pages in cache as the table grows.

CREATE TABLE workflows (
    seq               bigint GENERATED ALWAYS AS IDENTITY,
    workflow_id       text        NOT NULL PRIMARY KEY,
    name              text        NOT NULL,
    status            text        NOT NULL CHECK (status IN (
                          'ENQUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED',
                          'MAX_RECOVERY_ATTEMPTS_EXCEEDED')),
    input             bytea       NOT NULL,
    input_encoding    text        NOT NULL,
    output            bytea,
    output_encoding   text,
    -- {"type", "message", "traceback", "details", "details_encoding"}; details base64.
    error             jsonb,
    -- The worker that holds the execution; NULL when none does. Fencing compares it and
    -- `epoch` in the same statement as every write about the execution.
    owner_id          text,
    epoch             bigint      NOT NULL DEFAULT 0,
    recovery_attempts integer     NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    completed_at      timestamptz
);

CREATE UNIQUE INDEX workflows_seq ON workflows (seq);
-- What the dispatcher claims: not owned, not finished.
CREATE INDEX workflows_ready ON workflows (name, seq)
    WHERE owner_id IS NULL AND status IN ('ENQUEUED', 'RUNNING');
-- Releasing a worker's executions when it disconnects.
CREATE INDEX workflows_owner ON workflows (owner_id) WHERE owner_id IS NOT NULL;
-- Listing by name.
CREATE INDEX workflows_name ON workflows (name, seq);

CREATE TABLE steps (
    workflow_seq    bigint      NOT NULL,
    step_id         text        NOT NULL,
    name            text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('RUNNING', 'SUCCEEDED', 'FAILED')),
    output          bytea,
    output_encoding text,
    error           jsonb,
    attempts        integer     NOT NULL,
    worker_id       text        NOT NULL,
    -- The epoch of the execution that wrote the row (never newer than the workflow's).
    epoch           bigint      NOT NULL,
    started_at      timestamptz NOT NULL,
    completed_at    timestamptz,
    PRIMARY KEY (workflow_seq, step_id)
);
-- No foreign key to workflows: every write to steps already joins the workflow row FOR
-- SHARE to check its epoch, which is a stronger check than a foreign key and costs no
-- second lookup per row.
