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
-- * proxy: an http:// proxy the HTTP kinds are sent through ('' = none).
CREATE TABLE notification_channels_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL CHECK (kind IN ('webhook', 'email', 'dingtalk', 'wecom', 'feishu', 'slack', 'telegram')),
    url           TEXT NOT NULL,
    secret_sealed BLOB NOT NULL,
    enabled       INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_by    INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    settings      TEXT NOT NULL DEFAULT '{}',
    url_sealed    BLOB,
    proxy         TEXT NOT NULL DEFAULT ''
);
INSERT INTO notification_channels_new (id, name, kind, url, secret_sealed, enabled, created_by, created_at, updated_at)
    SELECT id, name, kind, url, secret_sealed, enabled, created_by, created_at, updated_at FROM notification_channels;
-- ids are never given again: the new table takes over the old counter
DELETE FROM sqlite_sequence WHERE name = 'notification_channels_new';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'notification_channels_new', seq FROM sqlite_sequence WHERE name = 'notification_channels';
DROP TABLE notification_channels;
ALTER TABLE notification_channels_new RENAME TO notification_channels;

INSERT INTO permissions (method, path_pattern, grp, description, description_zh, fixed, admin_only) VALUES
 ('POST', '/notification-channels/{id}', 'pages', 'Change a notification channel (form)', '修改通知渠道（表单）', 0, 1);
