//! Paging, one mechanism for every list page and API: `limit` and `offset`
//! in the query string, and the total beside the rows.
//! - Stores run their list query through [`query`]: the window's rows and
//!   the count of all rows that match.
//! - APIs answer with the rows as a JSON array and the total in
//!   `X-Total-Count`, with `Link` headers to the next and previous pages
//!   ([`Paging::json`]).
//! - Pages show the rows and a pager in both languages
//!   (`templates/pager.html`, from [`Paging::pager`]).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, Row, ToSql};
use serde::Serialize;

use crate::error::{AppError, FieldError, FieldErrors};

/// Rows a page shows unless asked otherwise.
pub const PAGE_LIMIT: u32 = 50;
/// Rows an API answers unless asked otherwise.
pub const API_LIMIT: u32 = 100;
/// The most rows one request gets (more is taken as this).
pub const MAX_LIMIT: u32 = 1000;

/// Which rows: `limit` of them after the first `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub limit: u32,
    pub offset: u64,
}

impl Window {
    pub fn first(limit: u32) -> Self {
        Window {
            limit: limit.clamp(1, MAX_LIMIT),
            offset: 0,
        }
    }

    /// Every row (what a form offers to choose from, never a list).
    pub fn all() -> Self {
        Window {
            limit: u32::MAX,
            offset: 0,
        }
    }
}

/// The rows of a window and how many rows there are in all.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub window: Window,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
            window: self.window,
        }
    }
}

