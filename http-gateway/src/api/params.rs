//! MQ-Proxy's request parameters: the query string, then the body (a form or a JSON object) on
//! top, a later value of a name replacing an earlier one.
//!
//! Read on every request, so built without a map or a copy per value: a form value that needs
//! no percent-decoding (a plain message body) is a slice of the request's bytes and goes on to
//! the broker as is. Decoding follows the WHATWG form rules, as `form_urlencoded` does.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use serde_json::Value;

use super::{bad, ops, ApiError, BODY_LIMIT};
use crate::error::GatewayError;

/// One value: text (a query or form value, or a JSON string), or any other JSON value.
#[derive(Debug, Clone)]
enum Param {
    /// Valid UTF-8: built only from `str`s and `String`s.
    Text(Bytes),
    Json(Value),
}

/// A parameter as the request gave it.
#[derive(Debug, Clone, Copy)]
pub enum ParamRef<'a> {
    /// From the query string or a form, or a JSON string.
    Text(&'a str),
    /// A JSON value other than a string.
    Json(&'a Value),
}

/// Request parameters, with the headers and the peer address for what the API reads from them.
pub struct Params {
    /// In arrival order; lookups take the last of a name. A handful per request: a scan beats
    /// hashing.
    values: Vec<(Bytes, Param)>,
    /// The request's headers (client address, cookies, authorization, forwarding).
    pub headers: HeaderMap,
    /// The TCP peer, when the server was started with connect info.
    pub peer: Option<SocketAddr>,
    /// Where the access log learns about the request, when it is on.
    note: Option<ops::AccessNote>,
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(mut req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mut values = Vec::new();
        if let Some(q) = req.uri().query().filter(|q| !q.is_empty()) {
            parse_form(&Bytes::copy_from_slice(q.as_bytes()), &mut values);
        }
        // The body extractor needs no headers: take them rather than copy them.
        let headers = std::mem::take(req.headers_mut());
        let note = req.extensions().get::<ops::AccessNote>().cloned();
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        // In the API's envelope, not axum's plain-text rejection.
        let body = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                bad(format!(
                    "request body too large: the limit is {BODY_LIMIT} bytes"
                ))
            } else {
                bad(format!("cannot read the request body: {}", r.body_text()))
            }
        })?;
        if !body.is_empty() {
            let json = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| {
                    c.get(..16)
                        .is_some_and(|p| p.eq_ignore_ascii_case("application/json"))
                });
            if json {
                parse_json(&body, &mut values)?;
            } else {
                parse_form(&body, &mut values);
            }
        }
        let params = Params {
            values,
            headers,
            peer,
            note,
        };
        if let Some(n) = &params.note {
            n.fill(|k| params.opt(k));
        }
        Ok(params)
    }
}

/// `a=1&b=2` pairs of `src`, percent- and `+`-decoded (invalid UTF-8 replaced, as browsers
/// do). Never fails: a stray `%` stays as it is.
fn parse_form(src: &Bytes, into: &mut Vec<(Bytes, Param)>) {
    for pair in src.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match memchr::memchr(b'=', pair) {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[..0]),
        };
        into.push((decode(src, k), Param::Text(decode(src, v))));
    }
}

/// One form component of `src`: the bytes themselves when there is nothing to decode and they
/// are UTF-8 (a plain message: a SIMD scan rather than a byte loop), else `+` as a space and
/// `%XX` escapes decoded.
fn decode(src: &Bytes, raw: &[u8]) -> Bytes {
    if memchr::memchr2(b'%', b'+', raw).is_none() && std::str::from_utf8(raw).is_ok() {
        return share(src, raw);
    }
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&spaced).collect();
    Bytes::from(String::from_utf8_lossy(&bytes).into_owned())
}

/// The members of a JSON object body.
fn parse_json(src: &[u8], into: &mut Vec<(Bytes, Param)>) -> Result<(), GatewayError> {
    let v: Value =
        serde_json::from_slice(src).map_err(|e| bad(format!("malformed JSON body: {e}")))?;
    let Value::Object(m) = v else {
        return Err(bad("the JSON body must be an object"));
    };
    for (k, v) in m {
        let v = match v {
            Value::String(s) => Param::Text(Bytes::from(s)),
            other => Param::Json(other),
        };
        into.push((Bytes::from(k), v));
    }
    Ok(())
}

/// `part` as `Bytes`: a slice of `src` when it lies in `src` (as the parts `parse_form` splits
/// off do), else a copy.
fn share(src: &Bytes, part: &[u8]) -> Bytes {
    let start = src.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    if !part.is_empty() && p >= start && p + part.len() <= start + src.len() {
        src.slice(p - start..p - start + part.len())
    } else {
        Bytes::copy_from_slice(part)
    }
}

