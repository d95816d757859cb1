-- Core schema: tenants, users, sessions, API tokens, permissions, audit, meta.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE tenants (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    company_code TEXT NOT NULL UNIQUE,
    enabled      INTEGER NOT NULL DEFAULT 1,
    remark       TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE users (
    id                   INTEGER PRIMARY KEY,
    username             TEXT NOT NULL UNIQUE,
    display_name         TEXT NOT NULL DEFAULT '',
    role                 TEXT NOT NULL CHECK (role IN ('admin', 'customer_owner', 'customer_member')),
    tenant_id            INTEGER REFERENCES tenants(id),
    password_hash        TEXT NOT NULL,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    enabled              INTEGER NOT NULL DEFAULT 1,
    failed_logins        INTEGER NOT NULL DEFAULT 0,
    locked_until         INTEGER,
    session_epoch        INTEGER NOT NULL DEFAULT 0,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    CHECK ((role = 'admin') = (tenant_id IS NULL))
);
CREATE INDEX users_tenant ON users(tenant_id);

CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    data        TEXT NOT NULL,
    expiry_date INTEGER NOT NULL
);
CREATE INDEX sessions_expiry ON sessions(expiry_date);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id),
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

-- One record per route (method + axum path pattern). `fixed` records are granted
-- to every signed-in role and cannot be revoked (sign-out, own password, ...).
CREATE TABLE permissions (
    id             INTEGER PRIMARY KEY,
    method         TEXT NOT NULL,
    path_pattern   TEXT NOT NULL,
    grp            TEXT NOT NULL,
    description    TEXT NOT NULL,
    description_zh TEXT NOT NULL,
    fixed          INTEGER NOT NULL DEFAULT 0,
    UNIQUE (method, path_pattern)
);

CREATE TABLE role_permissions (
    role          TEXT NOT NULL CHECK (role IN ('customer_owner', 'customer_member')),
    permission_id INTEGER NOT NULL REFERENCES permissions(id),
    PRIMARY KEY (role, permission_id)
);

CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY,
    ts            INTEGER NOT NULL,
    actor_id      INTEGER,
    actor_name    TEXT NOT NULL,
    tenant_id     INTEGER,
    source_ip     TEXT NOT NULL,
    user_agent    TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT,
    outcome       TEXT NOT NULL,
    detail        TEXT NOT NULL,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX audit_ts ON audit_log(ts);
CREATE INDEX audit_tenant ON audit_log(tenant_id, ts);
CREATE INDEX audit_actor ON audit_log(actor_id, ts);

-- Append-only: the application never updates or deletes audit records. The hash
-- chain still detects edits made by someone who drops these triggers.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
