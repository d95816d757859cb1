-- Access that ends with its grant (issue 10).

-- 1. Admin-only permission records: the matrix itself, nodes, the orphan
-- report, creating tenants and the shared catalog's management. They are
-- held by the admin role alone and can be granted to no other role; any
-- grant of one made before is withdrawn.
ALTER TABLE permissions ADD COLUMN admin_only INTEGER NOT NULL DEFAULT 0 CHECK (admin_only IN (0, 1));
UPDATE permissions SET admin_only = 1 WHERE fixed = 0 AND (
    grp IN ('permissions', 'nodes')
 OR path_pattern LIKE '/permissions%'
 OR path_pattern LIKE '/nodes%'
 OR path_pattern = '/api/v1/instances/orphans'
 OR (method = 'POST' AND path_pattern IN ('/api/v1/tenants', '/tenants'))
 OR (grp = 'catalog' AND method <> 'GET')
 OR path_pattern IN ('/images/{id}', '/images/{id}/delete', '/specs/{id}', '/specs/{id}/delete')
 OR (method = 'POST' AND path_pattern IN ('/images', '/specs'))
);
DELETE FROM role_permissions WHERE permission_id IN (SELECT id FROM permissions WHERE admin_only = 1);

-- 2. One record decides who opens shells in instances, through the web
-- terminal and the SSH jumpbox alike.
UPDATE permissions
   SET description = 'Open a shell or run commands in an instance (web terminal, SSH jumpbox)',
       description_zh = '在实例中打开终端或执行命令（Web 终端、SSH 跳板机）'
 WHERE method = 'GET' AND path_pattern = '/instances/{id}/terminal/ws';

-- 3. Resetting another user's password (a temporary one, to be changed at
-- the next sign-in): admins anyone, owners their tenant's users.
INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed) VALUES
 ('POST', '/api/v1/users/{id}/reset-password', 'users', 'Reset a user''s password (temporary password; ends their sessions and tokens)', '重置用户密码（临时密码；结束其会话并吊销令牌）', 0),
 ('POST', '/users/{id}/reset-password',        'pages', 'Reset a user''s password (form)', '重置用户密码（表单）', 0);
INSERT INTO role_permissions (role, permission_id)
SELECT 'customer_owner', id FROM permissions WHERE path_pattern IN ('/api/v1/users/{id}/reset-password', '/users/{id}/reset-password');

-- 4. An instance belongs to its user's tenant, always: a user who has
-- instances cannot be moved to another tenant (the move is refused, see
-- README), and an instance is never made for another tenant than its user's.
CREATE TRIGGER users_tenant_move_keeps_instances
BEFORE UPDATE OF tenant_id ON users
WHEN NEW.tenant_id IS NOT OLD.tenant_id
 AND EXISTS (SELECT 1 FROM instances WHERE user_id = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'user_has_instances');
END;
CREATE TRIGGER instances_tenant_is_users
BEFORE INSERT ON instances
WHEN NEW.tenant_id IS NOT (SELECT tenant_id FROM users WHERE id = NEW.user_id)
BEGIN
    SELECT RAISE(ABORT, 'instance_tenant_mismatch');
END;

-- 5. Sessions may end because their user's access was revoked.
CREATE TABLE remote_sessions_v9 (
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
    command          TEXT NOT NULL DEFAULT '',
    source_ip        TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('active', 'idle', 'closed', 'terminated')),
    started_at       INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL,
    ended_at         INTEGER,
    end_reason       TEXT CHECK (end_reason IN ('user_close', 'idle_timeout', 'admin_force', 'max_duration', 'access_revoked', 'error')),
    end_detail       TEXT NOT NULL DEFAULT '',
    bytes_in         INTEGER NOT NULL DEFAULT 0,
    bytes_out        INTEGER NOT NULL DEFAULT 0,
    recording        TEXT
);
INSERT INTO remote_sessions_v9 SELECT * FROM remote_sessions;
DROP TABLE remote_sessions;
ALTER TABLE remote_sessions_v9 RENAME TO remote_sessions;
CREATE INDEX remote_sessions_user ON remote_sessions(user_id);
CREATE INDEX remote_sessions_tenant ON remote_sessions(tenant_id);
CREATE INDEX remote_sessions_started ON remote_sessions(started_at);
CREATE INDEX remote_sessions_live ON remote_sessions(status) WHERE status IN ('active', 'idle');
