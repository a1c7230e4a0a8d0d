//! Request authentication: the SDKs' HMAC-SHA1 signature (`Authorization: MQ <id>:<sig>`) over
//! the verb, Content-MD5, Content-Type, Date, the `x-mq-*` headers and the request target exactly
//! as received, and a bound on how far the `Date` may be from the gateway's clock.
//!
//! The Content-MD5 is only signed, never checked against the body: the SDKs send base64 of the
//! *hex* digest, not RFC 1864's form, and a signed header already binds it to the request.
//! `security-token` (STS) is not signed by the SDKs and is accepted and ignored.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use axum::http::{header, HeaderMap, Method};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use super::error::{AliyunError, Code};

/// Aliyun rejects requests whose Date is further off than this.
pub const MAX_DATE_SKEW: Duration = Duration::from_secs(15 * 60);

/// An AccessKeySecret; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps an AccessKeySecret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The AccessKey pairs the gateway accepts. Empty: every request is refused.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    keys: HashMap<String, Secret>,
}

impl Credentials {
    /// The given (AccessKeyId, secret) pairs; a later pair replaces an earlier one with the same
    /// id.
    pub fn new<I: IntoIterator<Item = (String, Secret)>>(pairs: I) -> Self {
        Credentials {
            keys: pairs.into_iter().collect(),
        }
    }

    /// True if no pair is configured (then every request is refused).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks a request; returns the AccessKeyId it was signed with.
    pub fn verify(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Result<String, AliyunError> {
        if self.keys.is_empty() {
            return Err(AliyunError::new(
                Code::AccessDenied,
                "the Aliyun API has no credentials configured on this gateway ([aliyun] credentials \
                 or RMQ_ALIYUN_ACCESS_KEY_ID/RMQ_ALIYUN_ACCESS_KEY_SECRET)",
            ));
        }
        let auth = headers.get(header::AUTHORIZATION).ok_or_else(|| {
            AliyunError::new(
                Code::MissingAuthorizationHeader,
                "Authorization header is required.",
            )
        })?;
        let (key_id, signature) = parse_authorization(auth.as_bytes())?;
        let secret = self.keys.get(key_id).ok_or_else(|| {
            AliyunError::new(
                Code::InvalidAccessKeyId,
                format!("The AccessKey Id you provided does not exist: {key_id:?}."),
            )
        })?;
        let date = header_text(headers, header::DATE.as_str())
            .ok_or_else(|| AliyunError::new(Code::InvalidDateHeader, "Date header is required."))?;
        let sent_at = httpdate::parse_http_date(&date).map_err(|_| {
            AliyunError::new(
                Code::InvalidDateHeader,
                format!("The Date header {date:?} is not an RFC 1123 date."),
            )
        })?;
        let expected = sign(secret, &string_to_sign(method, target, headers));
        if !bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
            return Err(AliyunError::new(
                Code::SignatureDoesNotMatch,
                "The request signature we calculated does not match the signature you provided. \
                 Check your key and signing method.",
            ));
        }
        let skew = now
            .duration_since(sent_at)
            .or_else(|_| sent_at.duration_since(now))
            .unwrap_or_default();
        if skew > MAX_DATE_SKEW {
            return Err(AliyunError::new(
                Code::RequestTimeTooSkewed,
                format!(
                    "The difference between the request time ({date}) and the server's time is \
                     {}s, more than the allowed {}s; check the client's clock.",
                    skew.as_secs(),
                    MAX_DATE_SKEW.as_secs()
                ),
            ));
        }
        Ok(key_id.to_owned())
    }
}

/// `MQ <AccessKeyId>:<Signature>`.
fn parse_authorization(v: &[u8]) -> Result<(&str, &str), AliyunError> {
    let bad = || {
        AliyunError::new(
            Code::InvalidAuthorizationHeader,
            "The Authorization header format is invalid: expected \"MQ <AccessKeyId>:<Signature>\".",
        )
    };
    let v = std::str::from_utf8(v).map_err(|_| bad())?;
    let rest = v.strip_prefix("MQ ").ok_or_else(bad)?;
    let (id, sig) = rest.trim().rsplit_once(':').ok_or_else(bad)?;
    if id.is_empty() || sig.is_empty() {
        return Err(bad());
    }
    Ok((id, sig))
}

