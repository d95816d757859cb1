-- Tenant quotas (配额): the most a tenant's instances may hold at once.
-- NULL = unlimited. Checked in the transaction that reserves an instance,
-- against `tenant_usage` (V15).
ALTER TABLE tenants ADD COLUMN quota_gpus INTEGER CHECK (quota_gpus >= 0);
ALTER TABLE tenants ADD COLUMN quota_instances INTEGER CHECK (quota_instances >= 0);
ALTER TABLE tenants ADD COLUMN quota_cpu_cores INTEGER CHECK (quota_cpu_cores >= 0);
ALTER TABLE tenants ADD COLUMN quota_memory_gb INTEGER CHECK (quota_memory_gb >= 0);
