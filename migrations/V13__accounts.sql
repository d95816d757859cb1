-- Account opening (开户申请), cloud users (云电脑用户), the node SSH host-key
-- pin, and the delivery desk's contact fields.

-- Contacts: users get an e-mail (a second sign-in name, so unique when set)
-- and a phone; tenants a contact person, e-mail and phone.
ALTER TABLE users ADD COLUMN email TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN phone TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX users_email ON users(lower(email)) WHERE email <> '';
ALTER TABLE tenants ADD COLUMN contact_person TEXT NOT NULL DEFAULT '';
ALTER TABLE tenants ADD COLUMN contact_email TEXT NOT NULL DEFAULT '';
ALTER TABLE tenants ADD COLUMN contact_phone TEXT NOT NULL DEFAULT '';

-- The SSH host key of a node, pinned on the first successful sign-in;
-- any other key is refused until an admin forgets this one.
CREATE TABLE node_ssh_host_keys (
    node_id     INTEGER PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
    algorithm   TEXT NOT NULL,
    -- OpenSSH form "type base64"
    public_key  TEXT NOT NULL,
    -- "SHA256:..." as ssh-keygen -l prints it
    fingerprint TEXT NOT NULL,
    pinned_at   INTEGER NOT NULL
);

-- A request for an OS account on a node. The node and the people keep their
-- names here, so the record stays readable after a node is deleted.
CREATE TABLE account_opening_requests (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    applicant_id        INTEGER NOT NULL REFERENCES users(id),
    tenant_id           INTEGER REFERENCES tenants(id),
    contact_email       TEXT NOT NULL DEFAULT '',
    contact_phone       TEXT NOT NULL DEFAULT '',
    username            TEXT NOT NULL,
    user_fullname       TEXT NOT NULL DEFAULT '',
    user_email          TEXT NOT NULL DEFAULT '',
    user_description    TEXT NOT NULL DEFAULT '',
    node_id             INTEGER REFERENCES nodes(id) ON DELETE SET NULL,
    node_name           TEXT NOT NULL,
    is_admin            INTEGER NOT NULL DEFAULT 0,
    -- comma-separated supplementary groups, each a checked name
    groups              TEXT NOT NULL DEFAULT '',
    status              TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
                        ('pending', 'approved', 'rejected', 'processing', 'completed', 'failed', 'expired')),
    approved_by         INTEGER REFERENCES users(id),
    approval_date       INTEGER,
    approval_notes      TEXT NOT NULL DEFAULT '',
    processed_by        INTEGER REFERENCES users(id),
    cloud_user_id       INTEGER REFERENCES cloud_users(id),
    -- the generated password, sealed with the appliance identity
    cloud_user_password BLOB,
    -- the failure class (network, host_auth, user_creation, permission_denied, interrupted)
    result_kind         TEXT NOT NULL DEFAULT '',
    result_message      TEXT NOT NULL DEFAULT '',
    -- the processing steps as JSON [{"step", "state", "detail"}]
    steps               TEXT NOT NULL DEFAULT '[]',
    -- the generation (meta 'generation') of the process that started the
    -- processing: one left processing by an older generation was interrupted
    generation          INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX account_requests_status ON account_opening_requests(status, created_at);
CREATE INDEX account_requests_tenant ON account_opening_requests(tenant_id);
CREATE INDEX account_requests_applicant ON account_opening_requests(applicant_id);

