-- The alert rule edit page (the API's PUT has existed since V18) and the
-- node page's list of the node's maintenance windows: admin-only like the
-- rest of the alert configuration.
INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed, admin_only) VALUES
 ('GET',  '/alert-rules/{id}',                  'pages', 'Alert rule edit page',                   '编辑告警规则页面', 0, 1),
 ('POST', '/alert-rules/{id}',                  'pages', 'Change an alert rule (form)',            '修改告警规则（表单）', 0, 1),
 ('GET',  '/nodes/{id}/maintenance-windows',    'pages', 'A node''s maintenance windows (node page)', '节点的维护窗口（节点页面）', 0, 1);
