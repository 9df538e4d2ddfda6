-- Messages in one round trip (bench (g)).
--
-- A waits transaction (coordinator/waits.py) costs BEGIN, a lock, a statement per kind of
-- operation and COMMIT: five round trips to PostgreSQL for a client's send alone, most of
-- the time between a send and the recv it wakes. A batch of clients' sends alone is
-- written by one call of stepline_client_send instead, with no BEGIN or COMMIT of its own:
-- it locks the destinations, appends the messages (stepline_send) and hands them to the
-- open recvs (stepline_pair), each in a statement of its own, so that each sees what the
-- lock waited for, as in the waits transaction, which calls the same two functions.
--
-- Statuses are parameters, given from coordinator/models.py, so that the SQL and the
-- Python agree on them.

-- Appends messages (p_ids[i] is the destination's workflow ID), in order, to the
-- destinations that exist and are not p_closed; the caller has locked them. For each, in
-- order: its destination's seq and status, and 'missing' (no such workflow), 'finished'
-- (the destination is closed), 'duplicate' (its idempotency key was sent to that
-- workflow before, or earlier in the batch) or 'sent'. A statement per message, each
-- planned once per connection (a statement over the whole batch was planned afresh on
-- every call, for its arrays: 0.3 ms of a 0.5 ms call).
CREATE FUNCTION stepline_send(
    p_ids text[], p_topics text[], p_data bytea[], p_encodings text[], p_keys text[], p_closed text[])
RETURNS TABLE (n bigint, workflow_seq bigint, status text, outcome text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_seq bigint;
    v_status text;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_ids), 0) LOOP
        SELECT w.seq, w.status INTO v_seq, v_status FROM workflows w WHERE w.workflow_id = p_ids[i];
        IF NOT FOUND THEN
            outcome := 'missing';
        ELSIF v_status = ANY(p_closed) THEN
            outcome := CASE WHEN p_keys[i] IS NOT NULL AND EXISTS (
                SELECT 1 FROM messages m WHERE m.workflow_seq = v_seq AND m.idempotency_key = p_keys[i])
                THEN 'duplicate' ELSE 'finished' END;
        ELSE
            INSERT INTO messages (workflow_seq, topic, data, encoding, idempotency_key)
            VALUES (v_seq, p_topics[i], p_data[i], p_encodings[i], p_keys[i])
            ON CONFLICT (workflow_seq, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING;
            outcome := CASE WHEN FOUND THEN 'sent' ELSE 'duplicate' END;
        END IF;
        n := i;
        workflow_seq := v_seq;
        status := v_status;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Hands each of the (p_seqs[i], p_topics[i]) mailboxes' oldest unread messages to its
-- oldest open recvs, one message to one recv, in workflows whose status is one of
-- p_unfinished: records each as its recv's output, marks it read and clears the recv's
-- timer, so that each message is received once and in the order it was sent. Returns the
-- recvs that ended, with the message and, when the workflow was suspended (it is ready
-- now), the workflow's name.
CREATE FUNCTION stepline_pair(p_seqs bigint[], p_topics text[], p_unfinished text[])
RETURNS TABLE (workflow_seq bigint, step_id text, message_seq bigint, data bytea, encoding text, woken text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH k AS (SELECT DISTINCT * FROM unnest(p_seqs, p_topics) AS k(seq, topic)),
    -- The open recvs of each mailbox, oldest first, in workflows that are not finished.
    w AS (
        SELECT s.workflow_seq, s.wait_topic AS topic, s.step_id, row_number() OVER (
                   PARTITION BY s.workflow_seq, s.wait_topic ORDER BY s.started_at, s.step_id) AS n
        FROM k
        JOIN workflows wf ON wf.seq = k.seq AND wf.status = ANY(p_unfinished)
        JOIN steps s ON s.workflow_seq = k.seq AND s.wait_topic = k.topic
        WHERE s.status = 'WAITING' AND s.kind = 'recv'
    ),
    wanted AS (SELECT w.workflow_seq, w.topic, count(*) AS c FROM w GROUP BY w.workflow_seq, w.topic),
    -- As many of each mailbox's oldest unread messages as it has open recvs.
    m AS (
        SELECT wanted.workflow_seq, wanted.topic, x.seq, x.data, x.encoding, x.n
        FROM wanted CROSS JOIN LATERAL (
            SELECT u.seq, u.data, u.encoding, row_number() OVER (ORDER BY u.seq) AS n FROM messages u
            WHERE u.workflow_seq = wanted.workflow_seq AND u.topic = wanted.topic AND u.consumed_by IS NULL
            ORDER BY u.seq LIMIT wanted.c
        ) x
    ),
    p AS (
        SELECT w.workflow_seq, w.step_id, m.seq AS message_seq, m.data, m.encoding
        FROM w JOIN m ON m.workflow_seq = w.workflow_seq AND m.topic = w.topic AND m.n = w.n
    ),
    ended AS (
        UPDATE steps s
        SET status = 'SUCCEEDED', output = p.data, output_encoding = p.encoding,
            completed_at = clock_timestamp()
        FROM p
        WHERE s.workflow_seq = p.workflow_seq AND s.step_id = p.step_id AND s.status = 'WAITING'
        RETURNING s.workflow_seq, s.step_id
    ),
    read AS (
        UPDATE messages u SET consumed_by = p.step_id FROM p WHERE u.seq = p.message_seq
    ),
    untimed AS (
        DELETE FROM timers t USING p WHERE t.workflow_seq = p.workflow_seq AND t.step_id = p.step_id
    ),
    wake AS (
        UPDATE workflows wf SET suspended = false, updated_at = now()
        WHERE wf.seq IN (SELECT p.workflow_seq FROM p) AND wf.suspended
        RETURNING wf.seq, wf.name
    )
    SELECT p.workflow_seq, p.step_id, p.message_seq, p.data, p.encoding, wake.name
    FROM p LEFT JOIN wake ON wake.seq = p.workflow_seq
    ORDER BY p.workflow_seq, p.message_seq;
END
$$;

-- A batch of clients' sends, whole: locks the destinations (in workflow_id order, as every
-- transaction does), appends the messages and pairs them with open recvs, and publishes
-- the hints other coordinators need (coordinator/hints.py's payloads, one item each):
-- "wake" for each recv that ended in a workflow not held here (p_held: the destinations
-- whose executions this coordinator holds), "ready" for each workflow name woken. Rows:
-- first one per message (n, workflow_seq, status, outcome: stepline_send's), then one per
-- recv that ended (workflow_seq, workflow_id, step_id, data, encoding, woken).
CREATE FUNCTION stepline_client_send(
    p_ids text[], p_topics text[], p_data bytea[], p_encodings text[], p_keys text[],
    p_closed text[], p_unfinished text[], p_held text[], p_channel text, p_from text)
RETURNS TABLE (n bigint, workflow_seq bigint, status text, outcome text, workflow_id text,
               step_id text, data bytea, encoding text, woken text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r record;
    box_seqs bigint[] := '{}';
    box_topics text[] := '{}';
    names text[] := '{}';
BEGIN
    PERFORM 1 FROM workflows w WHERE w.workflow_id = ANY(p_ids) ORDER BY w.workflow_id FOR UPDATE;
    FOR r IN SELECT * FROM stepline_send(p_ids, p_topics, p_data, p_encodings, p_keys, p_closed) LOOP
        n := r.n;
        workflow_seq := r.workflow_seq;
        status := r.status;
        outcome := r.outcome;
        RETURN NEXT;
        IF r.outcome = 'sent' AND r.status = ANY(p_unfinished) THEN
            box_seqs := box_seqs || r.workflow_seq;
            box_topics := box_topics || p_topics[r.n];
        END IF;
    END LOOP;
    n := NULL;
    status := NULL;
    outcome := NULL;
    FOR r IN
        SELECT p.*, w.workflow_id AS id FROM stepline_pair(box_seqs, box_topics, p_unfinished) p
        JOIN workflows w ON w.seq = p.workflow_seq
        ORDER BY p.workflow_seq, p.message_seq
    LOOP
        workflow_seq := r.workflow_seq;
        workflow_id := r.id;
        step_id := r.step_id;
        data := r.data;
        encoding := r.encoding;
        woken := r.woken;
        RETURN NEXT;
        IF r.id <> ALL(p_held) THEN
            PERFORM pg_notify(p_channel, json_build_object(
                'from', p_from, 'kind', 'wake', 'items', json_build_array(json_build_array(r.id, r.step_id)))::text);
        END IF;
        IF r.woken IS NOT NULL AND r.woken <> ALL(names) THEN
            names := names || r.woken;
            PERFORM pg_notify(p_channel, json_build_object(
                'from', p_from, 'kind', 'ready', 'items', json_build_array(r.woken))::text);
        END IF;
    END LOOP;
END
$$;