-- An OS account gpudock created on a node. Deleted ones stay as history.
CREATE TABLE cloud_users (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id              INTEGER REFERENCES nodes(id) ON DELETE SET NULL,
    node_name            TEXT NOT NULL,
    username             TEXT NOT NULL,
    fullname             TEXT NOT NULL DEFAULT '',
    email                TEXT NOT NULL DEFAULT '',
    description          TEXT NOT NULL DEFAULT '',
    status               TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'deleted')),
    is_admin             INTEGER NOT NULL DEFAULT 0,
    groups               TEXT NOT NULL DEFAULT '',
    created_from_request INTEGER REFERENCES account_opening_requests(id),
    -- who may see the current password once more: the applicant, and the
    -- admin who processed the request (each cleared once shown)
    owner_id             INTEGER REFERENCES users(id),
    -- the owner's tenant, for scoping
    tenant_id            INTEGER REFERENCES tenants(id),
    password_sealed      BLOB,
    reveal_owner         INTEGER NOT NULL DEFAULT 0,
    reveal_admin_id      INTEGER REFERENCES users(id),
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE UNIQUE INDEX cloud_users_live ON cloud_users(node_id, username) WHERE status <> 'deleted';
CREATE INDEX cloud_users_status ON cloud_users(status);
CREATE INDEX cloud_users_tenant ON cloud_users(tenant_id);

