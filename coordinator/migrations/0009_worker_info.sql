-- What each connected worker said when it registered, beside its lease, so that any
-- coordinator can list every coordinator's workers (ListWorkers). Written once per
-- registration; `renewed_at` moves with the coarse lease renewals, never per heartbeat.
ALTER TABLE worker_leases
    ADD COLUMN language       text        NOT NULL DEFAULT '',
    ADD COLUMN sdk_version    text        NOT NULL DEFAULT '',
    ADD COLUMN version        text        NOT NULL DEFAULT '',
    ADD COLUMN capacity       integer     NOT NULL DEFAULT 0,
    ADD COLUMN workflow_names text[]      NOT NULL DEFAULT '{}',
    ADD COLUMN renewed_at     timestamptz NOT NULL DEFAULT now();
