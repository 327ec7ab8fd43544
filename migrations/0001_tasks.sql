-- The durable queue: one row per unit of work, one append-only event stream per row.

CREATE TABLE tasks (
    -- UUIDv7: time-ordered, so inserts append to the index and id order is creation order.
    id              uuid PRIMARY KEY,
    source          text NOT NULL CHECK (source IN ('manual', 'exception', 'github', 'gitlab', 'linear')),
    -- Identity of the thing that asked (source_id, fingerprint, issue id). While a task with
    -- a key is active, no second one with that key may exist: see tasks_active_dedup.
    dedup_key       text,
    title           text NOT NULL,
    prompt          text NOT NULL,
    -- The repository as the caller wrote it, and the parsed form the worker uses.
    repo            text NOT NULL,
    repo_kind       text NOT NULL CHECK (repo_kind IN ('slug', 'http', 'file', 'path')),
    repo_url        text NOT NULL,
    repo_branch     text,
    -- Source-specific context (exception `extra`, issue numbers, ...), never secrets.
    context         jsonb NOT NULL DEFAULT '{}'::jsonb,

    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    outcome         text CHECK (outcome IN ('pr_opened', 'pr_updated', 'no_changes', 'branch_pushed')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts    integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    run_after       timestamptz NOT NULL DEFAULT now(),
    locked_by       text,
    locked_until    timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,

    branch          text,
    pr_url          text,
    error           text,
    input_tokens    bigint NOT NULL DEFAULT 0,
    output_tokens   bigint NOT NULL DEFAULT 0,
    cost_usd        double precision NOT NULL DEFAULT 0,
    -- The agent's output, head and tail kept within MAUR_AGENT_MAX_LOG.
    agent_log       text,

    -- Last event sequence number handed out; bumping it in the same statement that inserts
    -- the event serialises writers on the row lock, so seq is gapless per task.
    last_seq        integer NOT NULL DEFAULT 0,

    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,

    CHECK ((status = 'running') = (locked_until IS NOT NULL)),
    CHECK ((status IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL))
);

CREATE UNIQUE INDEX tasks_active_dedup ON tasks (dedup_key)
    WHERE dedup_key IS NOT NULL AND status IN ('queued', 'running');
CREATE INDEX tasks_claimable ON tasks (run_after, created_at) WHERE status = 'queued';
CREATE INDEX tasks_leases ON tasks (locked_until) WHERE status = 'running';
-- Ids are UUIDv7, time-ordered: the primary key already lists newest first.
CREATE INDEX tasks_status_recent ON tasks (status, id DESC);

CREATE TABLE task_events (
    task_id uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq     integer NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind    text NOT NULL,
    data    jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (task_id, seq)
);

-- Where a task's progress is reported (a forge issue, a Linear issue), what the reporter
-- created there (comment ids, so retries edit instead of posting again), the last event it
-- reflects, and a reporter's short lease on publishing it. A table of its own, so reporting
-- never locks a task row that a worker is about to claim.
CREATE TABLE task_reports (
    task_id      uuid PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    report_to    jsonb NOT NULL,
    state        jsonb NOT NULL DEFAULT '{}'::jsonb,
    reported_seq integer NOT NULL DEFAULT 0,
    locked_until timestamptz,
    -- The task ended and its final state was published: nothing more to do.
    done         boolean NOT NULL DEFAULT false
);
CREATE INDEX task_reports_open ON task_reports (task_id) WHERE NOT done;

-- Append-only: history is what the progress comment and the SSE stream replay.
CREATE FUNCTION maur_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'task_events is append-only';
END $$;
CREATE TRIGGER task_events_no_update BEFORE UPDATE ON task_events
    FOR EACH ROW EXECUTE FUNCTION maur_events_append_only();

-- Live fan-out. A trigger rather than application code, so no step or state change can forget
-- to wake listeners. Payloads are tiny; listeners read the rows themselves. Every move back
-- into `queued` (retry, lost worker, shutdown) writes a `queued` event, which also wakes idle
-- workers.
--
-- Not for seq 1, the event written by enqueue: NOTIFY serialises committing transactions on
-- a global lock, which halves insert throughput. The API instead sends one coalesced
-- `maur_queued` wake-up after its commits (see hub.rs), and nobody can be streaming a task's
-- events before it exists.
CREATE FUNCTION maur_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('maur_events', NEW.task_id::text || ':' || NEW.seq::text || ':' || NEW.kind);
    RETURN NULL;
END $$;
CREATE TRIGGER task_events_notify AFTER INSERT ON task_events
    FOR EACH ROW WHEN (NEW.seq > 1) EXECUTE FUNCTION maur_notify_event();
