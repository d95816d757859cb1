-- Alerts (告警中心): metric rules evaluated against the latest samples, and
-- the alerts they raise. Rule and alert ids name things (URLs, the audit),
-- so they are never given again (AUTOINCREMENT).

-- A rule (告警规则): its conditions (alert_conditions) joined by `combine`
-- must hold for `duration_s` before an alert fires; an alert still firing is
-- announced again every `silence_s` (0: never again).
CREATE TABLE alert_rules (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    -- which targets: every one of the conditions' kind, the nodes (and their
    -- GPUs and instances) in scope_ids, or the instances in scope_ids
    scope       TEXT NOT NULL DEFAULT 'all' CHECK (scope IN ('all', 'nodes', 'instances')),
    -- JSON array of node or instance ids (empty for 'all')
    scope_ids   TEXT NOT NULL DEFAULT '[]',
    combine     TEXT NOT NULL DEFAULT 'and' CHECK (combine IN ('and', 'or')),
    duration_s  INTEGER NOT NULL DEFAULT 0 CHECK (duration_s >= 0),
    level       TEXT NOT NULL CHECK (level IN ('P0', 'P1', 'P2', 'P3')),
    enabled     INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    silence_s   INTEGER NOT NULL DEFAULT 3600 CHECK (silence_s >= 0),
    -- JSON array of short texts
    tags        TEXT NOT NULL DEFAULT '[]',
    created_by  INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- One condition of a rule: `metric` of targets of `kind` compared with
-- `threshold`. All conditions of a rule share one kind (one target each).
CREATE TABLE alert_conditions (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id   INTEGER NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    position  INTEGER NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('node', 'gpu', 'instance')),
    metric    TEXT NOT NULL,
    op        TEXT NOT NULL CHECK (op IN ('>', '<', '>=', '<=', '==', '!=')),
    threshold REAL NOT NULL,
    UNIQUE (rule_id, position)
);

-- An alert (告警记录): one per (rule, target) while it is open (firing or
-- acknowledged); resolved ones are history. No foreign keys to nodes or
-- instances: history outlives what it describes. `target` is the metrics
-- target text (node:1, gpu:1:0, instance:5).
CREATE TABLE alert_records (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id          INTEGER NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    target           TEXT NOT NULL,
    node_id          INTEGER,
    instance_id      INTEGER,
    -- the instance's tenant when it fired (customers see their tenant's
    -- instance alerts only; node and GPU alerts have none)
    tenant_id        INTEGER,
    metric           TEXT NOT NULL DEFAULT '',
    value            REAL,
    level            TEXT NOT NULL CHECK (level IN ('P0', 'P1', 'P2', 'P3')),
    message          TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'firing'
                     CHECK (status IN ('firing', 'acknowledged', 'resolved')),
    triggered_at     INTEGER NOT NULL,
    -- when it was last announced (fired, or repeated after the silence)
    notified_at      INTEGER NOT NULL,
    resolved_at      INTEGER,
    -- why it resolved: 'cleared' (the condition no longer holds), 'no_data'
    -- (the target stopped reporting), 'rule_off' (rule disabled or changed),
    -- 'closed' (closed by hand)
    resolved_reason  TEXT CHECK (resolved_reason IN ('cleared', 'no_data', 'rule_off', 'closed')),
    acknowledged_by  INTEGER REFERENCES users(id) ON DELETE SET NULL,
    acknowledged_at  INTEGER,
    note             TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX alert_records_open ON alert_records (rule_id, target)
    WHERE status != 'resolved';
CREATE INDEX alert_records_time ON alert_records (triggered_at);
CREATE INDEX alert_records_tenant ON alert_records (tenant_id) WHERE tenant_id IS NOT NULL;

