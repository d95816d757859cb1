-- Metering (issue 14): every running interval of every instance, with what
-- it held and the price per hour it was placed at, copied so that later spec
-- edits and the instance's own removal or reclaim do not rewrite history.
-- Triggers on `instances.status` open an interval when it becomes
-- `running` and close it when it leaves; the status follows the lifecycle
-- and the Docker event stream (instances::sync), and every start reconciles
-- open intervals with the statuses (`usage::reconcile`).
ALTER TABLE instances ADD COLUMN price_cents INTEGER NOT NULL DEFAULT 0;
UPDATE instances SET price_cents = COALESCE((SELECT s.price_cents FROM specs s WHERE s.id = instances.spec_id), 0);

-- The spec's price per hour at placement, in the reserving transaction.
CREATE TRIGGER instances_price_at_placement AFTER INSERT ON instances
BEGIN
    UPDATE instances SET price_cents = COALESCE((SELECT s.price_cents FROM specs s WHERE s.id = NEW.spec_id), 0)
        WHERE id = NEW.id;
END;

CREATE TABLE instance_intervals (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id   INTEGER NOT NULL,
    instance_name TEXT NOT NULL,
    user_id       INTEGER NOT NULL,
    tenant_id     INTEGER,
    gpu_count     INTEGER NOT NULL,
    cpu_cores     INTEGER NOT NULL,
    price_cents   INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    -- NULL while running
    ended_at      INTEGER
);
CREATE UNIQUE INDEX instance_intervals_open ON instance_intervals (instance_id) WHERE ended_at IS NULL;
CREATE INDEX instance_intervals_user ON instance_intervals (user_id, started_at);
CREATE INDEX instance_intervals_tenant ON instance_intervals (tenant_id, started_at);

