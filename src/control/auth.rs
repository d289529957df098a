//! Who may do what: an optional bearer token to publish (`--publish-token`, and
//! `--whip-token` for WHIP encoders) and one for the operator's endpoints
//! (`--admin-token`). Without them, anyone who reaches the port may do both, which
//! is fine on loopback and logged as a warning elsewhere.
//!
//! Tokens are compared in constant time and never logged (their `Debug` is redacted).

use std::fmt;
use std::str::FromStr;

use axum::http::{HeaderMap, header};

/// A token from the command line or the environment.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a token cannot be empty".into());
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a token must be printable ASCII without spaces".into());
        }
        Ok(Secret(text.to_owned()))
    }
}

impl Secret {
    /// Whether `given` is this token, in time that depends on its length only.
    pub fn matches(&self, given: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), given.as_bytes())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether `required` lets `given` through: no token required, or the right one.
pub fn allows(required: Option<&Secret>, given: Option<&str>) -> bool {
    match required {
        None => true,
        Some(secret) => given.is_some_and(|given| secret.matches(given)),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Every byte of the longer one is read, whatever differs where.
    let len = a.len().max(b.len());
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The `token` parameter of a query string (`/ws?token=...`: browsers cannot set
/// headers on a WebSocket).
pub fn query_token(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let value = pair.strip_prefix("token=")?;
        Some(percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_themselves() {
        let secret: Secret = "s3cret-token".parse().unwrap();
        assert!(secret.matches("s3cret-token"));
        assert!(!secret.matches("s3cret-tokem"));
        assert!(!secret.matches("s3cret-token "));
        assert!(!secret.matches("s3cret"));
        assert!(!secret.matches(""));
        assert!(allows(None, None));
        assert!(!allows(Some(&secret), None));
        assert!(allows(Some(&secret), Some("s3cret-token")));
        assert_eq!(format!("{secret:?}"), "Secret(..)");
        assert!("".parse::<Secret>().is_err());
        assert!("with space".parse::<Secret>().is_err());
    }

    #[test]
    fn tokens_come_from_headers_and_queries() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        assert_eq!(query_token(Some("a=1&token=x%2Fy%3D")), Some("x/y=".into()));
        assert_eq!(query_token(Some("token=abc")), Some("abc".into()));
        assert_eq!(query_token(Some("tokens=abc")), None);
        assert_eq!(query_token(Some("token=50%")), Some("50%".into()));
        assert_eq!(query_token(None), None);
    }
}
