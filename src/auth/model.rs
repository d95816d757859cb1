//! Accounts: roles, ids, users and tenants, input validation and the password
//! policy. Pure: no I/O here (but for the password estimate, which a
//! server asks of a child process: see `strength`).

use serde::{Deserialize, Serialize};

use crate::error::FieldError;
pub use crate::validate::{optional_text, required_text};

pub use crate::hashing::random_password;
pub use crate::ids::{Scope, TenantId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    CustomerOwner,
    CustomerMember,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::CustomerOwner, Role::CustomerMember];
    pub const CUSTOMER: [Role; 2] = [Role::CustomerOwner, Role::CustomerMember];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::CustomerOwner => "customer_owner",
            Role::CustomerMember => "customer_member",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The i18n key of the role's display name.
    pub fn label_key(self) -> &'static str {
        match self {
            Role::Admin => "role.admin",
            Role::CustomerOwner => "role.customer_owner",
            Role::CustomerMember => "role.customer_member",
        }
    }
}

impl Scope {
    pub fn of(user: &User) -> Self {
        match (user.role, user.tenant_id) {
            (Role::Admin, _) => Scope::All,
            (Role::CustomerOwner, Some(t)) => Scope::Tenant(t),
            // An owner without a tenant cannot exist (schema CHECK); fall back to self.
            (Role::CustomerOwner, None) | (Role::CustomerMember, _) => {
                Scope::User(user.id, user.tenant_id)
            }
        }
    }
}

crate::text_enum!(TokenScope {
    Api => "api",
    Metrics => "metrics",
});

/// What an API token may be used for: `api`, every route its owner may use
/// except the Prometheus scrape; `metrics`, the Prometheus scrape alone
/// (`GET /metrics`), so a token kept in a Prometheus server's configuration
/// reaches nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScope {
    Api,
    Metrics,
}

/// The one route of the `metrics` scope.
pub const SCRAPE_ROUTE: (&str, &str) = ("GET", "/metrics");

impl TokenScope {
    /// Whether a token of this scope is accepted for the route `method
    /// pattern` (HEAD as GET).
    pub fn admits(self, method: &str, pattern: &str) -> bool {
        let method = if method == "HEAD" { "GET" } else { method };
        let scrape = (method, pattern) == SCRAPE_ROUTE;
        match self {
            TokenScope::Api => !scrape,
            TokenScope::Metrics => scrape,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub tenant_id: Option<TenantId>,
    pub enabled: bool,
    pub must_change_password: bool,
    #[serde(skip)]
    pub failed_logins: u32,
    pub locked_until: Option<i64>,
    #[serde(skip)]
    pub session_epoch: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// Contact e-mail, also a sign-in name (unique when set).
    pub email: String,
    pub phone: String,
    /// The language of what is sent to the user (alert e-mail): "zh-CN",
    /// "en", or "" for the appliance's default (zh-CN).
    pub language: String,
}

/// The audit trail's actor for a user (the audit core knows no accounts).
impl crate::audit::Actor {
    pub fn user(u: &User) -> Self {
        Self {
            id: Some(u.id),
            name: u.username.clone(),
            tenant: u.tenant_id,
        }
    }
}

impl User {
    pub fn is_locked(&self, now: i64) -> bool {
        self.locked_until.is_some_and(|t| t > now)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub company_code: String,
    pub enabled: bool,
    pub remark: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub contact_person: String,
    pub contact_email: String,
    pub contact_phone: String,
    /// The quotas (`None` = unlimited) and what the tenant's instances hold now.
    #[serde(flatten)]
    pub quota: Quota,
    pub usage: QuotaUse,
}

/// A tenant's quotas (配额): the most its instances may hold at once;
/// `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Quota {
    pub quota_gpus: Option<i64>,
    pub quota_instances: Option<i64>,
    pub quota_cpu_cores: Option<i64>,
    pub quota_memory_gb: Option<i64>,
}

/// What a tenant's instances hold now, in the quotas' terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QuotaUse {
    pub gpus: i64,
    pub instances: i64,
    pub cpu_cores: i64,
    pub memory_gb: i64,
}

impl Quota {
    /// The first quota that `used` plus `count` × `each` would pass, as
    /// (field, quota, in use, asked).
    pub fn exceeded(
        &self,
        used: QuotaUse,
        each: QuotaUse,
        count: i64,
    ) -> Option<(&'static str, i64, i64, i64)> {
        [
            ("quota_gpus", self.quota_gpus, used.gpus, each.gpus),
            (
                "quota_instances",
                self.quota_instances,
                used.instances,
                each.instances,
            ),
            (
                "quota_cpu_cores",
                self.quota_cpu_cores,
                used.cpu_cores,
                each.cpu_cores,
            ),
            (
                "quota_memory_gb",
                self.quota_memory_gb,
                used.memory_gb,
                each.memory_gb,
            ),
        ]
        .into_iter()
        .find_map(|(field, quota, used, each)| {
            let asked = each.saturating_mul(count);
            quota
                .filter(|q| asked > 0 && used.saturating_add(asked) > *q)
                .map(|q| (field, q, used, asked))
        })
    }
}

/// Usernames are also SSH login names (`alice+instance@host`), so `+`, `@` and
/// upper case are excluded.
pub fn check_username(name: &str) -> Result<(), FieldError> {
    let ok_len = (2..=32).contains(&name.len());
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    if ok_len && first_ok && rest_ok {
        Ok(())
    } else {
        Err(FieldError::new("err.username_format"))
    }
}

pub fn check_company_code(code: &str) -> Result<(), FieldError> {
    let ok = (2..=32).contains(&code.len())
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(FieldError::new("err.company_code_format"))
    }
}

