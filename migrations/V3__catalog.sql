-- Image library (镜像库) and product specs (产品规格), with their permission
-- records. Customers may read listed entries; only admins change them.
CREATE TABLE images (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    address     TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    source      TEXT NOT NULL DEFAULT '',
    listed      INTEGER NOT NULL DEFAULT 1,
    remark      TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE specs (
    id                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL,
    gpu_model           TEXT NOT NULL,
    gpu_count           INTEGER NOT NULL DEFAULT 0,
    cpu_cores           INTEGER NOT NULL DEFAULT 0,
    memory_gb           INTEGER NOT NULL DEFAULT 0,
    system_disk_gb      INTEGER NOT NULL DEFAULT 0,
    data_disk_gb        INTEGER NOT NULL DEFAULT 0,
    -- price per hour in cents (two decimals, exact)
    price_cents         INTEGER NOT NULL DEFAULT 0,
    listed              INTEGER NOT NULL DEFAULT 1,
    remark              TEXT NOT NULL DEFAULT '',
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);

INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed) VALUES
 ('GET',    '/api/v1/images',          'catalog', 'List images (customers: listed only)', '查看镜像列表（客户仅见已上架）', 0),
 ('POST',   '/api/v1/images',          'catalog', 'Create an image',                      '创建镜像', 0),
 ('GET',    '/api/v1/images/{id}',     'catalog', 'Show an image',                        '查看镜像', 0),
 ('PATCH',  '/api/v1/images/{id}',     'catalog', 'Change an image',                      '修改镜像', 0),
 ('DELETE', '/api/v1/images/{id}',     'catalog', 'Delete an image',                      '删除镜像', 0),
 ('GET',    '/api/v1/specs',           'catalog', 'List product specs (customers: listed only)', '查看产品规格列表（客户仅见已上架）', 0),
 ('POST',   '/api/v1/specs',           'catalog', 'Create a product spec',                '创建产品规格', 0),
 ('GET',    '/api/v1/specs/{id}',      'catalog', 'Show a product spec',                  '查看产品规格', 0),
 ('PATCH',  '/api/v1/specs/{id}',      'catalog', 'Change a product spec',                '修改产品规格', 0),
 ('DELETE', '/api/v1/specs/{id}',      'catalog', 'Delete a product spec',                '删除产品规格', 0),
 ('GET',    '/images',                 'pages',   'Image library page',                   '镜像库页面', 0),
 ('POST',   '/images',                 'pages',   'Create an image (form)',               '创建镜像（表单）', 0),
 ('GET',    '/images/{id}',            'pages',   'Image edit page',                      '镜像编辑页面', 0),
 ('POST',   '/images/{id}',            'pages',   'Change an image (form)',               '修改镜像（表单）', 0),
 ('POST',   '/images/{id}/delete',     'pages',   'Delete an image (form)',               '删除镜像（表单）', 0),
 ('GET',    '/specs',                  'pages',   'Product specs page',                   '产品规格页面', 0),
 ('POST',   '/specs',                  'pages',   'Create a product spec (form)',         '创建产品规格（表单）', 0),
 ('GET',    '/specs/{id}',             'pages',   'Product spec edit page',               '产品规格编辑页面', 0),
 ('POST',   '/specs/{id}',             'pages',   'Change a product spec (form)',         '修改产品规格（表单）', 0),
 ('POST',   '/specs/{id}/delete',      'pages',   'Delete a product spec (form)',         '删除产品规格（表单）', 0);

INSERT INTO role_permissions (role, permission_id)
SELECT r.role, p.id FROM permissions p, (SELECT 'customer_owner' AS role UNION ALL SELECT 'customer_member') r
WHERE (p.method, p.path_pattern) IN (
 VALUES ('GET','/api/v1/images'), ('GET','/api/v1/images/{id}'), ('GET','/api/v1/specs'), ('GET','/api/v1/specs/{id}'),
        ('GET','/images'), ('GET','/specs'));
