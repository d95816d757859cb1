-- Metrics (监控): GPU, host and instance telemetry in three tiers.
-- Runs after V12's AUTOINCREMENT rebuild of tenants, users, api_tokens,
-- nodes and instances (it references and alters the rebuilt tables).
-- A series is one metric of one target (a node's host, one GPU of a node, an
-- instance's container). No foreign keys to nodes or instances: history
-- outlives what it describes, and retention removes it. Series ids are
-- never given again (AUTOINCREMENT): retention removes empty series, and
-- an id must not come back naming another one.
CREATE TABLE metrics_series (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL CHECK (kind IN ('node', 'gpu', 'instance')),
    node_id     INTEGER NOT NULL,
    -- the GPU index for kind 'gpu', -1 otherwise
    gpu         INTEGER NOT NULL DEFAULT -1,
    -- the instance for kind 'instance', 0 otherwise
    instance_id INTEGER NOT NULL DEFAULT 0,
    metric      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (kind, node_id, gpu, instance_id, metric)
);

-- Raw samples (metrics_raw): one row per series and hour-aligned block, its
-- timestamps and values compressed together (pco); the open block lives in
-- memory and is written here every flush and when its hour ends.
CREATE TABLE metrics_raw (
    series_id   INTEGER NOT NULL,
    block_start INTEGER NOT NULL,
    samples     INTEGER NOT NULL,
    last_ts     INTEGER NOT NULL,
    data        BLOB NOT NULL,
    PRIMARY KEY (series_id, block_start)
) WITHOUT ROWID;

-- Rollups: min / max / avg / count of the samples of each hour and day (UTC).
-- An hour without samples has no row: a gap, never a zero.
CREATE TABLE metrics_hourly (
    series_id INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    min       REAL NOT NULL,
    max       REAL NOT NULL,
    avg       REAL NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;

CREATE TABLE metrics_daily (
    series_id INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    min       REAL NOT NULL,
    max       REAL NOT NULL,
    avg       REAL NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;

-- The GPUs last seen on each node (from NVML, the agent or dcgm-exporter).
CREATE TABLE metrics_gpus (
    node_id    INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    gpu        INTEGER NOT NULL,
    uuid       TEXT NOT NULL,
    name       TEXT NOT NULL,
    seen_at    INTEGER NOT NULL,
    PRIMARY KEY (node_id, gpu)
);

-- Where a node's host and GPU figures come from besides this host's own
-- collectors: a `gpudock agent` (its scrape token sealed with the appliance's
-- age identity, its certificate's SHA-256 pinned at enrolment) or exporters
-- the lab already runs.
CREATE TABLE metrics_sources (
    node_id             INTEGER PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
    agent_url           TEXT NOT NULL DEFAULT '',
    agent_token_sealed  BLOB,
    agent_fingerprint   TEXT NOT NULL DEFAULT '',
    agent_enrolled_at   INTEGER,
    dcgm_url            TEXT NOT NULL DEFAULT '',
    node_exporter_url   TEXT NOT NULL DEFAULT '',
    updated_at          INTEGER NOT NULL
);

-- API tokens get a scope: `api` (every route the owner may use but the
-- Prometheus scrape) or `metrics` (only GET /metrics; refused everywhere
-- else). Added after V12's rebuild of api_tokens (which copies `SELECT *`).
ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'api' CHECK (scope IN ('api', 'metrics'));

-- Node totals, sources, enrolment and the Prometheus scrape (every
-- tenant's series) are admin-only records (V11): held by admins alone and
-- never grantable to another role.
INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed, admin_only) VALUES
 ('GET',  '/api/v1/metrics/series',               'metrics', 'Metric history of a node, GPU or instance (scoped; CSV export)', '查询节点、GPU 或实例的监控历史（按范围限定；可导出 CSV）', 0, 0),
 ('GET',  '/api/v1/metrics/live',                 'metrics', 'Live metric updates (server-sent events)', '监控实时推送（SSE）', 0, 0),
 ('GET',  '/api/v1/metrics/overview',             'metrics', 'Monitoring overview (scoped)',            '全局监控概览（按范围限定）', 0, 0),
 ('GET',  '/api/v1/nodes/{id}/metrics',           'metrics', 'A node''s metric sources, GPUs and latest figures', '节点监控来源、GPU 与最新数值', 0, 1),
 ('PUT',  '/api/v1/nodes/{id}/metrics/sources',   'metrics', 'Set a node''s agent and exporter URLs',   '设置节点的 Agent 与 Exporter 地址', 0, 1),
 ('POST', '/api/v1/nodes/{id}/metrics/enroll',    'metrics', 'Enroll a gpudock agent (one-time command)', '注册 gpudock Agent（一次性命令）', 0, 1),
 ('GET',  '/metrics',                             'metrics', 'Prometheus scrape (token with the metrics scope)', 'Prometheus 抓取（metrics 范围的令牌）', 0, 1),
 ('GET',  '/metrics/overview',                    'pages',   'Monitoring overview (dashboard part)',    '全局概览（仪表盘部分）', 0, 0),
 ('GET',  '/nodes/{id}/metrics',                  'pages',   'Node monitoring page',                    '节点监控页面', 0, 1),
 ('POST', '/nodes/{id}/metrics/sources',          'pages',   'Set a node''s metric sources (form)',     '设置节点监控来源（表单）', 0, 1),
 ('POST', '/nodes/{id}/metrics/enroll',           'pages',   'Enroll a gpudock agent (form)',           '注册 gpudock Agent（表单）', 0, 1),
 ('GET',  '/instances/{id}/metrics',              'pages',   'Instance monitoring (charts)',            '实例监控（图表）', 0, 0);

-- Everyone sees the metrics of what they reach (scoped in the queries).
INSERT OR IGNORE INTO role_permissions (role, permission_id)
SELECT r.role, p.id FROM permissions p, (SELECT 'customer_owner' AS role UNION ALL SELECT 'customer_member') r
WHERE (p.method, p.path_pattern) IN (VALUES ('GET', '/api/v1/metrics/series'), ('GET', '/api/v1/metrics/live'),
    ('GET', '/api/v1/metrics/overview'), ('GET', '/metrics/overview'), ('GET', '/instances/{id}/metrics'));
