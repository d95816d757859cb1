//! How a channel's secret parts are stored: a token URL and the proxy URL
//! (which may carry a password) sealed with age, beside the masked form
//! that pages, the API and the audit show.

use rusqlite::{Connection, params};

use super::send::{self, Kind};
use crate::error::AppError;
use crate::secrets::Sealer;

/// The URL as stored: masked and sealed when it carries a robot's token.
pub fn url(sealer: &Sealer, kind: Kind, url: &str) -> Result<(String, Option<Vec<u8>>), AppError> {
    if kind.url_is_secret() {
        Ok((send::masked(url), Some(sealer.seal(url.as_bytes())?)))
    } else {
        Ok((url.to_string(), None))
    }
}

/// A proxy URL with its password (if any) masked.
pub fn masked_proxy(proxy: &str) -> String {
    match url::Url::parse(proxy) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => proxy.to_string(),
    }
}

/// The proxy as stored: its masked form, and the full URL sealed (none
/// without a proxy).
pub fn proxy(sealer: &Sealer, proxy: &str) -> Result<(String, Option<Vec<u8>>), AppError> {
    if proxy.is_empty() {
        return Ok((String::new(), None));
    }
    Ok((masked_proxy(proxy), Some(sealer.seal(proxy.as_bytes())?)))
}

/// Seals the proxies stored plain (before they were sealed); returns how
/// many. Run once the key is at hand (at start).
pub fn seal_plain_proxies(c: &mut Connection, sealer: &Sealer) -> Result<usize, AppError> {
    let tx = c.transaction()?;
    let plain: Vec<(i64, String)> = tx
        .prepare("SELECT id, proxy FROM notification_channels WHERE proxy <> '' AND proxy_sealed IS NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, p) in &plain {
        let (shown, sealed) = proxy(sealer, p)?;
        tx.execute(
            "UPDATE notification_channels SET proxy = ?2, proxy_sealed = ?3 WHERE id = ?1",
            params![id, shown, sealed],
        )?;
    }
    tx.commit()?;
    Ok(plain.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_stored_plain_are_sealed_and_shown_masked() {
        let sealer = Sealer::ephemeral();
        let mut c = crate::db::memory().unwrap();
        c.execute(
            "INSERT INTO notification_channels (id, name, kind, url, secret_sealed, created_at,
                 updated_at, proxy) VALUES (1, 'p', 'slack', 'x', x'', 0, 0,
                 'http://user:hunter2@proxy.lab:3128')",
            [],
        )
        .unwrap();
        assert_eq!(seal_plain_proxies(&mut c, &sealer).unwrap(), 1);
        assert_eq!(seal_plain_proxies(&mut c, &sealer).unwrap(), 0);
        let (shown, sealed): (String, Vec<u8>) = c
            .query_row(
                "SELECT proxy, proxy_sealed FROM notification_channels",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(shown, "http://user:****@proxy.lab:3128/");
        assert!(!String::from_utf8_lossy(&sealed).contains("hunter2"));
        let back = sealer.unseal(&sealed).unwrap();
        assert_eq!(
            back.expose().as_slice(),
            b"http://user:hunter2@proxy.lab:3128"
        );
    }
}