-- A notification channel (通知渠道). Only the generic webhook is sent so
-- far; the secret (HMAC key of the body's signature) is sealed with age.
CREATE TABLE notification_channels (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL CHECK (kind IN ('webhook')),
    url           TEXT NOT NULL,
    secret_sealed BLOB NOT NULL,
    enabled       INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_by    INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- The channels a rule's alerts go to.
CREATE TABLE alert_rule_channels (
    rule_id    INTEGER NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    channel_id INTEGER NOT NULL REFERENCES notification_channels(id) ON DELETE CASCADE,
    PRIMARY KEY (rule_id, channel_id)
) WITHOUT ROWID;
CREATE INDEX alert_rule_channels_channel ON alert_rule_channels (channel_id);

-- The delivery log: every try of every message to every channel.
CREATE TABLE alert_deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id  INTEGER NOT NULL REFERENCES notification_channels(id) ON DELETE CASCADE,
    alert_id    INTEGER REFERENCES alert_records(id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL CHECK (attempt >= 1),
    status      TEXT NOT NULL CHECK (status IN ('sent', 'failed')),
    http_status INTEGER,
    error       TEXT NOT NULL DEFAULT '',
    at          INTEGER NOT NULL
);
CREATE INDEX alert_deliveries_channel ON alert_deliveries (channel_id, id);
CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id);

-- Built-in rules: a hot GPU (enabled: always right to know), an almost full
-- data disk (enabled), a GPU with volatile ECC errors (disabled by default).
INSERT INTO alert_rules (name, description, level, enabled, duration_s, silence_s, created_at, updated_at) VALUES
    ('GPU temperature', 'A GPU at or above 90 °C for a minute', 'P1', 1, 60, 3600, CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER)),
    ('Data disk almost full', 'The data directory''s disk over 90 % used for five minutes', 'P2', 1, 300, 21600, CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER)),
    ('GPU ECC errors', 'Volatile ECC errors on a GPU', 'P2', 0, 0, 86400, CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER));
INSERT INTO alert_conditions (rule_id, position, kind, metric, op, threshold)
    SELECT id, 0, 'gpu', 'temp_c', '>=', 90 FROM alert_rules WHERE name = 'GPU temperature';
INSERT INTO alert_conditions (rule_id, position, kind, metric, op, threshold)
    SELECT id, 0, 'node', 'disk_data_used_pct', '>', 90 FROM alert_rules WHERE name = 'Data disk almost full';
INSERT INTO alert_conditions (rule_id, position, kind, metric, op, threshold)
    SELECT id, 0, 'gpu', 'ecc_volatile', '>', 0 FROM alert_rules WHERE name = 'GPU ECC errors';

