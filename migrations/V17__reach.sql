-- Reaching services inside instances (issue 15): SSH port forwarding through
-- the jumpbox and web access through the HTTPS proxy.

-- 1. A tunnel (`ssh -L` to a port of an instance) is a remote session with
-- protocol `port_forward` and the port it reaches. The table is rebuilt for
-- the protocol's CHECK list (V16's columns in the same order, then the new
-- one; its indexes made again): 'sftp' (V16) and 'port_forward'.
CREATE TABLE remote_sessions_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          INTEGER NOT NULL REFERENCES users(id),
    username         TEXT NOT NULL,
    tenant_id        INTEGER REFERENCES tenants(id),
    -- the instance; 0 for a dataset's transfers (instance_name then says
    -- `dataset:<name>`)
    instance_id      INTEGER NOT NULL,
    instance_name    TEXT NOT NULL,
    node_id          INTEGER NOT NULL,
    node_name        TEXT NOT NULL,
    container_id     TEXT NOT NULL,
    protocol         TEXT NOT NULL CHECK (protocol IN ('web_terminal', 'ssh', 'sftp', 'port_forward')),
    -- the command of `ssh user+inst@host 'cmd'`; empty for a shell or a tunnel
    command          TEXT NOT NULL DEFAULT '',
    source_ip        TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('active', 'idle', 'closed', 'terminated')),
    started_at       INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL,
    ended_at         INTEGER,
    end_reason       TEXT CHECK (end_reason IN ('user_close', 'client_lost', 'node_lost', 'idle_timeout',
                                                'admin_force', 'max_duration', 'access_revoked', 'error')),
    end_detail       TEXT NOT NULL DEFAULT '',
    bytes_in         INTEGER NOT NULL DEFAULT 0,
    bytes_out        INTEGER NOT NULL DEFAULT 0,
    -- file name under <data_dir>/recordings (asciicast v2); none for sftp and tunnels
    recording        TEXT,
    exec_tag         TEXT NOT NULL DEFAULT '',
    swept_at         INTEGER,
    -- the port inside the instance a tunnel reaches (port_forward only)
    target_port      INTEGER CHECK (target_port BETWEEN 1 AND 65535),
    CHECK ((protocol = 'port_forward') = (target_port IS NOT NULL))
);
INSERT INTO remote_sessions_new SELECT *, NULL FROM remote_sessions;
DROP TABLE remote_sessions;
ALTER TABLE remote_sessions_new RENAME TO remote_sessions;
CREATE INDEX remote_sessions_user ON remote_sessions(user_id);
CREATE INDEX remote_sessions_tenant ON remote_sessions(tenant_id);
CREATE INDEX remote_sessions_started ON remote_sessions(started_at);
CREATE INDEX remote_sessions_live ON remote_sessions(status) WHERE status IN ('active', 'idle');
CREATE INDEX remote_sessions_unswept ON remote_sessions(node_id) WHERE swept_at IS NULL;

-- 2. Which ports of an instance may be forwarded (端口转发): no row, or an
-- empty list, is every port of the container; an admin may restrict it to a
-- list such as `22,6006,8888,9000-9100`.
CREATE TABLE instance_forward_ports (
    instance_id INTEGER PRIMARY KEY REFERENCES instances(id) ON DELETE CASCADE,
    ports       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- 3. Web access (对外访问): a port of an instance served through the HTTPS
-- proxy under a name. `proxy_slot` says which of the proxy's ports serves it
-- (0: proxy_listen's port, 1: the next...) when the proxy gives each service
-- a port of its own (no wildcard domain); the API shows the address.
CREATE TABLE web_services (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    target_port INTEGER NOT NULL CHECK (target_port BETWEEN 1 AND 65535),
    name        TEXT NOT NULL,
    proxy_slot  INTEGER UNIQUE CHECK (proxy_slot >= 0),
    created_by  INTEGER REFERENCES users(id),
    created_at  INTEGER NOT NULL,
    UNIQUE (instance_id, target_port)
);

-- 4. The HTTPS proxy's sign-in: a one-time hand-off (a minute to use, for
-- one service) turns into a sign-in of the browser on the app's origin (its
-- own cookie). Both are kept as hashes; both name the user's access
-- generation, so a revocation ends them; both go with their service.
CREATE TABLE proxy_handoffs (
    token_hash TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    epoch      INTEGER NOT NULL,
    service_id INTEGER NOT NULL REFERENCES web_services(id) ON DELETE CASCADE,
    next       TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE proxy_sessions (
    id_hash    TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    epoch      INTEGER NOT NULL,
    service_id INTEGER NOT NULL REFERENCES web_services(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX proxy_sessions_service ON proxy_sessions(service_id);

-- 5. Permission records. Every role may see an instance's services, turn web
-- access on and off for what it reaches, open a web app and forward ports;
-- restricting the forwarded ports is an admin's. `SSH port-forward` is not a
-- route: it is the jumpbox's `direct-tcpip` (ssh -L, ssh -J, ssh -W), asked
-- through auth::allowed like a route.
INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed, admin_only) VALUES
 ('GET',    '/api/v1/instances/{id}/reach',        'instances', 'Show an instance''s forwarded ports and web services', '查看实例的端口转发与对外访问', 0, 0),
 ('PUT',    '/api/v1/instances/{id}/reach/ports',  'instances', 'Restrict which ports of an instance may be forwarded', '限制实例可转发的端口', 0, 1),
 ('POST',   '/api/v1/instances/{id}/web',          'instances', 'Turn on web access (HTTPS proxy) for a port of an instance', '开启实例端口的对外访问（HTTPS 代理）', 0, 0),
 ('DELETE', '/api/v1/instances/{id}/web/{port}',   'instances', 'Turn off web access for a port of an instance', '关闭实例端口的对外访问', 0, 0),
 ('SSH',    'port-forward',                        'instances', 'Forward ports of an instance through the SSH jumpbox (ssh -L, ssh -J)', '通过 SSH 跳板机转发实例端口（ssh -L、ssh -J）', 0, 0),
 ('GET',    '/instances/{id}/reach',               'pages',     'Services of an instance (section of the instance page)', '实例服务（实例页面中的一节）', 0, 0),
 ('POST',   '/instances/{id}/reach/ports',         'pages',     'Restrict which ports of an instance may be forwarded (form)', '限制实例可转发的端口（表单）', 0, 1),
 ('POST',   '/instances/{id}/web',                 'pages',     'Turn on web access for a port (form)', '开启端口对外访问（表单）', 0, 0),
 ('POST',   '/instances/{id}/web/{port}/delete',   'pages',     'Turn off web access for a port (form)', '关闭端口对外访问（表单）', 0, 0),
 ('GET',    '/instances/{id}/web/{port}/open',     'pages',     'Open a web app of an instance through the HTTPS proxy (every proxied request asks this record)', '通过 HTTPS 代理打开实例中的 Web 应用（每个代理请求都按此记录判断）', 0, 0);

INSERT INTO role_permissions (role, permission_id)
SELECT r.role, p.id FROM permissions p, (SELECT 'customer_owner' AS role UNION ALL SELECT 'customer_member') r
WHERE (p.method, p.path_pattern) IN (
 VALUES ('GET', '/api/v1/instances/{id}/reach'), ('POST', '/api/v1/instances/{id}/web'),
        ('DELETE', '/api/v1/instances/{id}/web/{port}'), ('SSH', 'port-forward'),
        ('GET', '/instances/{id}/reach'), ('POST', '/instances/{id}/web'),
        ('POST', '/instances/{id}/web/{port}/delete'), ('GET', '/instances/{id}/web/{port}/open'));
