-- Finished workflows by completion time, for the retention sweep (STEPLINE_RETENTION_HOURS).
CREATE INDEX workflows_completed ON workflows (completed_at) WHERE completed_at IS NOT NULL;
