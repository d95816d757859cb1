//! Translations for zh-CN and English. Messages live in two embedded TOML files
//! with identical keys (a test checks that, and that every key the templates
//! use exists). The language comes from the `lang` cookie, else Accept-Language.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::http::HeaderMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    ZhCn,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::ZhCn => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "zh-CN" | "zh" => Some(Lang::ZhCn),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// From the `lang` cookie, else the first zh/en range of Accept-Language,
    /// else zh-CN (most of our users).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let cookie = headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().strip_prefix("lang="))
            .find_map(Lang::parse);
        if let Some(lang) = cookie {
            return lang;
        }
        let accept = headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        for range in accept.split(',') {
            let tag = range
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if tag.starts_with("zh") {
                return Lang::ZhCn;
            }
            if tag.starts_with("en") {
                return Lang::En;
            }
        }
        Lang::ZhCn
    }
}

type Table = HashMap<String, String>;

fn flatten(prefix: &str, value: &toml::Value, out: &mut Table) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

fn load(text: &str) -> Table {
    let mut out = Table::new();
    match text.parse::<toml::Table>() {
        Ok(t) => flatten("", &toml::Value::Table(t), &mut out),
        Err(e) => log::error!("embedded translations do not parse: {e}"),
    }
    out
}

static ZH: LazyLock<Table> = LazyLock::new(|| load(include_str!("zh-CN.toml")));
static EN: LazyLock<Table> = LazyLock::new(|| load(include_str!("en.toml")));

/// A translator for one language; cheap to copy into templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tr {
    pub lang: Lang,
}

impl Tr {
    pub fn new(lang: Lang) -> Self {
        Self { lang }
    }

    pub fn english() -> Self {
        Self { lang: Lang::En }
    }

    /// The message for `key`; a missing key shows as the key itself.
    pub fn t<'a>(&self, key: &'a str) -> &'a str {
        let table: &'static Table = match self.lang {
            Lang::ZhCn => &ZH,
            Lang::En => &EN,
        };
        table.get(key).map(String::as_str).unwrap_or(key)
    }

    pub fn code(&self) -> &'static str {
        self.lang.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn keys(t: &Table) -> BTreeSet<&str> {
        t.keys().map(String::as_str).collect()
    }

    #[test]
    fn both_languages_have_the_same_keys() {
        assert!(!EN.is_empty());
        let (en, zh) = (keys(&EN), keys(&ZH));
        let only_en: Vec<_> = en.difference(&zh).collect();
        let only_zh: Vec<_> = zh.difference(&en).collect();
        assert!(
            only_en.is_empty() && only_zh.is_empty(),
            "en only: {only_en:?}, zh only: {only_zh:?}"
        );
    }

    /// Every `.t("...")` in templates and every `"err.*"`/`"msg.*"` key in the
    /// sources has a translation.
    #[test]
    fn every_used_key_is_translated() {
        let mut used = BTreeSet::new();
        for text in crate::testutil::source_texts(&["templates", "src"]) {
            for part in text.split(".t(\"").skip(1) {
                used.insert(part.split('"').next().unwrap().to_string());
            }
            for prefix in ["\"err.", "\"msg."] {
                for part in text.split(prefix).skip(1) {
                    let rest = part.split('"').next().unwrap();
                    if rest
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                    {
                        used.insert(format!("{}{rest}", &prefix[1..]));
                    }
                }
            }
        }
        // Keep only real keys (the patterns above also match this test's own text).
        used.retain(|k| {
            k.contains('.')
                && !k.ends_with('.')
                && k.chars().any(|c| c.is_ascii_lowercase())
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
        });
        assert!(used.len() > 50, "found only {} keys", used.len());
        let missing: Vec<_> = used.iter().filter(|k| !EN.contains_key(*k)).collect();
        assert!(missing.is_empty(), "untranslated keys: {missing:?}");
    }

    #[test]
    fn language_from_cookie_then_accept_language() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::from_headers(&h), Lang::ZhCn);
        h.insert(
            "accept-language",
            "en-US,en;q=0.9,zh;q=0.5".parse().unwrap(),
        );
        assert_eq!(Lang::from_headers(&h), Lang::En);
        h.insert("cookie", "a=b; lang=zh-CN".parse().unwrap());
        assert_eq!(Lang::from_headers(&h), Lang::ZhCn);
    }
}
