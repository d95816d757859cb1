-- Instances, second part: every operation, page and the orphan report.

-- This appliance's identity on shared Docker daemons: container and volume
-- names and the `gpudock.install` label carry it, so two installations (or
-- two test servers) using one daemon never take each other's containers.
INSERT OR IGNORE INTO meta (key, value) VALUES ('install_id', lower(hex(randomblob(4))));

-- Containers labelled for this installation whose instance does not exist
-- (or has another container): found by the reconciler, shown to admins,
-- never removed silently.
CREATE TABLE orphan_containers (
    node_id        INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    container_id   TEXT NOT NULL,
    name           TEXT NOT NULL,
    instance_label TEXT NOT NULL,
    state          TEXT NOT NULL,
    first_seen     INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL,
    PRIMARY KEY (node_id, container_id)
);

-- Every role may create and run instances; what each user reaches is scoped
-- in the queries (member: own; owner: tenant; admin: all).
INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed) VALUES
 ('GET',    '/api/v1/instances',              'instances', 'List instances (own / tenant / all)',   '查看实例列表（本人/本租户/全部）', 0),
 ('POST',   '/api/v1/instances',              'instances', 'Create an instance',                    '创建实例', 0),
 ('GET',    '/api/v1/instances/{id}',         'instances', 'Show an instance',                      '查看实例', 0),
 ('DELETE', '/api/v1/instances/{id}',         'instances', 'Delete an instance and its container',  '删除实例及其容器', 0),
 ('POST',   '/api/v1/instances/{id}/start',   'instances', 'Start an instance',                     '启动实例', 0),
 ('POST',   '/api/v1/instances/{id}/stop',    'instances', 'Stop an instance',                      '关闭实例', 0),
 ('POST',   '/api/v1/instances/{id}/restart', 'instances', 'Restart an instance',                   '重启实例', 0),
 ('GET',    '/api/v1/instances/{id}/logs',    'instances', 'Read or follow an instance''s logs',    '查看或跟踪实例日志', 0),
 ('GET',    '/api/v1/instances/orphans',      'instances', 'Containers without an instance',        '无对应实例的容器', 0),
 ('GET',    '/instances',                     'pages',     'Instances page',                        '实例页面', 0),
 ('POST',   '/instances',                     'pages',     'Create an instance (wizard)',           '创建实例（向导）', 0),
 ('GET',    '/instances/new',                 'pages',     'New instance wizard',                   '新增实例向导', 0),
 ('GET',    '/instances/{id}',                'pages',     'Instance page',                         '实例详情页面', 0),
 ('POST',   '/instances/{id}/start',          'pages',     'Start an instance (form)',              '启动实例（表单）', 0),
 ('POST',   '/instances/{id}/stop',           'pages',     'Stop an instance (form)',               '关闭实例（表单）', 0),
 ('POST',   '/instances/{id}/restart',        'pages',     'Restart an instance (form)',            '重启实例（表单）', 0),
 ('POST',   '/instances/{id}/delete',         'pages',     'Delete an instance (form)',             '删除实例（表单）', 0),
 ('GET',    '/jobs/{id}',                     'pages',     'Progress of my background work',        '后台任务进度', 1);

INSERT OR IGNORE INTO role_permissions (role, permission_id)
SELECT r.role, p.id FROM permissions p, (SELECT 'customer_owner' AS role UNION ALL SELECT 'customer_member') r
WHERE (p.grp = 'instances' AND p.path_pattern <> '/api/v1/instances/orphans')
   OR (p.grp = 'pages' AND (p.path_pattern LIKE '/instances%' OR p.path_pattern = '/jobs/{id}'));
