-- SSH keys are unique per user, not across users: the jumpbox finds a key
-- among the keys of the user named in the login, like OpenSSH's
-- authorized_keys. A global uniqueness told anyone adding a key whether
-- another account had it (issue 10). SQLite cannot drop a column's UNIQUE,
-- so the table is rebuilt (ids kept, and never reused from now on).
CREATE TABLE ssh_keys_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    algorithm    TEXT NOT NULL,
    public_key   TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    UNIQUE (user_id, fingerprint)
);
INSERT INTO ssh_keys_new (id, user_id, name, algorithm, public_key, fingerprint, created_at, last_used_at)
SELECT id, user_id, name, algorithm, public_key, fingerprint, created_at, last_used_at FROM ssh_keys;
DROP TABLE ssh_keys;
ALTER TABLE ssh_keys_new RENAME TO ssh_keys;
CREATE INDEX ssh_keys_user ON ssh_keys(user_id);
