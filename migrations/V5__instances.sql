-- Instances (实例): a container created from an image and a product spec on a
-- node. The spec's resources are copied into the row when it is placed, so a
-- later edit of the spec never changes what a node has reserved.
CREATE TABLE instances (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL,
    image_id       INTEGER NOT NULL REFERENCES images(id),
    spec_id        INTEGER NOT NULL REFERENCES specs(id),
    node_id        INTEGER NOT NULL REFERENCES nodes(id),
    user_id        INTEGER NOT NULL REFERENCES users(id),
    tenant_id      INTEGER REFERENCES tenants(id),
    container_id   TEXT,
    status         TEXT NOT NULL DEFAULT 'creating',
    gpu_indices    TEXT NOT NULL DEFAULT '[]',
    gpu_count      INTEGER NOT NULL,
    cpu_cores      INTEGER NOT NULL,
    memory_gb      INTEGER NOT NULL,
    system_disk_gb INTEGER NOT NULL,
    data_disk_gb   INTEGER NOT NULL,
    warnings       TEXT NOT NULL DEFAULT '[]',
    remark         TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX instances_node ON instances(node_id);
CREATE INDEX instances_user ON instances(user_id);
CREATE INDEX instances_tenant ON instances(tenant_id);

INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed) VALUES
 ('GET', '/api/v1/instances/candidate-nodes', 'instances', 'Nodes with room for a product spec', '查询满足产品规格的算力节点', 0);

INSERT INTO role_permissions (role, permission_id)
SELECT r.role, p.id FROM permissions p, (SELECT 'customer_owner' AS role UNION ALL SELECT 'customer_member') r
WHERE p.method = 'GET' AND p.path_pattern = '/api/v1/instances/candidate-nodes';