/// Runs `select` (a whole SELECT with its ORDER BY, numbered parameters
/// `?1..?n` given in `params`) for the rows of `window`, and counts the
/// rows it matches in all.
pub fn query<T>(
    conn: &Connection,
    select: &str,
    params: &[&dyn ToSql],
    window: Window,
    row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Page<T>> {
    let count = format!("SELECT COUNT(*) FROM ({})", unordered(select));
    counted(conn, select, &count, params, window, row)
}

/// `select` without its closing ORDER BY: counted in order, SQLite would
/// compute every row's columns only to count them (10x slower measured on
/// the instance list); without, it counts the matching rows alone.
fn unordered(select: &str) -> &str {
    match select.rfind("ORDER BY") {
        Some(at) if !select[at..].contains(')') => &select[..at],
        _ => select,
    }
}

/// [`query`] with the count of all rows given as its own statement (`count`,
/// the same parameters): where counting through `select` would compute
/// every row's columns (joins, subqueries) only to count them.
pub fn counted<T>(
    conn: &Connection,
    select: &str,
    count: &str,
    params: &[&dyn ToSql],
    window: Window,
    row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Page<T>> {
    let total: i64 = conn
        .prepare_cached(count)?
        .query_row(params, |r| r.get(0))?;
    Ok(Page {
        items: rows(conn, select, params, window, row)?,
        total: u64::try_from(total).unwrap_or(0),
        window,
    })
}

/// [`query`]'s rows without the count (where nobody is shown the total).
pub fn rows<T>(
    conn: &Connection,
    select: &str,
    params: &[&dyn ToSql],
    window: Window,
    row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let n = params.len();
    let (limit, offset) = (
        i64::from(window.limit),
        // SQLite counts in i64; an offset past that is past every row.
        i64::try_from(window.offset).unwrap_or(i64::MAX),
    );
    let mut all = params.to_vec();
    all.push(&limit);
    all.push(&offset);
    conn.prepare_cached(&format!("{select} LIMIT ?{} OFFSET ?{}", n + 1, n + 2))?
        .query_map(&*all, row)?
        .collect()
}

/// The window a request asks for (`limit`, `offset` in its query string;
/// [`API_LIMIT`] rows by default under `/api/`, [`PAGE_LIMIT`] elsewhere),
/// and where it was asked (for the links to other pages).
#[derive(Debug, Clone)]
pub struct Paging {
    pub window: Window,
    path: String,
    /// The query string's other pairs, kept in the links.
    rest: Vec<(String, String)>,
}

impl Paging {
    /// From a path and its query string; a `limit` or `offset` that is not
    /// a whole number is a field error.
    pub fn parse(path: &str, query: Option<&str>) -> Result<Self, AppError> {
        let mut window = Window::first(default_limit(path));
        let mut rest = Vec::new();
        let mut errors = FieldErrors::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "limit" => match v.trim().parse::<u64>() {
                    Ok(n) => window.limit = n.clamp(1, u64::from(MAX_LIMIT)) as u32,
                    Err(_) => {
                        errors.insert("limit", FieldError::new("err.not_integer"));
                    }
                },
                "offset" => match v.trim().parse::<u64>() {
                    Ok(n) => window.offset = n,
                    Err(_) => {
                        errors.insert("offset", FieldError::new("err.not_integer"));
                    }
                },
                _ => rest.push((k.into_owned(), v.into_owned())),
            }
        }
        if !errors.is_empty() {
            return Err(AppError::Validation(errors));
        }
        Ok(Paging {
            window,
            path: path.to_string(),
            rest,
        })
    }

    /// The first page of the list at `path` (where a form that failed
    /// shows the list again).
    pub fn first(path: &str) -> Self {
        Paging {
            window: Window::first(default_limit(path)),
            path: path.to_string(),
            rest: Vec::new(),
        }
    }

    /// The link to the rows from `offset` on (same limit, same filters).
    pub fn link(&self, offset: u64) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.rest {
            q.append_pair(k, v);
        }
        q.append_pair("limit", &self.window.limit.to_string());
        q.append_pair("offset", &offset.to_string());
        format!("{}?{}", self.path, q.finish())
    }

    /// Where the window of the rows of the previous/next/last page starts.
    fn offsets(&self, total: u64) -> Offsets {
        let (limit, at) = (u64::from(self.window.limit), self.window.offset);
        let last = total.saturating_sub(1) / limit * limit;
        Offsets {
            prev: (at > 0).then(|| at.saturating_sub(limit).min(last)),
            next: at.checked_add(limit).filter(|&n| n < total),
            last,
        }
    }

    /// The API answer: the rows as a JSON array, the total in
    /// `X-Total-Count`, links to the next and previous pages in `Link`.
    pub fn json<T: Serialize>(&self, page: &Page<T>) -> Response {
        self.with_links(axum::Json(&page.items).into_response(), page.total)
    }

    /// [`Paging::json`] for rows already serialized (`body`, a JSON array)
    /// of `total` rows in all.
    pub fn json_body(&self, body: bytes::Bytes, total: u64) -> Response {
        let json = HeaderValue::from_static("application/json");
        self.with_links(
            ([(header::CONTENT_TYPE, json)], body).into_response(),
            total,
        )
    }

    /// `r` with the total in `X-Total-Count` and the `Link` header.
    fn with_links(&self, mut r: Response, total: u64) -> Response {
        let h = r.headers_mut();
        h.insert("x-total-count", HeaderValue::from(total));
        let o = self.offsets(total);
        let links: Vec<String> = [("next", o.next), ("prev", o.prev)]
            .into_iter()
            .filter_map(|(rel, at)| at.map(|at| format!("<{}>; rel=\"{rel}\"", self.link(at))))
            .collect();
        if !links.is_empty()
            && let Ok(v) = HeaderValue::from_str(&links.join(", "))
        {
            h.insert(header::LINK, v);
        }
        r
    }

    /// What the pager under a list shows.
    pub fn pager(&self, total: u64, shown: usize) -> Pager {
        let o = self.offsets(total);
        let from = self.window.offset.saturating_add(1);
        Pager {
            total,
            from,
            to: self.window.offset.saturating_add(shown as u64),
            shown,
            first: o.prev.map(|_| self.link(0)),
            prev: o.prev.map(|at| self.link(at)),
            next: o.next.map(|at| self.link(at)),
            last: o.next.map(|_| self.link(o.last)),
            here: self.link(self.window.offset),
        }
    }
}

/// The most characters of a search that count (the rest is dropped).
const MAX_SEARCH: usize = 100;

