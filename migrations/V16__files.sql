-- Files (issue 16): SFTP and scp through the jumpbox, the web file
-- browser, the file operations log, and datasets (数据集) mounted into
-- instances.

-- 1. An SFTP connection is a session (protocol `sftp`). The table is
-- rebuilt for the protocol's CHECK (same columns in the same order:
-- `SELECT *` fails loudly should they ever differ).
CREATE TABLE remote_sessions_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          INTEGER NOT NULL REFERENCES users(id),
    username         TEXT NOT NULL,
    tenant_id        INTEGER REFERENCES tenants(id),
    -- the instance; 0 for a dataset's transfers (instance_name then says
    -- `dataset:<name>`)
    instance_id      INTEGER NOT NULL,
    instance_name    TEXT NOT NULL,
    node_id          INTEGER NOT NULL,
    node_name        TEXT NOT NULL,
    container_id     TEXT NOT NULL,
    protocol         TEXT NOT NULL CHECK (protocol IN ('web_terminal', 'ssh', 'sftp')),
    -- the command of `ssh user+inst@host 'cmd'`; empty for a shell
    command          TEXT NOT NULL DEFAULT '',
    source_ip        TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('active', 'idle', 'closed', 'terminated')),
    started_at       INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL,
    ended_at         INTEGER,
    end_reason       TEXT CHECK (end_reason IN ('user_close', 'client_lost', 'node_lost', 'idle_timeout',
                                                'admin_force', 'max_duration', 'access_revoked', 'error')),
    end_detail       TEXT NOT NULL DEFAULT '',
    bytes_in         INTEGER NOT NULL DEFAULT 0,
    bytes_out        INTEGER NOT NULL DEFAULT 0,
    -- file name under <data_dir>/recordings (asciicast v2); none for sftp
    recording        TEXT,
    exec_tag         TEXT NOT NULL DEFAULT '',
    swept_at         INTEGER
);
INSERT INTO remote_sessions_new SELECT * FROM remote_sessions;
DROP TABLE remote_sessions;
ALTER TABLE remote_sessions_new RENAME TO remote_sessions;
CREATE INDEX remote_sessions_user ON remote_sessions(user_id);
CREATE INDEX remote_sessions_tenant ON remote_sessions(tenant_id);
CREATE INDEX remote_sessions_started ON remote_sessions(started_at);
CREATE INDEX remote_sessions_live ON remote_sessions(status) WHERE status IN ('active', 'idle');
CREATE INDEX remote_sessions_unswept ON remote_sessions(node_id) WHERE swept_at IS NULL;

-- 2. Datasets: a named Docker volume on a node, owned by a tenant
-- (user_id NULL: managed by the tenant's owners) or by a user (tenant_id
-- is then the user's tenant, NULL for an admin). Names are unique within
-- a tenant (they are mount points, /datasets/<name>, and SSH logins,
-- user+dataset-<name>).
CREATE TABLE datasets (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    node_id      INTEGER NOT NULL REFERENCES nodes(id),
    tenant_id    INTEGER REFERENCES tenants(id),
    user_id      INTEGER REFERENCES users(id),
    description  TEXT NOT NULL DEFAULT '',
    -- the Docker volume on the node (unique, decided once)
    volume_name  TEXT NOT NULL UNIQUE,
    -- bytes in the volume when last measured (after each upload)
    size_bytes   INTEGER NOT NULL DEFAULT 0,
    size_at      INTEGER,
    -- when its transfer container was last used (it is removed when idle)
    last_used_at INTEGER NOT NULL DEFAULT 0,
    created_by   INTEGER NOT NULL REFERENCES users(id),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    CHECK (tenant_id IS NOT NULL OR user_id IS NOT NULL)
);
CREATE UNIQUE INDEX datasets_name ON datasets(COALESCE(tenant_id, 0), name);
CREATE INDEX datasets_node ON datasets(node_id);

-- The datasets mounted (read-only) into an instance. A dataset in use
-- cannot be deleted (no cascade from datasets).
CREATE TABLE instance_datasets (
    instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    dataset_id  INTEGER NOT NULL REFERENCES datasets(id),
    PRIMARY KEY (instance_id, dataset_id)
);
CREATE INDEX instance_datasets_dataset ON instance_datasets(dataset_id);

-- 3. Every file operation through SFTP, scp or the web browser: who, on
-- what, the path, the bytes that passed and their SHA-256. Names are copied
-- in: the log outlives what it points at.
CREATE TABLE file_operations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    username    TEXT NOT NULL,
    tenant_id   INTEGER REFERENCES tenants(id),
    via         TEXT NOT NULL CHECK (via IN ('sftp', 'web')),
    -- the SFTP session (remote_sessions.id); NULL on the web
    session_id  INTEGER,
    target_kind TEXT NOT NULL CHECK (target_kind IN ('instance', 'dataset')),
    target_id   INTEGER NOT NULL,
    target_name TEXT NOT NULL,
    node_id     INTEGER NOT NULL,
    operation   TEXT NOT NULL CHECK (operation IN ('upload', 'download', 'delete', 'rename', 'mkdir', 'symlink')),
    path        TEXT NOT NULL,
    -- rename: the new path; symlink: what the link points to
    new_path    TEXT,
    -- upload and download: the bytes that passed, and their SHA-256 (hex)
    size        INTEGER,
    sha256      TEXT,
    outcome     TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    error       TEXT NOT NULL DEFAULT '',
    source_ip   TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER NOT NULL
);
CREATE INDEX file_operations_user ON file_operations(user_id);
CREATE INDEX file_operations_tenant ON file_operations(tenant_id);
CREATE INDEX file_operations_session ON file_operations(session_id) WHERE session_id IS NOT NULL;
CREATE INDEX file_operations_target ON file_operations(target_kind, target_id);

