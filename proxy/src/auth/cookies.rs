//! The cookies sign-in uses, all `__Host-` prefixed: Secure, no Domain
//! attribute, `Path=/`, so a cookie set for one host is never sent to a
//! sibling subdomain (a site cannot read or plant another site's session).

use cookie::{Cookie, SameSite};
use http::HeaderMap;

/// The session cookie: a random secret whose hash names the record.
pub const SESSION: &str = "__Host-grove_session";

/// One cookie per sign-in in flight, named by its `state`, so two tabs
/// signing in at once each keep their own.
pub const LOGIN_PREFIX: &str = "__Host-grove_login_";

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.trim_matches('"'))
        })
}

/// A `Set-Cookie` value for a `__Host-` cookie that lives `max_age_secs`.
pub fn set(name: &str, value: &str, max_age_secs: u64) -> String {
    Cookie::build((name, value))
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age_secs).unwrap_or(i64::MAX),
        ))
        .build()
        .to_string()
}

/// A `Set-Cookie` value that deletes cookie `name`.
pub fn clear(name: &str) -> String {
    set(name, "", 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_cookies_carry_every_attribute_and_are_found_by_name() {
        let cookie = set(SESSION, "abc", 60);
        for part in [
            "__Host-grove_session=abc",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(cookie.contains(part), "{cookie} lacks {part}");
        }
        assert!(!cookie.contains("Domain"), "{cookie}");
        assert!(clear(SESSION).contains("Max-Age=0"));
        let mut headers = HeaderMap::new();
        headers.append(
            http::header::COOKIE,
            "a=1; __Host-grove_session=s3cret".parse().unwrap(),
        );
        headers.append(http::header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(value(&headers, SESSION), Some("s3cret"));
        assert_eq!(value(&headers, "b"), Some("2"));
        assert_eq!(value(&headers, "__Host-grove"), None);
    }
}