-- Maintenance windows (维护模式): while one is on (starts_at <= now <
-- ends_at), the node's alerts (its host, GPUs and instances) do not fire
-- and are not announced again.
CREATE TABLE maintenance_windows (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id    INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    starts_at  INTEGER NOT NULL,
    ends_at    INTEGER NOT NULL CHECK (ends_at > starts_at),
    reason     TEXT NOT NULL DEFAULT '',
    created_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX maintenance_windows_node ON maintenance_windows (node_id, ends_at);

-- The API's permission records: rules, channels and windows are the
-- admins' (admin-only); everyone reads the alerts they reach (instance
-- alerts of their tenant or their own instances, scoped in the query).
INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed, admin_only) VALUES
 ('GET',    '/api/v1/alert-rules',                            'alerts', 'List alert rules',                    '查看告警规则', 0, 1),
 ('POST',   '/api/v1/alert-rules',                            'alerts', 'Create an alert rule',                '创建告警规则', 0, 1),
 ('GET',    '/api/v1/alert-rules/{id}',                       'alerts', 'Show an alert rule',                  '查看告警规则详情', 0, 1),
 ('PUT',    '/api/v1/alert-rules/{id}',                       'alerts', 'Change an alert rule',                '修改告警规则', 0, 1),
 ('DELETE', '/api/v1/alert-rules/{id}',                       'alerts', 'Delete an alert rule',                '删除告警规则', 0, 1),
 ('GET',    '/api/v1/alerts',                                 'alerts', 'List alerts (scoped)',                '查看告警列表（按范围限定）', 0, 0),
 ('GET',    '/api/v1/alerts/{id}',                            'alerts', 'Show an alert (scoped)',              '查看告警详情（按范围限定）', 0, 0),
 ('POST',   '/api/v1/alerts/{id}/ack',                        'alerts', 'Acknowledge an alert with a note',    '确认告警（附备注）', 0, 1),
 ('POST',   '/api/v1/alerts/{id}/close',                      'alerts', 'Close an alert with a note',          '关闭告警（附备注）', 0, 1),
 ('GET',    '/api/v1/notification-channels',                  'alerts', 'List notification channels',          '查看通知渠道', 0, 1),
 ('POST',   '/api/v1/notification-channels',                  'alerts', 'Create a notification channel',       '创建通知渠道', 0, 1),
 ('GET',    '/api/v1/notification-channels/{id}',             'alerts', 'Show a notification channel',         '查看通知渠道详情', 0, 1),
 ('PUT',    '/api/v1/notification-channels/{id}',             'alerts', 'Change a notification channel',       '修改通知渠道', 0, 1),
 ('DELETE', '/api/v1/notification-channels/{id}',             'alerts', 'Delete a notification channel',       '删除通知渠道', 0, 1),
 ('POST',   '/api/v1/notification-channels/{id}/test',        'alerts', 'Send a test message to a channel',    '发送测试消息', 0, 1),
 ('GET',    '/api/v1/notification-channels/{id}/deliveries',  'alerts', 'A channel''s delivery log',           '通知渠道的发送记录', 0, 1),
 ('GET',    '/api/v1/maintenance-windows',                    'alerts', 'List maintenance windows',            '查看维护窗口', 0, 1),
 ('POST',   '/api/v1/maintenance-windows',                    'alerts', 'Create a maintenance window',         '创建维护窗口', 0, 1),
 ('GET',    '/api/v1/maintenance-windows/{id}',               'alerts', 'Show a maintenance window',           '查看维护窗口详情', 0, 1),
 ('PUT',    '/api/v1/maintenance-windows/{id}',               'alerts', 'Change a maintenance window',         '修改维护窗口', 0, 1),
 ('DELETE', '/api/v1/maintenance-windows/{id}',               'alerts', 'Delete a maintenance window',         '删除维护窗口', 0, 1),
 ('GET',    '/alerts',                                        'pages',  'Alert list page (scoped)',            '告警列表页面（按范围限定）', 0, 0),
 ('GET',    '/alerts/summary',                                'pages',  'Firing alerts by level (dashboard part, scoped)', '按级别统计的告警（仪表盘部分）', 0, 0),
 ('POST',   '/alerts/{id}/ack',                               'pages',  'Acknowledge an alert (form)',         '确认告警（表单）', 0, 1),
 ('POST',   '/alerts/{id}/close',                             'pages',  'Close an alert (form)',               '关闭告警（表单）', 0, 1),
 ('GET',    '/alert-rules',                                   'pages',  'Alert rules page',                    '告警规则页面', 0, 1),
 ('POST',   '/alert-rules',                                   'pages',  'Create an alert rule (form)',         '创建告警规则（表单）', 0, 1),
 ('POST',   '/alert-rules/{id}/enabled',                      'pages',  'Switch an alert rule on or off (form)', '启用或停用告警规则（表单）', 0, 1),
 ('POST',   '/alert-rules/{id}/delete',                       'pages',  'Delete an alert rule (form)',         '删除告警规则（表单）', 0, 1),
 ('GET',    '/notification-channels',                         'pages',  'Notification channels page',          '通知渠道页面', 0, 1),
 ('POST',   '/notification-channels',                         'pages',  'Create a notification channel (form)', '创建通知渠道（表单）', 0, 1),
 ('GET',    '/notification-channels/{id}',                    'pages',  'A channel and its delivery log',      '通知渠道及发送记录', 0, 1),
 ('POST',   '/notification-channels/{id}/test',               'pages',  'Send a test message (form)',          '发送测试消息（表单）', 0, 1),
 ('POST',   '/notification-channels/{id}/delete',             'pages',  'Delete a notification channel (form)', '删除通知渠道（表单）', 0, 1),
 ('GET',    '/maintenance-windows',                           'pages',  'Maintenance windows page',            '维护窗口页面', 0, 1),
 ('POST',   '/maintenance-windows',                           'pages',  'Create a maintenance window (form)',  '创建维护窗口（表单）', 0, 1),
 ('POST',   '/maintenance-windows/{id}/delete',               'pages',  'Delete a maintenance window (form)',  '删除维护窗口（表单）', 0, 1);
INSERT OR IGNORE INTO role_permissions (role, permission_id)
SELECT r.role, p.id FROM permissions p, (SELECT 'customer_owner' AS role UNION ALL SELECT 'customer_member') r
WHERE (p.method, p.path_pattern) IN (VALUES ('GET', '/api/v1/alerts'), ('GET', '/api/v1/alerts/{id}'),
    ('GET', '/alerts'), ('GET', '/alerts/summary'));
