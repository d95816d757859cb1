-- The owner's early return (退还) of an instance: the reclaim's steps and
-- its preview (running processes, live sessions), for the instance's own
-- user only (checked in `leases::return_by`); granted to both customer roles.
INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed, admin_only) VALUES
 ('GET',  '/api/v1/instances/{id}/return', 'instances', 'What returning an instance early would end (processes, sessions)', '退还前检查（进程、会话）', 0, 0),
 ('POST', '/api/v1/instances/{id}/return', 'instances', 'Return one''s instance early',                               '提前退还实例', 0, 0),
 ('GET',  '/instances/{id}/return',        'pages',     'Return an instance early: checks and confirmation',          '退还实例：检查与确认', 0, 0),
 ('POST', '/instances/{id}/return',        'pages',     'Return an instance early (form)',                            '退还实例（表单）', 0, 0);

INSERT INTO role_permissions (role, permission_id)
SELECT r.role, p.id FROM permissions p, (SELECT 'customer_owner' AS role UNION ALL SELECT 'customer_member') r
WHERE (p.method, p.path_pattern) IN (
 VALUES ('GET', '/api/v1/instances/{id}/return'), ('POST', '/api/v1/instances/{id}/return'),
        ('GET', '/instances/{id}/return'), ('POST', '/instances/{id}/return'));
