-- The owner index also carries the workflow ID, so that a lookup by (workflow_id, owner_id)
-- is a one-row probe whichever of the two indexes the planner picks. Fencing looks up
-- every writer that way; on a young table whose statistics said "one row per owner", the
-- planner chose the owner-only index and read every execution of that worker per writer.
DROP INDEX workflows_owner;
CREATE INDEX workflows_owner ON workflows (owner_id, workflow_id) WHERE owner_id IS NOT NULL;