/// What a list is narrowed to, from its query string (kept in the pager's
/// links like every other pair): `q`, text that a row's names contain
/// (case-blind for ASCII), and `status`, one status word of the list's.
/// Both only narrow a list already scoped in its query: never widen it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search {
    pub q: String,
    pub status: String,
}

impl Search {
    /// `q` as a LIKE pattern (with `ESCAPE '\'`), or None when empty.
    pub fn like(&self) -> Option<String> {
        let q = self.q.trim();
        if q.is_empty() {
            return None;
        }
        let mut p = String::from("%");
        for c in q.chars().take(MAX_SEARCH) {
            if matches!(c, '%' | '_' | '\\') {
                p.push('\\');
            }
            p.push(c);
        }
        p.push('%');
        Some(p)
    }

    /// `status` as a query parameter: None when not given (the caller
    /// checked it with [`Search::status_of`]).
    pub fn status_param(&self) -> Option<String> {
        let s = self.status.trim();
        (!s.is_empty()).then(|| s.to_string())
    }

    /// `status` when given, if it is one of `known` (else a field error
    /// naming the words that are).
    pub fn status_of(&self, known: &[&str]) -> Result<Option<String>, AppError> {
        let s = self.status.trim();
        if s.is_empty() {
            return Ok(None);
        }
        if known.contains(&s) {
            return Ok(Some(s.to_string()));
        }
        let mut errors = FieldErrors::new();
        errors.insert(
            "status",
            FieldError::with_detail("err.one_of", known.join(", ")),
        );
        Err(AppError::Validation(errors))
    }
}

impl Paging {
    /// The list's [`Search`] (`q` and `status` of the query string).
    pub fn search(&self) -> Search {
        let get = |name: &str| {
            self.rest
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        Search {
            q: get("q"),
            status: get("status"),
        }
    }
}

/// The search form above a list (`templates/search.html`): where it
/// sends, what was asked, and the status words offered with their i18n
/// keys.
#[derive(Debug, Clone)]
pub struct SearchForm {
    pub action: &'static str,
    pub search: Search,
    pub statuses: Vec<(&'static str, &'static str)>,
}

impl SearchForm {
    pub fn new(
        action: &'static str,
        paging: &Paging,
        statuses: impl IntoIterator<Item = (&'static str, &'static str)>,
    ) -> Self {
        SearchForm {
            action,
            search: paging.search(),
            statuses: statuses.into_iter().collect(),
        }
    }

