-- Ids are never reused. SQLite gives a deleted highest rowid to the next
-- insert unless the table is AUTOINCREMENT, and these ids name Docker
-- objects, appear in URLs and in the audit trail. Each table is rebuilt
-- with AUTOINCREMENT (same columns, in the same order: `SELECT *` fails
-- loudly should they ever differ), its indexes and triggers made again
-- (ssh_keys is AUTOINCREMENT since V9). `db::migrate` runs migrations with
-- foreign-key enforcement off and checks every key afterwards, as
-- SQLite's table-rebuild procedure asks.
--
-- Besides:
-- * instances carry the names of their container and data volume (a
--   random part makes them unique even when an id comes back after a
--   restore) and the generation of the process that reserved them;
-- * remote sessions carry the tag of their processes and when those were
--   swept from the container; end reasons say what really happened.

-- V11's triggers name tables rebuilt here (a rename checks every trigger):
-- they are made again at the end.
DROP TRIGGER users_tenant_move_keeps_instances;
DROP TRIGGER instances_tenant_is_users;

-- tenants
CREATE TABLE tenants_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    company_code TEXT NOT NULL UNIQUE,
    enabled      INTEGER NOT NULL DEFAULT 1,
    remark       TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
INSERT INTO tenants_new SELECT * FROM tenants;
DROP TABLE tenants;
ALTER TABLE tenants_new RENAME TO tenants;

