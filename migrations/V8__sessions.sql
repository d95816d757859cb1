-- Remote sessions (会话管理): every web-terminal and jumpbox connection to an
-- instance. Names are copied in, and there is no foreign key to instances or
-- nodes: the history outlives what it points at.
CREATE TABLE remote_sessions (
    id               INTEGER PRIMARY KEY,
    user_id          INTEGER NOT NULL REFERENCES users(id),
    username         TEXT NOT NULL,
    tenant_id        INTEGER REFERENCES tenants(id),
    instance_id      INTEGER NOT NULL,
    instance_name    TEXT NOT NULL,
    node_id          INTEGER NOT NULL,
    node_name        TEXT NOT NULL,
    container_id     TEXT NOT NULL,
    protocol         TEXT NOT NULL CHECK (protocol IN ('web_terminal', 'ssh')),
    -- the command of `ssh user+inst@host 'cmd'`; empty for a shell
    command          TEXT NOT NULL DEFAULT '',
    source_ip        TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('active', 'idle', 'closed', 'terminated')),
    started_at       INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL,
    ended_at         INTEGER,
    end_reason       TEXT CHECK (end_reason IN ('user_close', 'idle_timeout', 'admin_force', 'max_duration', 'error')),
    end_detail       TEXT NOT NULL DEFAULT '',
    bytes_in         INTEGER NOT NULL DEFAULT 0,
    bytes_out        INTEGER NOT NULL DEFAULT 0,
    -- file name under <data_dir>/recordings (asciicast v2)
    recording        TEXT
);
CREATE INDEX remote_sessions_user ON remote_sessions(user_id);
CREATE INDEX remote_sessions_tenant ON remote_sessions(tenant_id);
CREATE INDEX remote_sessions_started ON remote_sessions(started_at);
CREATE INDEX remote_sessions_live ON remote_sessions(status) WHERE status IN ('active', 'idle');

INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed) VALUES
 ('GET',  '/api/v1/sessions',                'sessions', 'List remote sessions (tenant / all)',    '查看远程会话（本租户/全部）', 0),
 ('GET',  '/api/v1/sessions/{id}',           'sessions', 'Show a remote session',                  '查看远程会话', 0),
 ('POST', '/api/v1/sessions/{id}/terminate', 'sessions', 'Force-terminate a session',              '强制断开会话', 0),
 ('GET',  '/api/v1/sessions/{id}/recording', 'sessions', 'Download a session recording (asciicast)', '下载会话录像（asciicast）', 0),
 ('GET',  '/sessions',                       'pages',    'Sessions page (live and history)',        '会话管理页面', 0),
 ('GET',  '/sessions/{id}',                  'pages',    'Session page with its replay',            '会话详情与回放页面', 0),
 ('POST', '/sessions/{id}/terminate',        'pages',    'Force-terminate a session (form)',        '强制断开会话（表单）', 0),
 ('GET',  '/instances/{id}/terminal',        'pages',    'Web terminal of an instance',             '实例 Web 终端', 0),
 ('GET',  '/instances/{id}/terminal/ws',     'pages',    'Web terminal connection (WebSocket)',     'Web 终端连接（WebSocket）', 0);

-- Everyone may open terminals to what they can reach; owners see and replay
-- their tenant's sessions; only admins terminate.
INSERT OR IGNORE INTO role_permissions (role, permission_id)
SELECT r.role, p.id FROM permissions p, (SELECT 'customer_owner' AS role UNION ALL SELECT 'customer_member') r
WHERE p.path_pattern IN ('/instances/{id}/terminal', '/instances/{id}/terminal/ws');

INSERT OR IGNORE INTO role_permissions (role, permission_id)
SELECT 'customer_owner', p.id FROM permissions p
WHERE (p.method = 'GET' AND p.path_pattern IN ('/api/v1/sessions', '/api/v1/sessions/{id}', '/api/v1/sessions/{id}/recording',
                                             '/sessions', '/sessions/{id}'));
