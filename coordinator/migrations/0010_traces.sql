-- Tracing: the W3C trace context of the span that recorded the workflow (the coordinator's
-- start span, child of the caller's), sent with every assignment of it, so that every
-- execution, recoveries included, continues one trace. Empty: untraced.
ALTER TABLE workflows ADD COLUMN traceparent text NOT NULL DEFAULT '';