-- 4. Permission records. File access has records of its own, one per kind
-- of operation, shared by every way in: the web browser's API route is the
-- record, and SFTP/scp ask the same one for the same operation (listing
-- and stat, download, upload, new folder, delete, rename). A role may
-- thus move data without holding shells, or the other way round.
INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed) VALUES
 ('GET',  '/api/v1/instances/{id}/files',          'files', 'List folders in an instance (web, SFTP, scp)',             '浏览实例中的目录（Web、SFTP、scp）', 0),
 ('GET',  '/api/v1/instances/{id}/files/download', 'files', 'Download files from an instance (web, SFTP, scp)',         '从实例下载文件（Web、SFTP、scp）', 0),
 ('PUT',  '/api/v1/instances/{id}/files/upload',   'files', 'Upload files into an instance (web, SFTP, scp)',           '上传文件到实例（Web、SFTP、scp）', 0),
 ('POST', '/api/v1/instances/{id}/files/mkdir',    'files', 'Create folders in an instance (web, SFTP)',                '在实例中新建文件夹（Web、SFTP）', 0),
 ('POST', '/api/v1/instances/{id}/files/delete',   'files', 'Delete files and folders in an instance (web, SFTP)',      '删除实例中的文件和文件夹（Web、SFTP）', 0),
 ('POST', '/api/v1/instances/{id}/files/rename',   'files', 'Rename or move files in an instance (web, SFTP)',          '重命名或移动实例中的文件（Web、SFTP）', 0),
 ('GET',  '/api/v1/datasets/{id}/files',           'files', 'List folders in a dataset (web, SFTP)',                    '浏览数据集中的目录（Web、SFTP）', 0),
 ('GET',  '/api/v1/datasets/{id}/files/download',  'files', 'Download files from a dataset (web, SFTP)',                '从数据集下载文件（Web、SFTP）', 0),
 ('PUT',  '/api/v1/datasets/{id}/files/upload',    'files', 'Upload files into a dataset (web, SFTP)',                  '上传文件到数据集（Web、SFTP）', 0),
 ('POST', '/api/v1/datasets/{id}/files/mkdir',     'files', 'Create folders in a dataset (web, SFTP)',                  '在数据集中新建文件夹（Web、SFTP）', 0),
 ('POST', '/api/v1/datasets/{id}/files/delete',    'files', 'Delete files and folders in a dataset (web, SFTP)',        '删除数据集中的文件和文件夹（Web、SFTP）', 0),
 ('POST', '/api/v1/datasets/{id}/files/rename',    'files', 'Rename or move files in a dataset (web, SFTP)',            '重命名或移动数据集中的文件（Web、SFTP）', 0),
 ('GET',  '/api/v1/file-operations',               'files', 'File operations log (own / tenant / all)',                 '文件操作记录（本人/本租户/全部）', 0),
 ('GET',  '/instances/{id}/files',                 'pages', 'File browser of an instance',                             '实例文件浏览器', 0),
 ('GET',  '/datasets/{id}/files',                  'pages', 'File browser of a dataset',                               '数据集文件浏览器', 0),
 ('GET',  '/api/v1/datasets',                      'datasets', 'List datasets (own and tenant''s / tenant / all)',       '查看数据集（本人及本租户/本租户/全部）', 0),
 ('POST', '/api/v1/datasets',                      'datasets', 'Create a dataset',                                      '创建数据集', 0),
 ('GET',  '/api/v1/datasets/{id}',                 'datasets', 'Show a dataset',                                        '查看数据集', 0),
 ('PATCH','/api/v1/datasets/{id}',                 'datasets', 'Change a dataset''s description',                       '修改数据集描述', 0),
 ('DELETE','/api/v1/datasets/{id}',                'datasets', 'Delete a dataset and its volume',                       '删除数据集及其数据卷', 0),
 ('GET',  '/datasets',                             'pages', 'Datasets page',                                           '数据集页面', 0),
 ('POST', '/datasets',                             'pages', 'Create a dataset (form)',                                 '创建数据集（表单）', 0),
 ('GET',  '/datasets/choices',                     'pages', 'Datasets offered by the create wizard',                   '创建向导中可挂载的数据集', 0),
 ('GET',  '/datasets/{id}',                        'pages', 'Dataset page',                                            '数据集详情页面', 0),
 ('POST', '/datasets/{id}/delete',                 'pages', 'Delete a dataset (form)',                                 '删除数据集（表单）', 0);

-- Every role may move files to what it reaches and keep datasets: what
-- each user reaches is scoped in the queries (member: own instances, own
-- datasets and the tenant's to read; owner: the tenant's; admin: all).
INSERT OR IGNORE INTO role_permissions (role, permission_id)
SELECT r.role, p.id FROM permissions p, (SELECT 'customer_owner' AS role UNION ALL SELECT 'customer_member') r
WHERE p.grp IN ('files', 'datasets')
   OR (p.grp = 'pages' AND (p.path_pattern LIKE '/datasets%' OR p.path_pattern IN ('/instances/{id}/files')));
