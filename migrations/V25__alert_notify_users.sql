-- Users to notify (通知用户, seed 002 alert_rules): besides its channels, a
-- rule names users who get each of its alerts by e-mail (their account's
-- address, through the lab's e-mail channels) in their own language, as
-- long as the alert is about something they may see.
CREATE TABLE alert_rule_users (
    rule_id INTEGER NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (rule_id, user_id)
);
CREATE INDEX alert_rule_users_user ON alert_rule_users (user_id);

-- A user's language for what is sent to them ('' = the appliance's
-- default, zh-CN): 'zh-CN' or 'en'.
ALTER TABLE users ADD COLUMN language TEXT NOT NULL DEFAULT ''
    CHECK (language IN ('', 'zh-CN', 'en'));

-- What an alert says, language-neutral (JSON: what it is about by name,
-- the value against its condition or the event and its detail), so each
-- recipient reads the message in their own language; `message` stays the
-- English line ('' for alerts from before).
ALTER TABLE alert_records ADD COLUMN facts TEXT NOT NULL DEFAULT '';

-- A channel's proxy is kept sealed like its other secrets (its URL may
-- carry a password): `proxy` holds the form shown (password masked) and
-- `proxy_sealed` the full URL sealed with age. Proxies stored plain before
-- are sealed by the appliance when it starts (the key is not SQL's).
ALTER TABLE notification_channels ADD COLUMN proxy_sealed BLOB;

-- The engine looks for suppressed alerts whose node is back every few
-- seconds: only those few rows, not the whole history.
CREATE INDEX alert_records_suppressed ON alert_records (node_id) WHERE suppressed IS NOT NULL;
