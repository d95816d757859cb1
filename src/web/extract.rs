//! Extractors whose rejections are `AppError`s, so bad JSON, a bad path id or a
//! bad query string answer with the same error shape as everything else.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use crate::error::{AppError, FieldError, FieldErrors};

/// A JSON request body. Every API body comes through here, so every one
/// refuses fields it does not know (a misspelt field is an error naming it,
/// never silently ignored) and answers malformed JSON with a field error.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        if !is_json(req.headers()) {
            return Err(bad_json("expected Content-Type: application/json"));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| bad_json(&r.body_text()))?;
        parse_json(&bytes).map(ApiJson)
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

fn bad_json(detail: &str) -> AppError {
    AppError::Validation(FieldErrors::from([(
        "body",
        FieldError::with_detail("err.bad_json", detail),
    )]))
}

/// `bytes` as a `T`; keys `T` does not have are refused by name (dotted
/// paths for nested objects).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let mut unknown = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_ignored::deserialize(&mut de, |path| unknown.push(path.to_string()))
        .map_err(|e| bad_json(&e.to_string()))?;
    de.end().map_err(|e| bad_json(&e.to_string()))?;
    if unknown.is_empty() {
        Ok(value)
    } else {
        Err(AppError::UnknownFields(unknown))
    }
}

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct ApiPath<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct ApiQuery<T>(pub T);

impl From<PathRejection> for AppError {
    fn from(_: PathRejection) -> Self {
        AppError::NotFound
    }
}

impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> Self {
        AppError::Validation(FieldErrors::from([(
            "query",
            FieldError::with_detail("err.bad_query", r.body_text()),
        )]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Default)]
    #[serde(default)]
    struct Patch {
        name: Option<String>,
        enabled: Option<bool>,
        extra: Option<serde_json::Value>,
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let p: Patch = parse_json(br#"{"name": "x", "extra": {"any": 1}}"#).unwrap();
        assert_eq!(p.name.as_deref(), Some("x"));
        match parse_json::<Patch>(br#"{"nmae": "x", "enabled": true, "colour": 1}"#) {
            Err(AppError::UnknownFields(names)) => assert_eq!(names, ["nmae", "colour"]),
            other => panic!("{other:?}"),
        }
        match parse_json::<Patch>(br#"{"name": 1}"#) {
            Err(AppError::Validation(f)) => assert_eq!(f["body"].key, "err.bad_json"),
            other => panic!("{other:?}"),
        }
        assert!(parse_json::<Patch>(br#"{} trailing"#).is_err());
    }
}
