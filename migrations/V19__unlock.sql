-- Lifting a lockout by failed sign-ins (解锁) before it runs out: the same
-- callers as a password reset (admins anyone, owners their tenant's members;
-- the service checks whom).
INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed) VALUES
 ('POST', '/api/v1/users/{id}/unlock', 'users', 'Unlock a user locked by failed sign-ins', '解锁因登录失败被锁定的用户', 0),
 ('POST', '/users/{id}/unlock',        'pages', 'Unlock a user (form)', '解锁用户（表单）', 0);
INSERT INTO role_permissions (role, permission_id)
SELECT 'customer_owner', id FROM permissions WHERE path_pattern IN ('/api/v1/users/{id}/unlock', '/users/{id}/unlock');
