-- Notification channels of every kind the issue names (通知渠道): e-mail
-- over SMTP, the generic webhook, DingTalk, WeCom, Feishu, Slack and
-- Telegram robots. The table is rebuilt (SQLite cannot change a CHECK);
-- `db::migrate` runs with foreign-key enforcement off, so the rules' routes
-- and the delivery log keep pointing at the same ids.
--
-- * settings: the kind's plain fields as a JSON object (SMTP host, port,
--   security, user, from, recipients, language; Telegram chat id);
-- * secret_sealed: the kind's secret sealed with age (webhook HMAC key,
--   SMTP password, DingTalk/Feishu signing secret, Telegram bot token);
-- * url_sealed: the full URL, sealed, for kinds whose URL carries the
--   robot's token (DingTalk, WeCom, Feishu, Slack); `url` then holds the
--   masked form that pages and the API show;
-- * proxy: an http:// proxy the HTTP kinds are sent through ('' = none);
-- * tenant_id: a customer's own channel (NULL: the lab's). It receives
--   the instance alerts of its tenant, of any rule, and nothing else; names
--   are unique within the lab's channels and within each tenant's.
CREATE TABLE notification_channels_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('webhook', 'email', 'dingtalk', 'wecom', 'feishu', 'slack', 'telegram')),
    url           TEXT NOT NULL,
    secret_sealed BLOB NOT NULL,
    enabled       INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_by    INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    settings      TEXT NOT NULL DEFAULT '{}',
    url_sealed    BLOB,
    proxy         TEXT NOT NULL DEFAULT '',
    tenant_id     INTEGER REFERENCES tenants(id) ON DELETE CASCADE
);
INSERT INTO notification_channels_new (id, name, kind, url, secret_sealed, enabled, created_by, created_at, updated_at)
    SELECT id, name, kind, url, secret_sealed, enabled, created_by, created_at, updated_at FROM notification_channels;
-- ids are never given again: the new table takes over the old counter
DELETE FROM sqlite_sequence WHERE name = 'notification_channels_new';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'notification_channels_new', seq FROM sqlite_sequence WHERE name = 'notification_channels';
DROP TABLE notification_channels;
ALTER TABLE notification_channels_new RENAME TO notification_channels;
CREATE UNIQUE INDEX notification_channels_name ON notification_channels (COALESCE(tenant_id, 0), name);
CREATE INDEX notification_channels_tenant ON notification_channels (tenant_id) WHERE tenant_id IS NOT NULL;

INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed, admin_only) VALUES
 ('POST', '/notification-channels/{id}', 'pages', 'Change a notification channel (form)', '修改通知渠道（表单）', 0, 0);

-- Customer owners manage their tenant's own channels (e-mail and webhook;
-- scoped in the queries): the channel records are no longer admin-only,
-- and owners hold them.
UPDATE permissions SET admin_only = 0,
    description = description || ' (scoped)', description_zh = description_zh || '（按范围限定）'
WHERE path_pattern LIKE '/api/v1/notification-channels%' OR path_pattern LIKE '/notification-channels%';
INSERT OR IGNORE INTO role_permissions (role, permission_id)
SELECT 'customer_owner', id FROM permissions
WHERE path_pattern LIKE '/api/v1/notification-channels%' OR path_pattern LIKE '/notification-channels%';