/// The role/tenant pairing rule: admins belong to no tenant, customers to one.
pub fn check_role_tenant(role: Role, tenant: Option<TenantId>) -> Result<(), FieldError> {
    match (role, tenant) {
        (Role::Admin, None) => Ok(()),
        (Role::Admin, Some(_)) => Err(FieldError::new("err.admin_no_tenant")),
        (Role::CustomerOwner | Role::CustomerMember, Some(_)) => Ok(()),
        (Role::CustomerOwner | Role::CustomerMember, None) => {
            Err(FieldError::new("err.tenant_required"))
        }
    }
}

pub const MAX_PASSWORD_LEN: usize = 128;

/// Rejects passwords the zxcvbn estimator scores below `min_score`, with its
/// feedback as the reason. `user_inputs` (username, ...) count as guessable.
pub fn check_password_strength(
    password: &str,
    user_inputs: &[&str],
    min_score: u8,
) -> Result<(), FieldError> {
    if password.is_empty() {
        return Err(FieldError::new("err.required"));
    }
    if password.chars().count() > MAX_PASSWORD_LEN {
        return Err(FieldError::with_detail(
            "err.too_long",
            MAX_PASSWORD_LEN.to_string(),
        ));
    }
    // The estimator's feedback by its names, said in the reader's language
    // (`[pwfb]` in the catalogues).
    let super::strength::Estimate { score, mut reasons } =
        super::strength::estimate(password, user_inputs);
    if score >= min_score {
        return Ok(());
    }
    if reasons.is_empty() {
        reasons.push(format!("pwfb.Score{min_score}"));
    }
    Err(FieldError::with_detail_keys("err.password_weak", &reasons))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["admin", "alice", "bob.smith", "u_1", "9lives"] {
            assert!(check_username(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "Alice",
            "al+ice",
            "a@b",
            "-x",
            "a b",
            &"x".repeat(33),
        ] {
            assert!(check_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_token_serves_the_routes_of_its_scope_only() {
        for (m, p) in [("GET", "/api/v1/me"), ("POST", "/api/v1/instances")] {
            assert!(TokenScope::Api.admits(m, p));
            assert!(!TokenScope::Metrics.admits(m, p));
        }
        for m in ["GET", "HEAD"] {
            assert!(TokenScope::Metrics.admits(m, "/metrics"));
            assert!(
                !TokenScope::Api.admits(m, "/metrics"),
                "the scrape takes metrics tokens"
            );
        }
        assert!(!TokenScope::Metrics.admits("POST", "/metrics"));
        assert!(!TokenScope::Metrics.admits("GET", "/api/v1/metrics/series"));
        assert_eq!(TokenScope::parse("metrics"), Some(TokenScope::Metrics));
        assert_eq!(TokenScope::parse("root"), None);
    }

    #[test]
    fn company_codes() {
        assert!(check_company_code("ACME-01").is_ok());
        assert!(check_company_code("a").is_err());
        assert!(check_company_code("有限公司").is_err());
    }

    #[test]
    fn role_tenant_pairing() {
        assert!(check_role_tenant(Role::Admin, None).is_ok());
        assert!(check_role_tenant(Role::Admin, Some(TenantId(1))).is_err());
        assert!(check_role_tenant(Role::CustomerMember, None).is_err());
        assert!(check_role_tenant(Role::CustomerOwner, Some(TenantId(1))).is_ok());
    }

    #[test]
    fn scope_follows_role() {
        let mut u = User {
            id: UserId(7),
            username: "x".into(),
            display_name: String::new(),
            role: Role::Admin,
            tenant_id: None,
            enabled: true,
            must_change_password: false,
            failed_logins: 0,
            locked_until: None,
            session_epoch: 0,
            created_at: 0,
            updated_at: 0,
            email: String::new(),
            phone: String::new(),
            language: String::new(),
        };
        assert_eq!(Scope::of(&u), Scope::All);
        u.role = Role::CustomerOwner;
        u.tenant_id = Some(TenantId(3));
        assert_eq!(Scope::of(&u), Scope::Tenant(TenantId(3)));
        u.role = Role::CustomerMember;
        assert_eq!(Scope::of(&u), Scope::User(UserId(7), Some(TenantId(3))));
    }

    #[test]
    fn weak_passwords_are_refused_with_a_reason() {
        let err = check_password_strength("password1", &[], 3).unwrap_err();
        assert_eq!(err.key, "err.password_weak");
        assert!(err.detail.as_deref().is_some_and(|d| !d.is_empty()));
        // The estimator's feedback in the reader's language.
        let en = err.text(crate::i18n::Tr::new(crate::i18n::Lang::En));
        let zh = err.text(crate::i18n::Tr::new(crate::i18n::Lang::ZhCn));
        assert!(
            en.starts_with("password too weak: ") && en.contains("password."),
            "{en}"
        );
        assert!(
            zh.starts_with("密码强度不足: ") && zh.contains("密码"),
            "{zh}"
        );
        assert!(!en.contains("pwfb.") && !zh.contains("pwfb."), "{en} {zh}");
        use zxcvbn::feedback::{Suggestion as S, Warning as W};
        let names: Vec<String> = [
            W::StraightRowsOfKeysAreEasyToGuess,
            W::ShortKeyboardPatternsAreEasyToGuess,
            W::RepeatsLikeAaaAreEasyToGuess,
            W::RepeatsLikeAbcAbcAreOnlySlightlyHarderToGuess,
            W::ThisIsATop10Password,
            W::ThisIsATop100Password,
            W::ThisIsACommonPassword,
            W::ThisIsSimilarToACommonlyUsedPassword,
            W::SequencesLikeAbcAreEasyToGuess,
            W::RecentYearsAreEasyToGuess,
            W::AWordByItselfIsEasyToGuess,
            W::DatesAreOftenEasyToGuess,
            W::NamesAndSurnamesByThemselvesAreEasyToGuess,
            W::CommonNamesAndSurnamesAreEasyToGuess,
        ]
        .iter()
        .map(|w| format!("pwfb.{w:?}"))
        .chain(
            [
                S::UseAFewWordsAvoidCommonPhrases,
                S::NoNeedForSymbolsDigitsOrUppercaseLetters,
                S::AddAnotherWordOrTwo,
                S::CapitalizationDoesntHelpVeryMuch,
                S::AllUppercaseIsAlmostAsEasyToGuessAsAllLowercase,
                S::ReversedWordsArentMuchHarderToGuess,
                S::PredictableSubstitutionsDontHelpVeryMuch,
                S::UseALongerKeyboardPatternWithMoreTurns,
                S::AvoidRepeatedWordsAndCharacters,
                S::AvoidSequences,
                S::AvoidRecentYears,
                S::AvoidYearsThatAreAssociatedWithYou,
                S::AvoidDatesAndYearsThatAreAssociatedWithYou,
            ]
            .iter()
            .map(|s| format!("pwfb.{s:?}")),
        )
        .chain((1..=4).map(|n| format!("pwfb.Score{n}")))
        .collect();
        for lang in [crate::i18n::Lang::En, crate::i18n::Lang::ZhCn] {
            let tr = crate::i18n::Tr::new(lang);
            for k in &names {
                assert_ne!(tr.t(k), k.as_str(), "{k} in {lang:?}");
            }
        }
        assert!(check_password_strength("alice1990", &["alice"], 3).is_err());
        assert!(check_password_strength("", &[], 3).is_err());
        assert!(check_password_strength("correct horse battery staple 91!", &[], 3).is_ok());
    }

    #[test]
    fn random_passwords_are_strong_and_distinct() {
        let a = random_password();
        assert_eq!(a.len(), 20);
        assert_ne!(a, random_password());
        assert!(check_password_strength(&a, &["admin"], 4).is_ok());
    }
}
