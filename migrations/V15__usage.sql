-- What instances hold, per node and per tenant: placement reads a node's
-- row instead of summing every instance, and tenant quotas read a tenant's.
-- Triggers keep both in the transaction that reserves, changes or releases
-- an instance; every start recounts them from `instances` and corrects (and
-- logs) any difference (`instances::store::recount_usage`).
CREATE TABLE node_usage (
    node_id        INTEGER PRIMARY KEY,
    instances      INTEGER NOT NULL DEFAULT 0,
    gpus           INTEGER NOT NULL DEFAULT 0,
    cpu_cores      INTEGER NOT NULL DEFAULT 0,
    memory_gb      INTEGER NOT NULL DEFAULT 0,
    system_disk_gb INTEGER NOT NULL DEFAULT 0,
    data_disk_gb   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE tenant_usage (
    tenant_id      INTEGER PRIMARY KEY,
    instances      INTEGER NOT NULL DEFAULT 0,
    gpus           INTEGER NOT NULL DEFAULT 0,
    cpu_cores      INTEGER NOT NULL DEFAULT 0,
    memory_gb      INTEGER NOT NULL DEFAULT 0,
    system_disk_gb INTEGER NOT NULL DEFAULT 0,
    data_disk_gb   INTEGER NOT NULL DEFAULT 0
);

CREATE TRIGGER instances_usage_insert AFTER INSERT ON instances
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
AFTER UPDATE OF node_id, tenant_id, gpu_count, cpu_cores, memory_gb, system_disk_gb, data_disk_gb ON instances
BEGIN
    UPDATE node_usage SET instances = instances - 1, gpus = gpus - OLD.gpu_count,
        cpu_cores = cpu_cores - OLD.cpu_cores, memory_gb = memory_gb - OLD.memory_gb,
        system_disk_gb = system_disk_gb - OLD.system_disk_gb, data_disk_gb = data_disk_gb - OLD.data_disk_gb
        WHERE node_id = OLD.node_id;
    UPDATE tenant_usage SET instances = instances - 1, gpus = gpus - OLD.gpu_count,
        cpu_cores = cpu_cores - OLD.cpu_cores, memory_gb = memory_gb - OLD.memory_gb,
        system_disk_gb = system_disk_gb - OLD.system_disk_gb, data_disk_gb = data_disk_gb - OLD.data_disk_gb
        WHERE tenant_id = OLD.tenant_id;
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

-- The instances there are now.
INSERT INTO node_usage (node_id, instances, gpus, cpu_cores, memory_gb, system_disk_gb, data_disk_gb)
    SELECT node_id, COUNT(*), SUM(gpu_count), SUM(cpu_cores), SUM(memory_gb), SUM(system_disk_gb), SUM(data_disk_gb)
    FROM instances GROUP BY node_id;
INSERT INTO tenant_usage (tenant_id, instances, gpus, cpu_cores, memory_gb, system_disk_gb, data_disk_gb)
    SELECT tenant_id, COUNT(*), SUM(gpu_count), SUM(cpu_cores), SUM(memory_gb), SUM(system_disk_gb), SUM(data_disk_gb)
    FROM instances WHERE tenant_id IS NOT NULL GROUP BY tenant_id;
