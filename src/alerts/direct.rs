//! A message to one user outside any alert rule (a lease reminder, issue
//! 14): by e-mail at their account's address, in their language, through
//! the lab's enabled e-mail channels (the first that delivers it), each try
//! in that channel's delivery log.

use std::time::Duration;

use super::model::{Level, RuleId};
use super::notify::{self, Event, Notice};
use crate::app::App;
use crate::error::AppError;
use crate::i18n::Lang;
use crate::ids::UserId;

/// What the user is told, in their language: the line and what it is about.
pub struct Message {
    pub level: Level,
    pub text: String,
    pub target: String,
    pub instance_id: Option<i64>,
}

/// E-mails `user` the message `say` writes in their language. False when
/// the user is disabled or has no address, the lab has no e-mail channel,
/// or none delivered it.
pub async fn mail_user(
    app: &App,
    user: UserId,
    say: impl FnOnce(Lang) -> Message,
) -> Result<bool, AppError> {
    let (to, mail) = app
        .db
        .read(move |c| {
            let to: Option<(String, String)> = rusqlite::OptionalExtension::optional(c.query_row(
                "SELECT email, language FROM users WHERE id = ?1 AND enabled = 1 AND email <> ''",
                [user.0],
                |r| Ok((r.get(0)?, r.get(1)?)),
            ))?;
            let mail = match to {
                // No rule: the lab's e-mail channels in their order.
                Some(_) => super::recipients::mail_channels(c, RuleId(0))?,
                None => Vec::new(),
            };
            Ok::<_, AppError>((to, mail))
        })
        .await?;
    let Some((email, lang)) = to else {
        return Ok(false);
    };
    if mail.is_empty() {
        return Ok(false);
    }
    let lang = Lang::parse(&lang).unwrap_or(Lang::ZhCn);
    let sealer = app.sealer.clone();
    let channels = tokio::task::spawn_blocking(move || {
        mail.into_iter()
            .map(|row| row.unseal(&sealer))
            .collect::<Result<Vec<_>, crate::secrets::SecretError>>()
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))??;
    let m = say(lang);
    let notice = Notice {
        event: Event::Fired,
        alert_id: 0,
        rule_id: RuleId(0),
        rule: String::new(),
        level: m.level,
        message: m.text,
        target: m.target,
        node_id: None,
        instance_id: m.instance_id,
        metric: String::new(),
        value: None,
        triggered_at: crate::db::now(),
        resolved_at: None,
        reason: None,
        group: None,
        tenant_id: None,
        facts: None,
    };
    let sender = notify::Sender {
        db: app.db.clone(),
        sealer: app.sealer.clone(),
        backoff: Duration::from_secs(1),
    };
    for ch in &channels {
        if notify::deliver(&sender, &ch.addressed(&email, lang), None, &notice).await {
            return Ok(true);
        }
    }
    Ok(false)
}