/// The text of a [`Param::Text`], which holds UTF-8 by construction.
fn text(b: &Bytes) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

impl Params {
    fn find(&self, k: &str) -> Option<&Param> {
        self.values
            .iter()
            .rev()
            .find(|(key, _)| key.as_ref() == k.as_bytes())
            .map(|(_, v)| v)
    }

    /// The value of `k` as the request gave it.
    pub fn get(&self, k: &str) -> Option<ParamRef<'_>> {
        Some(match self.find(k)? {
            Param::Text(b) => ParamRef::Text(text(b)),
            Param::Json(v) => ParamRef::Json(v),
        })
    }

    /// `k` as text: strings as is, other JSON values as their JSON text; `None` if absent or
    /// null.
    pub fn str(&self, k: &str) -> Option<String> {
        match self.find(k)? {
            Param::Text(b) => Some(text(b).to_owned()),
            Param::Json(Value::Null) => None,
            Param::Json(other) => Some(other.to_string()),
        }
    }

    /// A non-empty string parameter, if given.
    pub fn opt(&self, k: &str) -> Option<String> {
        self.str(k).filter(|s| !s.is_empty())
    }

    /// A non-empty string parameter, or a 400 naming it.
    pub fn required(&self, k: &str) -> Result<String, GatewayError> {
        self.opt(k).ok_or_else(|| bad(format!("{k} is required")))
    }

    /// An integer parameter (surrounding spaces allowed); `None` if absent or blank, a 400 if not
    /// an integer.
    pub fn int(&self, k: &str) -> Result<Option<i64>, GatewayError> {
        match self.str(k).filter(|s| !s.trim().is_empty()) {
            None => Ok(None),
            Some(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| bad(format!("{k} must be an integer, not {s:?}"))),
        }
    }

    /// `0`/`1` flags (MQCloud's config call).
    pub fn bit(&self, k: &str) -> Result<Option<bool>, GatewayError> {
        match self.int(k)? {
            None => Ok(None),
            Some(0) => Ok(Some(false)),
            Some(1) => Ok(Some(true)),
            Some(v) => Err(bad(format!("{k} must be 0 or 1, not {v}"))),
        }
    }

    /// A boolean switch: `true`, `1` or `yes` is on; anything else, or absence, is off.
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.str(k).as_deref(), Some("true" | "1" | "yes"))
    }

    /// A message body: a string as is (sharing the request's bytes), any other JSON value as its
    /// JSON text (the guide's messages are "json or string").
    pub fn body(&self, k: &str) -> Option<Bytes> {
        match self.find(k)? {
            Param::Text(b) => Some(b.clone()),
            Param::Json(Value::Null) => None,
            Param::Json(other) => Some(Bytes::from(other.to_string())),
        }
    }

    /// The value of cookie `name` from the `Cookie` headers.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    }

    /// The caller's address: X-Forwarded-For, X-Real-IP, then the peer.
    pub fn client_ip(&self) -> Option<String> {
        let first = |h: &str| {
            self.headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("unknown"))
        };
        first("x-forwarded-for")
            .or_else(|| first("x-real-ip"))
            .or_else(|| self.peer.map(|p| p.ip().to_string()))
    }

    /// Whether the caller reached us over HTTPS: the gateway speaks plain HTTP, so only a TLS
    /// proxy in front of it can say so (`X-Forwarded-Proto`, or `Forwarded: proto=https`).
    pub fn https(&self) -> bool {
        let has = |h: &str, pred: &dyn Fn(&str) -> bool| {
            self.headers
                .get_all(h)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(pred)
        };
        has("x-forwarded-proto", &|v| {
            v.split(',')
                .next()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        }) || has("forwarded", &|v| {
            v.split([';', ','])
                .any(|kv| kv.trim().eq_ignore_ascii_case("proto=https"))
        })
    }

    /// Tells the access log the requestId the answer hands out.
    pub fn note_request_id(&self, request_id: Option<&str>) {
        if let (Some(n), Some(r)) = (&self.note, request_id) {
            n.set_request_id(r);
        }
    }

    /// The `Authorization` header, if present and ASCII.
    pub fn authorization(&self) -> Option<&str> {
        self.headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
    }

    /// The caller's token: `Authorization: Bearer <token>`, else the `token` parameter (query,
    /// form or JSON), as the guide's jQuery clients can send either.
    pub fn token(&self) -> Option<String> {
        let param = match self.find("token") {
            Some(Param::Text(b)) => Some(text(b)),
            _ => None,
        };
        crate::token::presented(self.authorization(), param).map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    async fn params(uri: &str, ctype: &str, body: &'static str) -> Result<Params, ApiError> {
        let req = Request::builder()
            .method("POST")
            .uri(uri)
            .header(header::CONTENT_TYPE, ctype)
            .body(Body::from(body))
            .unwrap();
        Params::from_request(req, &()).await
    }

    const FORM: &str = "application/x-www-form-urlencoded";

    #[tokio::test]
    async fn the_body_overrides_the_query_and_a_later_pair_an_earlier_one() {
        let p = params("/x?a=q&b=q&b=q2", FORM, "a=f&c=f1&c=f2")
            .await
            .unwrap();
        assert_eq!(p.str("a").as_deref(), Some("f"));
        assert_eq!(p.str("b").as_deref(), Some("q2"));
        assert_eq!(p.str("c").as_deref(), Some("f2"));
        assert_eq!(p.str("d"), None);
    }

    #[tokio::test]
    async fn form_values_are_decoded_and_plain_ones_share_the_body() {
        let p = params("/x", FORM, "m=a+b%20c%E4%B8%AD&plain=xyz&bad=%ZZ&u=%FF")
            .await
            .unwrap();
        assert_eq!(p.str("m").as_deref(), Some("a b c中"));
        assert_eq!(p.body("plain").unwrap(), Bytes::from_static(b"xyz"));
        assert_eq!(p.str("bad").as_deref(), Some("%ZZ"));
        assert_eq!(p.str("u").as_deref(), Some("\u{fffd}"));
        let p = params("/x?=v&k&k2=&&x=a=b&y=a=b+c", FORM, "")
            .await
            .unwrap();
        assert_eq!(p.str("").as_deref(), Some("v"));
        assert_eq!(p.str("k").as_deref(), Some(""));
        assert_eq!(p.str("k2").as_deref(), Some(""));
        assert_eq!(p.str("x").as_deref(), Some("a=b"));
        assert_eq!(p.str("y").as_deref(), Some("a=b c"));
        let p = params("/x", FORM, "k%3Dx=1&m=%26%3D").await.unwrap();
        assert_eq!(p.str("k=x").as_deref(), Some("1"));
        assert_eq!(p.str("m").as_deref(), Some("&="));
    }

    #[tokio::test]
    async fn json_members_keep_their_types() {
        let p = params(
            "/x?producer=q",
            "Application/JSON; charset=utf-8",
            r#"{"producer":"p","n":5,"o":{"k":1},"z":null,"l":[1]}"#,
        )
        .await
        .unwrap();
        assert_eq!(p.str("producer").as_deref(), Some("p"));
        assert_eq!(p.int("n").unwrap(), Some(5));
        assert_eq!(p.body("o").unwrap(), Bytes::from_static(br#"{"k":1}"#));
        assert_eq!(p.str("z"), None);
        assert!(matches!(p.get("l"), Some(ParamRef::Json(Value::Array(_)))));
        assert!(matches!(p.get("producer"), Some(ParamRef::Text("p"))));
    }

    #[tokio::test]
    async fn a_json_body_that_is_not_an_object_is_refused() {
        for body in ["{not json", "[1,2]", "\"s\""] {
            let e = params("/x", "application/json", body).await.err();
            assert!(
                matches!(e, Some(ApiError::Gateway(GatewayError::BadRequest(_)))),
                "{body}"
            );
        }
    }

    #[test]
    fn forms_decode_as_serde_urlencoded_does() {
        for form in [
            "a=1&b=2",
            "a=%E4%B8%AD+x&&=&b",
            "k=%zz%4&%FF%FE=%C3%28",
            "x=a=b+c&y=%2B%26%3D",
            "&&&",
            "m=plain-text.with~chars*and!marks",
            "e=caf\u{e9}&f=\u{1F600}",
        ] {
            let src = Bytes::copy_from_slice(form.as_bytes());
            let mut ours = Vec::new();
            parse_form(&src, &mut ours);
            let ours: Vec<(String, String)> = ours
                .iter()
                .map(|(k, v)| match v {
                    Param::Text(t) => (text(k).to_owned(), text(t).to_owned()),
                    Param::Json(_) => unreachable!(),
                })
                .collect();
            let theirs: Vec<(String, String)> = serde_urlencoded::from_bytes(&src).unwrap();
            assert_eq!(ours, theirs, "{form}");
        }
    }

    #[test]
    fn share_copies_text_that_is_not_in_the_source() {
        let src = Bytes::from_static(b"abc");
        assert_eq!(share(&src, b"zz"), Bytes::from_static(b"zz"));
        assert_eq!(share(&src, &src[1..]), &b"bc"[..]);
        assert_eq!(
            share(&src, &src[1..]).as_ptr(),
            src[1..].as_ptr(),
            "no copy"
        );
        assert_eq!(share(&src, b""), Bytes::new());
    }
}
