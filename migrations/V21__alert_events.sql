-- Event rules (事件告警规则): rules that fire on something that happened
-- (a node unreachable, an instance exited or OOM-killed, an account locked
-- ...) rather than on a metric. `event` names the kind (NULL: a metric
-- rule with conditions); `event_threshold` is the kind's N (seconds
-- unreachable, restarts, percent, bytes, seconds before a lease ends), NULL
-- where the kind has none.
ALTER TABLE alert_rules ADD COLUMN event TEXT CHECK (event IS NULL OR event IN (
    'node_unreachable', 'instance_exited', 'instance_oom', 'instance_restart_loop',
    'account_locked', 'gpu_xid', 'disk_full', 'session_bytes', 'lease_expiring', 'backup_failed'));
ALTER TABLE alert_rules ADD COLUMN event_threshold REAL;
CREATE INDEX alert_rules_event ON alert_rules (event) WHERE event IS NOT NULL;

-- Convergence (告警收敛): an alert about a GPU or an instance of a
-- node that is unreachable is recorded but not announced
-- (suppressed = 'node_down'). `pending` is the announcement an event alert
-- still owes its channels ('fired', 'repeated', 'resolved'): written with
-- the alert (in the transaction of whatever raised it), sent and cleared by
-- the engine, so none is lost to a restart.
ALTER TABLE alert_records ADD COLUMN suppressed TEXT CHECK (suppressed IS NULL OR suppressed IN ('node_down'));
ALTER TABLE alert_records ADD COLUMN pending TEXT CHECK (pending IS NULL OR pending IN ('fired', 'repeated', 'resolved'));
CREATE INDEX alert_records_pending ON alert_records (id) WHERE pending IS NOT NULL;

-- When gpudock itself last asked an instance's container to stop (stop,
-- restart, delete): a container that dies without such a request exited
-- unexpectedly.
ALTER TABLE instances ADD COLUMN stop_requested_at INTEGER;

-- Built-in event rules: on where obviously right (a node gone, a container
-- killed by the kernel or looping, an account locked by failed sign-ins,
-- a GPU XID error, a failed backup), off where it depends on the lab (any
-- unexpected exit, big sessions, leases). A full data disk has the
-- metric rule of V18 already (the `disk_full` event is there for rules with
-- their own N).
INSERT INTO alert_rules (name, description, level, enabled, silence_s, event, event_threshold, created_at, updated_at) VALUES
    ('Node unreachable', 'A node''s Docker daemon has not answered for a minute', 'P0', 1, 3600, 'node_unreachable', 60, CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER)),
    ('Instance OOM-killed', 'An instance''s container was killed for lack of memory', 'P1', 1, 3600, 'instance_oom', NULL, CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER)),
    ('Instance restarting in a loop', 'An instance''s container restarted five times or more', 'P1', 1, 3600, 'instance_restart_loop', 5, CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER)),
    ('Instance exited unexpectedly', 'An instance''s container stopped without anyone stopping it', 'P2', 0, 3600, 'instance_exited', NULL, CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER)),
    ('Account locked', 'An account was locked by failed sign-ins', 'P2', 1, 3600, 'account_locked', NULL, CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER)),
    ('GPU XID error', 'A GPU reported an XID error', 'P1', 1, 3600, 'gpu_xid', NULL, CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER)),
    ('Large session', 'A remote session moved more than 10 GiB', 'P3', 0, 86400, 'session_bytes', 10737418240, CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER)),
    ('Lease expiring', 'A lease ends within a day', 'P3', 0, 86400, 'lease_expiring', 86400, CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER)),
    ('Backup failed', 'A backup of the appliance failed', 'P1', 1, 3600, 'backup_failed', NULL, CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER));
