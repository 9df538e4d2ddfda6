-- PAUSED: a workflow whose code took another path than its history. It is stopped, not
-- ended: it can be resumed on fixed code. So the waits for it go on (the trigger of 0006
-- now leaves PAUSED out), and resuming it (ENQUEUED again) later finishes it for them.

ALTER TABLE workflows DROP CONSTRAINT workflows_status_check;
ALTER TABLE workflows ADD CONSTRAINT workflows_status_check CHECK (status IN (
    'ENQUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED',
    'TIMED_OUT', 'PAUSED'));

DROP TRIGGER workflows_end_waits ON workflows;
CREATE TRIGGER workflows_end_waits AFTER UPDATE OF status ON workflows
    FOR EACH ROW
    WHEN (NEW.awaited AND NEW.status NOT IN ('ENQUEUED', 'RUNNING', 'PAUSED')
          AND OLD.status IN ('ENQUEUED', 'RUNNING', 'PAUSED'))
    EXECUTE FUNCTION stepline_end_workflow_waits();
