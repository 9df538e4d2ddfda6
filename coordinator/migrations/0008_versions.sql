-- Versions: each workflow records the build ID (Register.version) of the worker code that
-- first ran it, and is handed only to workers of that version (or to workers that
-- auto-upgrade its name). NULL until a worker takes it: any version may.
ALTER TABLE workflows ADD COLUMN version text;
