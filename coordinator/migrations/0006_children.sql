-- Child workflows, and waits for a workflow to finish.
--
-- A child is an ordinary workflow that names its parent (parent_id, parent_step_id: the
-- parent's START_CHILD step). Any workflow can wait for any other to finish with an
-- AWAIT_WORKFLOW step: WAITING, its wait_target the workflow waited for.
--
-- Such a wait must end in the very transaction that ends the workflow it waits for,
-- whichever path ends it (a worker's result, a deadline, too many recoveries, a cancel):
-- the trigger below does it, so no path can forget it. It runs only for workflows that
-- someone waits for (`awaited`, set by the transaction that begins the wait, which locks
-- the workflow's row first), so every other completion costs nothing more. It then
-- publishes hints (from "postgresql") for the coordinators: which waits ended (to deliver
-- them to the executions holding them) and which workflow names have suspended workflows
-- newly ready. As with every hint, a lost one is made up for by the coordinators' resync.

ALTER TABLE workflows
    ADD COLUMN parent_id      text,
    ADD COLUMN parent_step_id text,
    ADD COLUMN awaited        boolean NOT NULL DEFAULT false;
CREATE INDEX workflows_parent ON workflows (parent_id) WHERE parent_id IS NOT NULL;

ALTER TABLE steps DROP CONSTRAINT steps_kind_check;
ALTER TABLE steps ADD CONSTRAINT steps_kind_check CHECK (kind IN (
    'step', 'sleep', 'recv', 'get_event', 'send', 'set_event', 'start_child', 'await_workflow'));
-- Who waits for a workflow to finish, found when it does.
CREATE INDEX steps_workflow_waiters ON steps (wait_target)
    WHERE status = 'WAITING' AND kind = 'await_workflow';

-- What a wait for a finished workflow records as its error (NULL when it SUCCEEDED).
CREATE FUNCTION stepline_outcome_error(status text, error jsonb, workflow_id text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN status = 'SUCCEEDED' THEN NULL
                ELSE COALESCE(error, jsonb_build_object(
                    'type', CASE status WHEN 'CANCELLED' THEN 'stepline.WorkflowCancelledError'
                                        ELSE 'stepline.WorkflowFailedError' END,
                    'message', format('workflow %s ended %s', workflow_id, status),
                    'traceback', '')) END
$$;

CREATE FUNCTION stepline_end_workflow_waits() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ended jsonb;
    woken jsonb;
    i integer;
BEGIN
    WITH e AS (
        UPDATE steps s
        SET status = CASE WHEN NEW.status = 'SUCCEEDED' THEN 'SUCCEEDED' ELSE 'FAILED' END,
            output = CASE WHEN NEW.status = 'SUCCEEDED' THEN NEW.output END,
            output_encoding = CASE WHEN NEW.status = 'SUCCEEDED' THEN NEW.output_encoding END,
            error = stepline_outcome_error(NEW.status, NEW.error, NEW.workflow_id),
            completed_at = clock_timestamp()
        WHERE s.wait_target = NEW.workflow_id AND s.kind = 'await_workflow' AND s.status = 'WAITING'
        RETURNING s.workflow_seq, s.step_id
    ),
    untimed AS (
        DELETE FROM timers t USING e WHERE t.workflow_seq = e.workflow_seq AND t.step_id = e.step_id
    ),
    w AS (
        UPDATE workflows p SET suspended = false, updated_at = now()
        WHERE p.seq IN (SELECT workflow_seq FROM e) AND p.suspended
        RETURNING p.name
    )
    SELECT (SELECT jsonb_agg(jsonb_build_array(p.workflow_id, e.step_id))
            FROM e JOIN workflows p ON p.seq = e.workflow_seq),
           (SELECT jsonb_agg(DISTINCT name) FROM w)
    INTO ended, woken;
    -- Payloads stay far below PostgreSQL's 8000-byte limit: 50 items per hint.
    IF ended IS NOT NULL THEN
        FOR i IN 0 .. (jsonb_array_length(ended) - 1) / 50 LOOP
            PERFORM pg_notify('stepline', jsonb_build_object(
                'from', 'postgresql', 'kind', 'wake',
                'items', (SELECT jsonb_agg(x) FROM (
                    SELECT x FROM jsonb_array_elements(ended) WITH ORDINALITY AS a(x, n)
                    WHERE n > i * 50 AND n <= (i + 1) * 50) b))::text);
        END LOOP;
    END IF;
    IF woken IS NOT NULL THEN
        PERFORM pg_notify('stepline', jsonb_build_object(
            'from', 'postgresql', 'kind', 'ready', 'items', woken)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER workflows_end_waits AFTER UPDATE OF status ON workflows
    FOR EACH ROW
    WHEN (NEW.awaited AND NEW.status NOT IN ('ENQUEUED', 'RUNNING')
          AND OLD.status IN ('ENQUEUED', 'RUNNING'))
    EXECUTE FUNCTION stepline_end_workflow_waits();
