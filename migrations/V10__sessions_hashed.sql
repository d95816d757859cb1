-- Web sessions are stored under the SHA-256 of their id, never the id the
-- cookie carries: a copy of the database (a backup, a stolen file) signs
-- nobody in. Sessions stored in clear before cannot be converted in SQL;
-- they end here (users sign in again once after the upgrade).
DELETE FROM sessions;