-- users
CREATE TABLE users_new (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO users_new SELECT * FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
CREATE INDEX users_tenant ON users(tenant_id);

-- api_tokens
CREATE TABLE api_tokens_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users(id),
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
INSERT INTO api_tokens_new SELECT * FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_new RENAME TO api_tokens;
CREATE INDEX api_tokens_user ON api_tokens(user_id);

-- images
CREATE TABLE images_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    address     TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    source      TEXT NOT NULL DEFAULT '',
    listed      INTEGER NOT NULL DEFAULT 1,
    remark      TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
INSERT INTO images_new SELECT * FROM images;
DROP TABLE images;
ALTER TABLE images_new RENAME TO images;

-- specs
CREATE TABLE specs_new (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO specs_new SELECT * FROM specs;
DROP TABLE specs;
ALTER TABLE specs_new RENAME TO specs;

-- nodes
CREATE TABLE nodes_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT NOT NULL UNIQUE,
    region           TEXT NOT NULL DEFAULT '',
    cpu_cores        INTEGER NOT NULL DEFAULT 0,
    memory_gb        INTEGER NOT NULL DEFAULT 0,
    system_disk_gb   INTEGER NOT NULL DEFAULT 0,
    data_disk_gb     INTEGER NOT NULL DEFAULT 0,
    public_ip        TEXT NOT NULL,
    private_ip       TEXT NOT NULL,
    ssh_port         INTEGER NOT NULL DEFAULT 22,
    username         TEXT NOT NULL DEFAULT '',
    password_sealed  BLOB,
    gpu_name         TEXT NOT NULL DEFAULT '',
    gpu_count        INTEGER NOT NULL DEFAULT 0,
    docker_endpoint  TEXT NOT NULL DEFAULT '',
    tls_enabled      INTEGER NOT NULL DEFAULT 1,
    tls_ca_cert      TEXT NOT NULL DEFAULT '',
    tls_client_cert  TEXT NOT NULL DEFAULT '',
    tls_client_key_sealed BLOB,
    listed           INTEGER NOT NULL DEFAULT 1,
    remark           TEXT NOT NULL DEFAULT '',
    status           TEXT NOT NULL DEFAULT 'unknown' CHECK (status IN ('unknown', 'online', 'unreachable')),
    last_seen_at     INTEGER,
    last_error       TEXT NOT NULL DEFAULT '',
    last_report      TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
INSERT INTO nodes_new SELECT * FROM nodes;
DROP TABLE nodes;
ALTER TABLE nodes_new RENAME TO nodes;

-- instances
CREATE TABLE instances_new (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT NOT NULL,
    image_id       INTEGER NOT NULL REFERENCES images(id),
    spec_id        INTEGER NOT NULL REFERENCES specs(id),
    node_id        INTEGER NOT NULL REFERENCES nodes(id),
    user_id        INTEGER NOT NULL REFERENCES users(id),
    tenant_id      INTEGER REFERENCES tenants(id),
    container_id   TEXT,
    status         TEXT NOT NULL DEFAULT 'creating',
    gpu_indices    TEXT NOT NULL DEFAULT '[]',
    gpu_count      INTEGER NOT NULL,
    cpu_cores      INTEGER NOT NULL,
    memory_gb      INTEGER NOT NULL,
    system_disk_gb INTEGER NOT NULL,
    data_disk_gb   INTEGER NOT NULL,
    warnings       TEXT NOT NULL DEFAULT '[]',
    remark         TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
INSERT INTO instances_new SELECT * FROM instances;
DROP TABLE instances;
ALTER TABLE instances_new RENAME TO instances;
CREATE INDEX instances_node ON instances(node_id);
CREATE INDEX instances_user ON instances(user_id);
CREATE INDEX instances_tenant ON instances(tenant_id);
-- The names of the instance's container and data volume on its node,
-- decided once when it is reserved (rows from before: the names used then).
ALTER TABLE instances ADD COLUMN container_name TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN volume_name TEXT NOT NULL DEFAULT '';
UPDATE instances SET
    container_name = 'gpudock-' || (SELECT value FROM meta WHERE key = 'install_id') || '-' || id,
    volume_name = 'gpudock-' || (SELECT value FROM meta WHERE key = 'install_id') || '-' || id || '-data';
-- The generation (meta `generation`, one more at every start) of the
-- process that reserved the row: a `creating` row of an older generation
-- was abandoned by a process that is gone.
ALTER TABLE instances ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', 0);

-- remote_sessions (also: the true end reasons; as in V11 otherwise)
CREATE TABLE remote_sessions_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          INTEGER NOT NULL REFERENCES users(id),
    username         TEXT NOT NULL,
    tenant_id        INTEGER REFERENCES tenants(id),
    instance_id      INTEGER NOT NULL,
    instance_name    TEXT NOT NULL,
    node_id          INTEGER NOT NULL,
    node_name        TEXT NOT NULL,
    container_id     TEXT NOT NULL,
    protocol         TEXT NOT NULL CHECK (protocol IN ('web_terminal', 'ssh')),
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
    -- file name under <data_dir>/recordings (asciicast v2)
    recording        TEXT
);
INSERT INTO remote_sessions_new SELECT * FROM remote_sessions;
DROP TABLE remote_sessions;
ALTER TABLE remote_sessions_new RENAME TO remote_sessions;
CREATE INDEX remote_sessions_user ON remote_sessions(user_id);
CREATE INDEX remote_sessions_tenant ON remote_sessions(tenant_id);
CREATE INDEX remote_sessions_started ON remote_sessions(started_at);
CREATE INDEX remote_sessions_live ON remote_sessions(status) WHERE status IN ('active', 'idle');
-- The value of GPUDOCK_SESSION that the session's processes carry (rows
-- from before: the tag used then), and when they were ended in the
-- container; a closed session not swept yet is swept at start-up and when
-- its node answers again.
ALTER TABLE remote_sessions ADD COLUMN exec_tag TEXT NOT NULL DEFAULT '';
ALTER TABLE remote_sessions ADD COLUMN swept_at INTEGER;
UPDATE remote_sessions SET
    exec_tag = (SELECT value FROM meta WHERE key = 'install_id') || '-s' || id,
    swept_at = ended_at;
CREATE INDEX remote_sessions_unswept ON remote_sessions(node_id) WHERE swept_at IS NULL;

-- V11's triggers, as they were.
CREATE TRIGGER users_tenant_move_keeps_instances
BEFORE UPDATE OF tenant_id ON users
WHEN NEW.tenant_id IS NOT OLD.tenant_id
 AND EXISTS (SELECT 1 FROM instances WHERE user_id = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'user_has_instances');
END;
CREATE TRIGGER instances_tenant_is_users
BEFORE INSERT ON instances
WHEN NEW.tenant_id IS NOT (SELECT tenant_id FROM users WHERE id = NEW.user_id)
BEGIN
    SELECT RAISE(ABORT, 'instance_tenant_mismatch');
END;
