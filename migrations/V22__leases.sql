-- Leases (租期, issue 14): a lease end on instances (NULL: open-ended), a
-- default lease length on specs, the reminders sent, owners' extension
-- requests, and the reclaim (回收) that keeps the record as `reclaimed`.

-- The spec's default lease length in days (NULL: open-ended).
ALTER TABLE specs ADD COLUMN lease_days INTEGER CHECK (lease_days IS NULL OR lease_days BETWEEN 1 AND 3650);
-- Unix seconds; NULL: open-ended.
ALTER TABLE instances ADD COLUMN lease_end INTEGER;
-- When the lease checker stopped it at its lease end (cleared by an extension).
ALTER TABLE instances ADD COLUMN lease_stopped_at INTEGER;
-- When the reclaim finished (container and data volume removed, capacity released).
ALTER TABLE instances ADD COLUMN reclaimed_at INTEGER;
-- The reclaim's steps as they ran (清理进度): JSON list of {step, status, detail, at}.
ALTER TABLE instances ADD COLUMN reclaim_steps TEXT NOT NULL DEFAULT '[]';

-- Reminders at 7, 3 and 1 days before a lease end, each sent once (per lease end:
-- an extension starts them again).
CREATE TABLE lease_reminders (
    instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    lease_end   INTEGER NOT NULL,
    days        INTEGER NOT NULL CHECK (days IN (7, 3, 1)),
    sent_at     INTEGER NOT NULL,
    PRIMARY KEY (instance_id, lease_end, days)
);

-- An owner's (or member's) request to extend a lease; an admin approves or rejects it.
CREATE TABLE lease_requests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    tenant_id   INTEGER REFERENCES tenants(id),
    lease_end   INTEGER NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_by  INTEGER REFERENCES users(id),
    decided_at  INTEGER,
    created_at  INTEGER NOT NULL
);
CREATE INDEX lease_requests_instance ON lease_requests(instance_id);

-- Sessions end with `lease_expired` at a lease end: the table is rebuilt for the
-- CHECK list (V17's columns in the same order; its indexes made again).
CREATE TABLE remote_sessions_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          INTEGER NOT NULL REFERENCES users(id),
    username         TEXT NOT NULL,
    tenant_id        INTEGER REFERENCES tenants(id),
    instance_id      INTEGER NOT NULL,
    instance_name    TEXT NOT NULL,
    node_id          INTEGER NOT NULL,
    node_name        TEXT NOT NULL,
    container_id     TEXT NOT NULL,
    protocol         TEXT NOT NULL CHECK (protocol IN ('web_terminal', 'ssh', 'sftp', 'port_forward')),
    command          TEXT NOT NULL DEFAULT '',
    source_ip        TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('active', 'idle', 'closed', 'terminated')),
    started_at       INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL,
    ended_at         INTEGER,
    end_reason       TEXT CHECK (end_reason IN ('user_close', 'client_lost', 'node_lost', 'idle_timeout',
                                                'admin_force', 'max_duration', 'access_revoked', 'error',
                                                'lease_expired')),
    end_detail       TEXT NOT NULL DEFAULT '',
    bytes_in         INTEGER NOT NULL DEFAULT 0,
    bytes_out        INTEGER NOT NULL DEFAULT 0,
    recording        TEXT,
    exec_tag         TEXT NOT NULL DEFAULT '',
    swept_at         INTEGER,
    target_port      INTEGER CHECK (target_port BETWEEN 1 AND 65535),
    CHECK ((protocol = 'port_forward') = (target_port IS NOT NULL))
);
INSERT INTO remote_sessions_new SELECT * FROM remote_sessions;
DROP TABLE remote_sessions;
ALTER TABLE remote_sessions_new RENAME TO remote_sessions;
CREATE INDEX remote_sessions_user ON remote_sessions(user_id);
CREATE INDEX remote_sessions_tenant ON remote_sessions(tenant_id);
CREATE INDEX remote_sessions_started ON remote_sessions(started_at);
CREATE INDEX remote_sessions_live ON remote_sessions(status) WHERE status IN ('active', 'idle');
CREATE INDEX remote_sessions_unswept ON remote_sessions(node_id) WHERE swept_at IS NULL;

-- Permission records. Setting a lease end, deciding requests and reclaiming
-- are the admins' (admin_only); every role sees the lease section of what it
-- reaches, asks for extensions of it and sees its requests.
INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed, admin_only) VALUES
 ('PATCH', '/api/v1/instances/{id}',                    'instances', 'Set or extend an instance''s lease end (续期)', '设置或延长实例租期（续期）', 0, 1),
 ('POST',  '/api/v1/instances/allocate',                'instances', 'Allocate instances to a user of a tenant (分配)', '为租户用户分配实例', 0, 1),
 ('GET',   '/api/v1/instances/{id}/reclaim',            'instances', 'What a reclaim would end (processes, sessions)', '回收前检查（进程、会话）', 0, 1),
 ('POST',  '/api/v1/instances/{id}/reclaim',            'instances', 'Reclaim an instance (回收)',                   '回收实例', 0, 1),
 ('POST',  '/api/v1/instances/{id}/lease-requests',     'instances', 'Ask for a lease extension (续期申请)',            '申请续期', 0, 0),
 ('GET',   '/api/v1/lease-requests',                    'instances', 'List lease extension requests (own / tenant / all)', '查看续期申请（本人/本租户/全部）', 0, 0),
 ('POST',  '/api/v1/lease-requests/{id}/approve',       'instances', 'Approve a lease extension request',           '批准续期申请', 0, 1),
 ('POST',  '/api/v1/lease-requests/{id}/reject',        'instances', 'Reject a lease extension request',            '拒绝续期申请', 0, 1),
 ('POST',  '/instances/{id}/lease-request',             'pages',     'Ask for a lease extension (form)',            '申请续期（表单）', 0, 0),
 ('POST',  '/lease-requests/{id}/approve',              'pages',     'Approve a lease extension request (form)',    '批准续期申请（表单）', 0, 1),
 ('POST',  '/lease-requests/{id}/reject',               'pages',     'Reject a lease extension request (form)',     '拒绝续期申请（表单）', 0, 1),
 ('GET',   '/instances/{id}/lease',                     'pages',     'Lease of an instance (section of the instance page)', '实例租期（实例页面中的一节）', 0, 0),
 ('POST',  '/instances/{id}/lease',                     'pages',     'Set or extend a lease end (form)',            '设置或延长租期（表单）', 0, 1),
 ('GET',   '/instances/{id}/reclaim',                   'pages',     'Reclaim an instance: checks and confirmation', '回收实例：检查与确认', 0, 1),
 ('POST',  '/instances/{id}/reclaim',                   'pages',     'Reclaim an instance (form)',                  '回收实例（表单）', 0, 1);

INSERT INTO role_permissions (role, permission_id)
SELECT r.role, p.id FROM permissions p, (SELECT 'customer_owner' AS role UNION ALL SELECT 'customer_member') r
WHERE p.admin_only = 0 AND (p.method, p.path_pattern) IN (
 VALUES ('GET', '/instances/{id}/lease'), ('POST', '/api/v1/instances/{id}/lease-requests'),
        ('GET', '/api/v1/lease-requests'), ('POST', '/instances/{id}/lease-request'));
