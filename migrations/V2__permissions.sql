-- Permission records for every route of the appliance shell, and the default
-- grants of the two customer roles. The admin role is granted everything.
INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed) VALUES
 ('GET',    '/api/v1/me',                  'account',     'Show my account',                    '查看我的账户', 1),
 ('POST',   '/api/v1/auth/logout',         'account',     'Sign out',                           '退出登录', 1),
 ('POST',   '/api/v1/auth/password',       'account',     'Change my password',                 '修改我的密码', 1),
 ('GET',    '/api/v1/tokens',              'account',     'List my API tokens',                 '查看我的 API 令牌', 0),
 ('POST',   '/api/v1/tokens',              'account',     'Create an API token',                '创建 API 令牌', 0),
 ('DELETE', '/api/v1/tokens/{id}',         'account',     'Revoke an API token',                '吊销 API 令牌', 0),
 ('GET',    '/api/v1/users',               'users',       'List users',                         '查看用户列表', 0),
 ('POST',   '/api/v1/users',               'users',       'Create a user',                      '创建用户', 0),
 ('GET',    '/api/v1/users/{id}',          'users',       'Show a user',                        '查看用户', 0),
 ('PATCH',  '/api/v1/users/{id}',          'users',       'Change a user (role, tenant, enabled)', '修改用户（角色、租户、启用）', 0),
 ('GET',    '/api/v1/tenants',             'tenants',     'List tenants',                       '查看租户列表', 0),
 ('POST',   '/api/v1/tenants',             'tenants',     'Create a tenant',                    '创建租户', 0),
 ('GET',    '/api/v1/tenants/{id}',        'tenants',     'Show a tenant',                      '查看租户', 0),
 ('PATCH',  '/api/v1/tenants/{id}',        'tenants',     'Change a tenant',                    '修改租户', 0),
 ('GET',    '/api/v1/audit',               'audit',       'Read and export the audit log',      '查看并导出审计日志', 0),
 ('GET',    '/api/v1/permissions',         'permissions', 'Read the role/permission matrix',    '查看角色权限矩阵', 0),
 ('PUT',    '/api/v1/permissions/{role}/{id}', 'permissions', 'Grant a permission to a role',   '授予角色权限', 0),
 ('DELETE', '/api/v1/permissions/{role}/{id}', 'permissions', 'Revoke a permission from a role','撤销角色权限', 0),
 ('GET',    '/',                           'pages',       'Dashboard page',                     '仪表盘页面', 0),
 ('GET',    '/account',                    'pages',       'My account page',                    '我的账户页面', 1),
 ('GET',    '/account/password',           'pages',       'Password change page',               '修改密码页面', 1),
 ('POST',   '/account/password',           'pages',       'Change my password (form)',          '修改密码（表单）', 1),
 ('POST',   '/account/tokens',             'pages',       'Create an API token (form)',         '创建 API 令牌（表单）', 0),
 ('POST',   '/account/tokens/{id}/revoke', 'pages',       'Revoke an API token (form)',         '吊销 API 令牌（表单）', 0),
 ('POST',   '/logout',                     'pages',       'Sign out (form)',                    '退出登录（表单）', 1),
 ('GET',    '/users',                      'pages',       'Users page',                         '用户页面', 0),
 ('POST',   '/users',                      'pages',       'Create a user (form)',               '创建用户（表单）', 0),
 ('GET',    '/users/{id}',                 'pages',       'User edit page',                     '用户编辑页面', 0),
 ('POST',   '/users/{id}',                 'pages',       'Change a user (form)',               '修改用户（表单）', 0),
 ('GET',    '/tenants',                    'pages',       'Tenants page',                       '租户页面', 0),
 ('POST',   '/tenants',                    'pages',       'Create a tenant (form)',             '创建租户（表单）', 0),
 ('GET',    '/tenants/{id}',               'pages',       'Tenant edit page',                   '租户编辑页面', 0),
 ('POST',   '/tenants/{id}',               'pages',       'Change a tenant (form)',             '修改租户（表单）', 0),
 ('GET',    '/permissions',                'pages',       'Permission matrix page',             '权限矩阵页面', 0),
 ('POST',   '/permissions/{role}/{id}',    'pages',       'Toggle a grant (form)',              '切换授权（表单）', 0),
 ('GET',    '/audit',                      'pages',       'Audit log page',                     '审计日志页面', 0);

INSERT INTO role_permissions (role, permission_id)
SELECT 'customer_owner', id FROM permissions WHERE fixed = 0 AND (method, path_pattern) IN (
 VALUES ('GET','/api/v1/tokens'), ('POST','/api/v1/tokens'), ('DELETE','/api/v1/tokens/{id}'),
        ('GET','/api/v1/users'), ('POST','/api/v1/users'), ('GET','/api/v1/users/{id}'), ('PATCH','/api/v1/users/{id}'),
        ('GET','/api/v1/tenants'), ('GET','/api/v1/tenants/{id}'),
        ('GET','/api/v1/audit'),
        ('GET','/'), ('POST','/account/tokens'), ('POST','/account/tokens/{id}/revoke'),
        ('GET','/users'), ('POST','/users'), ('GET','/users/{id}'), ('POST','/users/{id}'),
        ('GET','/tenants'), ('GET','/tenants/{id}'), ('GET','/audit'));

INSERT INTO role_permissions (role, permission_id)
SELECT 'customer_member', id FROM permissions WHERE fixed = 0 AND (method, path_pattern) IN (
 VALUES ('GET','/api/v1/tokens'), ('POST','/api/v1/tokens'), ('DELETE','/api/v1/tokens/{id}'),
        ('GET','/'), ('POST','/account/tokens'), ('POST','/account/tokens/{id}/revoke'));
