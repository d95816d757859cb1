-- SSH public keys (SSH 公钥): each user registers their own, for public-key
-- sign-in at the SSH jumpbox. One key identifies one user, so the SHA-256
-- fingerprint is unique across all users.
CREATE TABLE ssh_keys (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    -- the OpenSSH key type, e.g. ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa
    algorithm    TEXT NOT NULL,
    -- canonical OpenSSH form "type base64", without the comment
    public_key   TEXT NOT NULL,
    -- "SHA256:..." exactly as `ssh-keygen -l -E sha256` prints it
    fingerprint  TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX ssh_keys_user ON ssh_keys(user_id);

-- Keys are personal: every role manages its own (scoped to the caller in
-- every query; admins included).
INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed) VALUES
 ('GET',    '/api/v1/ssh-keys',              'account', 'List my SSH public keys',         '查看我的 SSH 公钥', 0),
 ('POST',   '/api/v1/ssh-keys',              'account', 'Add an SSH public key',           '添加 SSH 公钥', 0),
 ('DELETE', '/api/v1/ssh-keys/{id}',         'account', 'Delete an SSH public key',        '删除 SSH 公钥', 0),
 ('GET',    '/account/ssh-keys',             'pages',   'My SSH public keys page',         '我的 SSH 公钥页面', 0),
 ('POST',   '/account/ssh-keys',             'pages',   'Add an SSH public key (form)',    '添加 SSH 公钥（表单）', 0),
 ('POST',   '/account/ssh-keys/{id}/delete', 'pages',   'Delete an SSH public key (form)', '删除 SSH 公钥（表单）', 0);

INSERT INTO role_permissions (role, permission_id)
SELECT r.role, p.id FROM permissions p, (SELECT 'customer_owner' AS role UNION ALL SELECT 'customer_member') r
WHERE p.path_pattern IN ('/api/v1/ssh-keys', '/api/v1/ssh-keys/{id}')
   OR p.path_pattern LIKE '/account/ssh-keys%';