/// A header's value as text; repeated headers are joined with `,` as HTTP folds them.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let parts: Vec<String> = values
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    Some(parts.join(","))
}

/// The text the SDKs sign (see the module docs). `target` is the request-target as received:
/// path and raw query, neither decoded nor reordered.
pub fn string_to_sign(method: &Method, target: &str, headers: &HeaderMap) -> String {
    let mut s = String::with_capacity(128 + target.len());
    s.push_str(method.as_str());
    s.push('\n');
    for name in ["content-md5", "content-type", "date"] {
        if let Some(v) = header_text(headers, name) {
            s.push_str(&v);
        }
        s.push('\n');
    }
    // HeaderMap names are lower case already; sort for the canonical order.
    let mut mq: Vec<&str> = headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with("x-mq-"))
        .collect();
    mq.sort_unstable();
    mq.dedup();
    for name in mq {
        s.push_str(name);
        s.push(':');
        s.push_str(header_text(headers, name).unwrap_or_default().trim());
        s.push('\n');
    }
    s.push_str(target);
    s
}

/// base64(HMAC-SHA1(secret, text)).
pub fn sign(secret: &Secret, text: &str) -> String {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key");
    mac.update(text.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::aliyun::error::Code;
    use axum::http::{HeaderName, HeaderValue};

    const CAPTURED: &str = include_str!("../../../tests/fixtures/aliyun/sdk-requests.jsonl");

    struct Captured {
        method: Method,
        target: String,
        headers: HeaderMap,
        body: String,
        string_to_sign: String,
        date: SystemTime,
    }

    fn captured() -> Vec<Captured> {
        CAPTURED
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let mut headers = HeaderMap::new();
                for h in v["headers"].as_array().unwrap() {
                    headers.append(
                        HeaderName::from_bytes(h[0].as_str().unwrap().as_bytes()).unwrap(),
                        HeaderValue::from_str(h[1].as_str().unwrap()).unwrap(),
                    );
                }
                let date = httpdate::parse_http_date(headers["date"].to_str().unwrap()).unwrap();
                Captured {
                    method: v["method"].as_str().unwrap().parse().unwrap(),
                    target: v["target"].as_str().unwrap().to_owned(),
                    headers,
                    body: v["body"].as_str().unwrap().to_owned(),
                    string_to_sign: v["string_to_sign"].as_str().unwrap().to_owned(),
                    date,
                }
            })
            .collect()
    }

    fn creds() -> Credentials {
        Credentials::new([("ak".to_string(), Secret::new("sk"))])
    }

    fn code(r: Result<String, AliyunError>) -> Code {
        r.unwrap_err().code
    }

    #[test]
    fn every_captured_sdk_request_verifies() {
        let all = captured();
        assert_eq!(all.len(), 14);
        for c in &all {
            assert_eq!(
                string_to_sign(&c.method, &c.target, &c.headers),
                c.string_to_sign,
                "{} {}",
                c.method,
                c.target
            );
            let sig = c.headers["authorization"]
                .to_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap();
            assert_eq!(sign(&Secret::new("sk"), &c.string_to_sign), sig);
            assert_eq!(
                creds()
                    .verify(&c.method, &c.target, &c.headers, c.date)
                    .unwrap(),
                "ak"
            );
            // Node's Content-MD5 is base64 of the lower-case hex digest (not RFC 1864): signed,
            // not checked against the body.
            if let Some(md5) = c.headers.get("content-md5") {
                use md5::Digest;
                let hex: String = md5::Md5::digest(c.body.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(md5.to_str().unwrap(), STANDARD.encode(hex));
            }
            // An STS token is not signed and changes nothing.
            let mut h = c.headers.clone();
            h.insert("security-token", HeaderValue::from_static("sts-token"));
            creds().verify(&c.method, &c.target, &h, c.date).unwrap();
        }
    }

    #[test]
    fn any_changed_signed_part_is_refused() {
        for c in captured() {
            let v = |m: &Method, t: &str, h: &HeaderMap| creds().verify(m, t, h, c.date);
            let other = if c.method == Method::GET {
                Method::POST
            } else {
                Method::GET
            };
            assert_eq!(
                code(v(&other, &c.target, &c.headers)),
                Code::SignatureDoesNotMatch
            );
            let target = c.target.replace("TopicA", "TopicB");
            assert_eq!(
                code(v(&c.method, &target, &c.headers)),
                Code::SignatureDoesNotMatch
            );
            // Same parameters in another order: another signature (the target is signed as sent).
            if let Some((path, q)) = c.target.split_once('?') {
                let mut parts: Vec<&str> = q.split('&').collect();
                if parts.len() > 1 {
                    parts.reverse();
                    let t = format!("{path}?{}", parts.join("&"));
                    assert_eq!(
                        code(v(&c.method, &t, &c.headers)),
                        Code::SignatureDoesNotMatch
                    );
                }
            }
            for (name, value) in [
                ("x-mq-version", "2015-06-07"),
                ("content-type", "text/plain"),
                ("content-md5", "AAAA"),
                ("x-mq-extra", "1"),
            ] {
                let mut h = c.headers.clone();
                h.insert(name, HeaderValue::from_static(value));
                assert_eq!(
                    code(v(&c.method, &c.target, &h)),
                    Code::SignatureDoesNotMatch,
                    "{name}"
                );
            }
            let mut h = c.headers.clone();
            let later = httpdate::fmt_http_date(c.date + Duration::from_secs(1));
            h.insert("date", HeaderValue::from_str(&later).unwrap());
            assert_eq!(
                code(v(&c.method, &c.target, &h)),
                Code::SignatureDoesNotMatch
            );
            let wrong = Credentials::new([("ak".to_string(), Secret::new("sk2"))]);
            assert_eq!(
                code(wrong.verify(&c.method, &c.target, &c.headers, c.date)),
                Code::SignatureDoesNotMatch
            );
        }
    }

    #[test]
    fn keys_headers_and_no_credentials() {
        let c = &captured()[0];
        let (m, t, d) = (&c.method, c.target.as_str(), c.date);
        let e = Credentials::default()
            .verify(m, t, &c.headers, d)
            .unwrap_err();
        assert_eq!(e.code, Code::AccessDenied);
        assert_eq!(e.code.status(), 403);
        let other = Credentials::new([("ak2".to_string(), Secret::new("sk"))]);
        assert_eq!(
            code(other.verify(m, t, &c.headers, d)),
            Code::InvalidAccessKeyId
        );
        let mut h = c.headers.clone();
        h.remove("authorization");
        assert_eq!(
            code(creds().verify(m, t, &h, d)),
            Code::MissingAuthorizationHeader
        );
        for bad in ["ak:sig", "MQ ak", "MQ :sig", "MQ ak:", "Basic YWs6c2s="] {
            h.insert("authorization", HeaderValue::from_static(bad));
            assert_eq!(
                code(creds().verify(m, t, &h, d)),
                Code::InvalidAuthorizationHeader,
                "{bad}"
            );
        }
        let mut h = c.headers.clone();
        h.remove("date");
        assert_eq!(code(creds().verify(m, t, &h, d)), Code::InvalidDateHeader);
        h.insert("date", HeaderValue::from_static("yesterday"));
        assert_eq!(code(creds().verify(m, t, &h, d)), Code::InvalidDateHeader);
    }

    #[test]
    fn dates_more_than_15_minutes_off_are_too_skewed() {
        let c = &captured()[8];
        let v = |now| creds().verify(&c.method, &c.target, &c.headers, now);
        let min = Duration::from_secs(60);
        v(c.date + 15 * min).unwrap();
        v(c.date - 15 * min).unwrap();
        for now in [
            c.date + 15 * min + Duration::from_secs(1),
            c.date - 16 * min,
        ] {
            let e = v(now).unwrap_err();
            assert_eq!(e.code, Code::RequestTimeTooSkewed);
            assert_eq!(e.code.status(), 403);
            assert!(e.message.contains("900s"), "{}", e.message);
        }
    }
}
