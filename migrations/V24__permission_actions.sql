-- The permission matrix in words (issue 18): one switch grants or revokes
-- every route of an action (its page and its API) for a customer role.
-- Admin-only like the rest of the matrix.
INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed, admin_only) VALUES
 ('POST', '/permissions/{role}/action/{feature}/{action}', 'pages', 'Grant or revoke an action (all its routes) for a role (form)', '为角色授予或撤销一个操作（其全部路由）（表单）', 0, 1);

-- English descriptions without Chinese in them (the matrix shows one
-- language at a time).
UPDATE permissions SET description = 'Set or extend an instance''s lease end' WHERE method = 'PATCH' AND path_pattern = '/api/v1/instances/{id}';
UPDATE permissions SET description = 'Allocate instances to a user of a tenant' WHERE method = 'POST' AND path_pattern = '/api/v1/instances/allocate';
UPDATE permissions SET description = 'Reclaim an instance' WHERE method = 'POST' AND path_pattern = '/api/v1/instances/{id}/reclaim';
UPDATE permissions SET description = 'Ask for a lease extension' WHERE method = 'POST' AND path_pattern = '/api/v1/instances/{id}/lease-requests';