-- The time of a status change: the row's new updated_at when the change
-- set one (the caller's clock), else the database's clock.
CREATE TRIGGER instances_interval_open AFTER UPDATE OF status ON instances
WHEN NEW.status = 'running' AND OLD.status <> 'running'
BEGIN
    INSERT OR IGNORE INTO instance_intervals
        (instance_id, instance_name, user_id, tenant_id, gpu_count, cpu_cores, price_cents, started_at)
        VALUES (NEW.id, NEW.name, NEW.user_id, NEW.tenant_id, NEW.gpu_count, NEW.cpu_cores, NEW.price_cents,
            CASE WHEN NEW.updated_at > OLD.updated_at THEN NEW.updated_at
                 ELSE CAST(strftime('%s', 'now') AS INTEGER) END);
END;

CREATE TRIGGER instances_interval_close AFTER UPDATE OF status ON instances
WHEN OLD.status = 'running' AND NEW.status <> 'running'
BEGIN
    UPDATE instance_intervals SET ended_at = MAX(started_at,
            CASE WHEN NEW.updated_at > OLD.updated_at THEN NEW.updated_at
                 ELSE CAST(strftime('%s', 'now') AS INTEGER) END)
        WHERE instance_id = NEW.id AND ended_at IS NULL;
END;

CREATE TRIGGER instances_interval_delete AFTER DELETE ON instances
BEGIN
    UPDATE instance_intervals SET ended_at = MAX(started_at, CAST(strftime('%s', 'now') AS INTEGER))
        WHERE instance_id = OLD.id AND ended_at IS NULL;
END;

-- The instances running now are metered from now.
INSERT INTO instance_intervals
    (instance_id, instance_name, user_id, tenant_id, gpu_count, cpu_cores, price_cents, started_at)
    SELECT id, name, user_id, tenant_id, gpu_count, cpu_cores, price_cents, CAST(strftime('%s', 'now') AS INTEGER)
    FROM instances WHERE status = 'running';

-- A reclaimed instance holds nothing: the usage triggers (V15) counted its
-- row in `instances`; now they count only rows not reclaimed.
DROP TRIGGER instances_usage_insert;
DROP TRIGGER instances_usage_delete;
DROP TRIGGER instances_usage_update;
CREATE TRIGGER instances_usage_insert AFTER INSERT ON instances
WHEN NEW.reclaimed_at IS NULL
BEGIN
    INSERT INTO node_usage (node_id, instances, gpus, cpu_cores, memory_gb, system_disk_gb, data_disk_gb)
        VALUES (NEW.node_id, 1, NEW.gpu_count, NEW.cpu_cores, NEW.memory_gb, NEW.system_disk_gb, NEW.data_disk_gb)
        ON CONFLICT (node_id) DO UPDATE SET
            instances = instances + 1, gpus = gpus + excluded.gpus, cpu_cores = cpu_cores + excluded.cpu_cores,
            memory_gb = memory_gb + excluded.memory_gb, system_disk_gb = system_disk_gb + excluded.system_disk_gb,
            data_disk_gb = data_disk_gb + excluded.data_disk_gb;
    INSERT INTO tenant_usage (tenant_id, instances, gpus, cpu_cores, memory_gb, system_disk_gb, data_disk_gb)
        SELECT NEW.tenant_id, 1, NEW.gpu_count, NEW.cpu_cores, NEW.memory_gb, NEW.system_disk_gb, NEW.data_disk_gb
        WHERE NEW.tenant_id IS NOT NULL
        ON CONFLICT (tenant_id) DO UPDATE SET
            instances = instances + 1, gpus = gpus + excluded.gpus, cpu_cores = cpu_cores + excluded.cpu_cores,
            memory_gb = memory_gb + excluded.memory_gb, system_disk_gb = system_disk_gb + excluded.system_disk_gb,
            data_disk_gb = data_disk_gb + excluded.data_disk_gb;
END;

CREATE TRIGGER instances_usage_delete AFTER DELETE ON instances
WHEN OLD.reclaimed_at IS NULL
BEGIN
    UPDATE node_usage SET instances = instances - 1, gpus = gpus - OLD.gpu_count,
        cpu_cores = cpu_cores - OLD.cpu_cores, memory_gb = memory_gb - OLD.memory_gb,
        system_disk_gb = system_disk_gb - OLD.system_disk_gb, data_disk_gb = data_disk_gb - OLD.data_disk_gb
        WHERE node_id = OLD.node_id;
    UPDATE tenant_usage SET instances = instances - 1, gpus = gpus - OLD.gpu_count,
        cpu_cores = cpu_cores - OLD.cpu_cores, memory_gb = memory_gb - OLD.memory_gb,
        system_disk_gb = system_disk_gb - OLD.system_disk_gb, data_disk_gb = data_disk_gb - OLD.data_disk_gb
        WHERE tenant_id = OLD.tenant_id;
END;

-- A change of what an instance holds or where: the old figures out, the new in.
CREATE TRIGGER instances_usage_update
AFTER UPDATE OF node_id, tenant_id, gpu_count, cpu_cores, memory_gb, system_disk_gb, data_disk_gb, reclaimed_at ON instances
BEGIN
    UPDATE node_usage SET instances = instances - 1, gpus = gpus - OLD.gpu_count,
        cpu_cores = cpu_cores - OLD.cpu_cores, memory_gb = memory_gb - OLD.memory_gb,
        system_disk_gb = system_disk_gb - OLD.system_disk_gb, data_disk_gb = data_disk_gb - OLD.data_disk_gb
        WHERE node_id = OLD.node_id AND OLD.reclaimed_at IS NULL;
    UPDATE tenant_usage SET instances = instances - 1, gpus = gpus - OLD.gpu_count,
        cpu_cores = cpu_cores - OLD.cpu_cores, memory_gb = memory_gb - OLD.memory_gb,
        system_disk_gb = system_disk_gb - OLD.system_disk_gb, data_disk_gb = data_disk_gb - OLD.data_disk_gb
        WHERE tenant_id = OLD.tenant_id AND OLD.reclaimed_at IS NULL;
    INSERT INTO node_usage (node_id, instances, gpus, cpu_cores, memory_gb, system_disk_gb, data_disk_gb)
        SELECT NEW.node_id, 1, NEW.gpu_count, NEW.cpu_cores, NEW.memory_gb, NEW.system_disk_gb, NEW.data_disk_gb
        WHERE NEW.reclaimed_at IS NULL
        ON CONFLICT (node_id) DO UPDATE SET
            instances = instances + 1, gpus = gpus + excluded.gpus, cpu_cores = cpu_cores + excluded.cpu_cores,
            memory_gb = memory_gb + excluded.memory_gb, system_disk_gb = system_disk_gb + excluded.system_disk_gb,
            data_disk_gb = data_disk_gb + excluded.data_disk_gb;
    INSERT INTO tenant_usage (tenant_id, instances, gpus, cpu_cores, memory_gb, system_disk_gb, data_disk_gb)
        SELECT NEW.tenant_id, 1, NEW.gpu_count, NEW.cpu_cores, NEW.memory_gb, NEW.system_disk_gb, NEW.data_disk_gb
        WHERE NEW.tenant_id IS NOT NULL AND NEW.reclaimed_at IS NULL
        ON CONFLICT (tenant_id) DO UPDATE SET
            instances = instances + 1, gpus = gpus + excluded.gpus, cpu_cores = cpu_cores + excluded.cpu_cores,
            memory_gb = memory_gb + excluded.memory_gb, system_disk_gb = system_disk_gb + excluded.system_disk_gb,
            data_disk_gb = data_disk_gb + excluded.data_disk_gb;
END;

DELETE FROM node_usage;
DELETE FROM tenant_usage;
INSERT INTO node_usage (node_id, instances, gpus, cpu_cores, memory_gb, system_disk_gb, data_disk_gb)
    SELECT node_id, COUNT(*), SUM(gpu_count), SUM(cpu_cores), SUM(memory_gb), SUM(system_disk_gb), SUM(data_disk_gb)
    FROM instances WHERE reclaimed_at IS NULL GROUP BY node_id;
INSERT INTO tenant_usage (tenant_id, instances, gpus, cpu_cores, memory_gb, system_disk_gb, data_disk_gb)
    SELECT tenant_id, COUNT(*), SUM(gpu_count), SUM(cpu_cores), SUM(memory_gb), SUM(system_disk_gb), SUM(data_disk_gb)
    FROM instances WHERE tenant_id IS NOT NULL AND reclaimed_at IS NULL GROUP BY tenant_id;

INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed, admin_only) VALUES
 ('GET', '/api/v1/usage',     'instances', 'GPU-hours, core-hours and cost (own / tenant / all)', '用量与费用（本人/本租户/全部）', 0, 0),
 ('GET', '/api/v1/usage.csv', 'instances', 'Usage as CSV (own / tenant / all)',                    '导出用量 CSV（本人/本租户/全部）', 0, 0),
 ('GET', '/usage',            'pages',     'Usage page (own / tenant / all)',                      '用量页面（本人/本租户/全部）', 0, 0);
INSERT INTO role_permissions (role, permission_id)
SELECT r.role, p.id FROM permissions p, (SELECT 'customer_owner' AS role UNION ALL SELECT 'customer_member') r
WHERE p.admin_only = 0 AND (p.method, p.path_pattern) IN (VALUES ('GET', '/api/v1/usage'), ('GET', '/api/v1/usage.csv'), ('GET', '/usage'));