-- Everyone may apply and follow their own requests (scoped in the queries:
-- members their own, owners their tenant's); reviewing, processing, the
-- cloud users and the node's SSH are the admins' alone (admin_only: no role
-- can be granted them). The user password reset's records came with V11.
INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed, admin_only) VALUES
 ('GET',    '/api/v1/account-openings',                     'accounts', 'List account-opening requests (own / tenant / all)', '查看开户申请（本人/本租户/全部）', 0, 0),
 ('POST',   '/api/v1/account-openings',                     'accounts', 'Apply for an account on a node',          '提交开户申请', 0, 0),
 ('GET',    '/api/v1/account-openings/{id}',                'accounts', 'Show an account-opening request',         '查看开户申请', 0, 0),
 ('POST',   '/api/v1/account-openings/{id}/approve',        'accounts', 'Approve a request',                       '批准开户申请', 0, 1),
 ('POST',   '/api/v1/account-openings/{id}/reject',         'accounts', 'Reject a request',                        '拒绝开户申请', 0, 1),
 ('POST',   '/api/v1/account-openings/{id}/process',        'accounts', 'Open the account on the node',            '执行开户', 0, 1),
 ('POST',   '/api/v1/account-openings/{id}/reveal-password','accounts', 'Show the new account''s password once',   '查看一次新账户密码', 0, 0),
 ('POST',   '/api/v1/account-openings/batch',               'accounts', 'Approve or reject several requests',      '批量审核开户申请', 0, 1),
 ('GET',    '/api/v1/cloud-users',                          'accounts', 'List cloud users',                        '查看云电脑用户', 0, 1),
 ('GET',    '/api/v1/cloud-users/{id}',                     'accounts', 'Show a cloud user',                       '查看云电脑用户详情', 0, 1),
 ('DELETE', '/api/v1/cloud-users/{id}',                     'accounts', 'Delete a cloud user on its node',         '删除云电脑用户', 0, 1),
 ('POST',   '/api/v1/cloud-users/{id}/disable',             'accounts', 'Disable a cloud user',                    '禁用云电脑用户', 0, 1),
 ('POST',   '/api/v1/cloud-users/{id}/enable',              'accounts', 'Enable a cloud user',                     '启用云电脑用户', 0, 1),
 ('POST',   '/api/v1/cloud-users/{id}/reset-password',      'accounts', 'Reset a cloud user''s password',          '重置云电脑用户密码', 0, 1),
 ('POST',   '/api/v1/cloud-users/batch',                    'accounts', 'Change the status of several cloud users','批量修改云电脑用户状态', 0, 1),
 ('GET',    '/api/v1/nodes/{id}/ssh-host-key',              'nodes',    'Show a node''s pinned SSH host key',      '查看节点固定的 SSH 主机密钥', 0, 1),
 ('DELETE', '/api/v1/nodes/{id}/ssh-host-key',              'nodes',    'Forget a node''s pinned SSH host key',    '清除节点固定的 SSH 主机密钥', 0, 1),
 ('POST',   '/api/v1/nodes/{id}/ssh-test',                  'nodes',    'Test SSH to a node',                      '测试节点 SSH 连接', 0, 1),
 ('GET',    '/api/v1/instances/{id}/connection',            'instances','Connection summary of an instance',       '实例连接信息摘要', 0, 0),
 ('GET',    '/operations/account-openings/',                'pages',    'Account-opening requests page',           '开户申请页面', 0, 0),
 ('GET',    '/operations/account-openings/create/',         'pages',    'Account-opening application form',        '提交开户申请页面', 0, 0),
 ('POST',   '/operations/account-openings/create/',         'pages',    'Apply for an account (form)',             '提交开户申请（表单）', 0, 0),
 ('GET',    '/operations/account-openings/{id}/',           'pages',    'Account-opening request page',            '开户申请详情页面', 0, 0),
 ('POST',   '/operations/account-openings/{id}/approve/',   'pages',    'Approve a request (form)',                '批准开户申请（表单）', 0, 1),
 ('POST',   '/operations/account-openings/{id}/reject/',    'pages',    'Reject a request (form)',                 '拒绝开户申请（表单）', 0, 1),
 ('POST',   '/operations/account-openings/{id}/process/',   'pages',    'Open the account (form)',                 '执行开户（表单）', 0, 1),
 ('POST',   '/operations/account-openings/{id}/reveal/',    'pages',    'Show the new password once (form)',       '查看一次新账户密码（表单）', 0, 0),
 ('POST',   '/operations/account-openings/batch/',          'pages',    'Batch review (form)',                     '批量审核（表单）', 0, 1),
 ('GET',    '/operations/cloud-users/',                     'pages',    'Cloud users page',                        '云电脑用户页面', 0, 1),
 ('POST',   '/operations/cloud-users/{id}/disable/',        'pages',    'Disable a cloud user (form)',             '禁用云电脑用户（表单）', 0, 1),
 ('POST',   '/operations/cloud-users/{id}/enable/',         'pages',    'Enable a cloud user (form)',              '启用云电脑用户（表单）', 0, 1),
 ('POST',   '/operations/cloud-users/{id}/reset-password/', 'pages',    'Reset a cloud user''s password (form)',   '重置云电脑用户密码（表单）', 0, 1),
 ('POST',   '/operations/cloud-users/{id}/delete/',         'pages',    'Delete a cloud user (form)',              '删除云电脑用户（表单）', 0, 1),
 ('POST',   '/operations/cloud-users/batch/',               'pages',    'Batch status change (form)',              '批量修改状态（表单）', 0, 1),
 ('GET',    '/nodes/{id}/ssh',                              'pages',    'Node SSH section',                        '节点 SSH 信息', 0, 1),
 ('POST',   '/nodes/{id}/ssh-test',                         'pages',    'Test SSH to a node (form)',               '测试节点 SSH（表单）', 0, 1),
 ('POST',   '/nodes/{id}/ssh-host-key/forget',              'pages',    'Forget the pinned host key (form)',       '清除固定的主机密钥（表单）', 0, 1);

INSERT INTO role_permissions (role, permission_id)
SELECT r.role, p.id FROM permissions p, (SELECT 'customer_owner' AS role UNION ALL SELECT 'customer_member') r
WHERE p.admin_only = 0 AND (p.method, p.path_pattern) IN (
 VALUES ('GET', '/api/v1/account-openings'), ('POST', '/api/v1/account-openings'),
        ('GET', '/api/v1/account-openings/{id}'), ('POST', '/api/v1/account-openings/{id}/reveal-password'),
        ('GET', '/api/v1/instances/{id}/connection'),
        ('GET', '/operations/account-openings/'), ('GET', '/operations/account-openings/create/'),
        ('POST', '/operations/account-openings/create/'), ('GET', '/operations/account-openings/{id}/'),
        ('POST', '/operations/account-openings/{id}/reveal/'));
