-- Coarse worker leases, so that ownership can be settled from the database alone.
--
-- Liveness is tracked per heartbeat in coordinator memory; this table is renewed only a
-- few times per lease, for all of a coordinator's workers in one statement. A coordinator
-- that dies stops renewing, and after `expires_at` any coordinator (a restarted one, or a
-- replica) releases the executions those workers owned. Fencing by epoch keeps that safe
-- even when a worker was in fact still alive.
CREATE TABLE worker_leases (
    worker_id      text        PRIMARY KEY,
    coordinator_id text        NOT NULL,
    session_id     text        NOT NULL,
    expires_at     timestamptz NOT NULL,
    connected_at   timestamptz NOT NULL DEFAULT now()
);

-- Set when a worker hands an execution back on purpose (graceful shutdown): the next
-- claim is then not counted as a recovery towards the poison limit.
ALTER TABLE workflows ADD COLUMN handoff boolean NOT NULL DEFAULT false;