    /// Whether anything narrows the list (the form offers to clear it).
    pub fn narrowed(&self) -> bool {
        !self.search.q.trim().is_empty() || !self.search.status.trim().is_empty()
    }
}

fn default_limit(path: &str) -> u32 {
    if path.starts_with("/api/") {
        API_LIMIT
    } else {
        PAGE_LIMIT
    }
}

struct Offsets {
    prev: Option<u64>,
    next: Option<u64>,
    last: u64,
}

/// The pager of a list page: which rows are shown of how many, and links
/// to the first, previous, next and last pages (none where there is none).
#[derive(Debug, Clone, Default)]
pub struct Pager {
    pub total: u64,
    pub from: u64,
    pub to: u64,
    pub shown: usize,
    pub first: Option<String>,
    pub prev: Option<String>,
    pub next: Option<String>,
    pub last: Option<String>,
    /// This page (what a list that refreshes itself fetches).
    pub here: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Paging {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        Paging::parse(parts.uri.path(), parts.uri.query())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn windows_from_the_query_string() {
        let p = Paging::parse("/api/v1/x", None).unwrap();
        assert_eq!(
            p.window,
            Window {
                limit: API_LIMIT,
                offset: 0
            }
        );
        let p = Paging::parse("/x", Some("a=1&limit=20&offset=40&b=%20z")).unwrap();
        assert_eq!(
            p.window,
            Window {
                limit: 20,
                offset: 40
            }
        );
        assert_eq!(p.link(60), "/x?a=1&b=+z&limit=20&offset=60");
        let p = Paging::parse("/x", Some("limit=4294967296&offset=18446744073709551615")).unwrap();
        assert_eq!(
            p.window,
            Window {
                limit: MAX_LIMIT,
                offset: u64::MAX
            }
        );
        assert_eq!(
            Paging::parse("/x", Some("limit=0")).unwrap().window.limit,
            1
        );
        for bad in ["limit=-1", "offset=x", "offset=-5", "limit="] {
            match Paging::parse("/x", Some(bad)) {
                Err(AppError::Validation(f)) => assert_eq!(f.len(), 1, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn pager_links() {
        let p = Paging::parse("/l", Some("limit=10&offset=20")).unwrap();
        let g = p.pager(45, 10);
        assert_eq!((g.from, g.to, g.total), (21, 30, 45));
        assert_eq!(g.prev.as_deref(), Some("/l?limit=10&offset=10"));
        assert_eq!(g.next.as_deref(), Some("/l?limit=10&offset=30"));
        assert_eq!(g.first.as_deref(), Some("/l?limit=10&offset=0"));
        assert_eq!(g.last.as_deref(), Some("/l?limit=10&offset=40"));
        let g = Paging::parse("/l", Some("limit=10")).unwrap().pager(7, 7);
        assert_eq!((g.from, g.to), (1, 7));
        assert!(g.prev.is_none() && g.next.is_none() && g.first.is_none() && g.last.is_none());
        // Past the end: back to the last page, nothing further.
        let g = Paging::parse("/l", Some("limit=10&offset=90"))
            .unwrap()
            .pager(45, 0);
        assert_eq!(g.prev.as_deref(), Some("/l?limit=10&offset=40"));
        assert!(g.next.is_none());
        let g = Paging::parse("/l", Some("offset=18446744073709551615"))
            .unwrap()
            .pager(3, 0);
        assert!(g.next.is_none() && g.prev.is_some());
    }

    #[test]
    fn searches_from_the_query_string() {
        let p = Paging::parse("/x", Some("q=%2050%25_a%5Cb%20&status=running&limit=5")).unwrap();
        let s = p.search();
        assert_eq!(s.like().as_deref(), Some("%50\\%\\_a\\\\b%"));
        assert_eq!(
            s.status_of(&["running", "exited"]).unwrap().as_deref(),
            Some("running")
        );
        assert!(p.link(5).contains("q=") && p.link(5).contains("status=running"));
        let none = Paging::parse("/x", Some("q=%20%20")).unwrap().search();
        assert_eq!((none.like(), none.status_of(&["a"]).unwrap()), (None, None));
        let long = Search {
            q: "x".repeat(500),
            status: String::new(),
        };
        assert_eq!(long.like().unwrap().len(), MAX_SEARCH + 2);
        match (Search {
            q: String::new(),
            status: "nope".into(),
        })
        .status_of(&["a", "b"])
        {
            Err(AppError::Validation(f)) => assert_eq!(f.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn counts_leave_the_closing_order_out() {
        assert_eq!(
            unordered("SELECT a FROM t ORDER BY a DESC"),
            "SELECT a FROM t "
        );
        let inner = "SELECT a, (SELECT b FROM u ORDER BY b LIMIT 1) FROM t";
        assert_eq!(unordered(inner), inner);
        assert_eq!(unordered("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn a_query_in_pages_with_its_total() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (n INTEGER); WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 25) INSERT INTO t SELECT n FROM s;")
            .unwrap();
        let min = 3;
        let w = Window {
            limit: 5,
            offset: 10,
        };
        let page = query(
            &c,
            "SELECT n FROM t WHERE n > ?1 ORDER BY n DESC",
            &[&min],
            w,
            |r| r.get::<_, i64>(0),
        )
        .unwrap();
        assert_eq!((page.total, page.items), (22, vec![15, 14, 13, 12, 11]));
        let w = Window {
            limit: 5,
            offset: u64::MAX,
        };
        let page = query(&c, "SELECT n FROM t ORDER BY n", &[], w, |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
        assert_eq!((page.total, page.items.len()), (25, 0));
    }
}
