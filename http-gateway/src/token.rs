//! Shared-secret tokens: the per-producer and per-consumer data-plane tokens of the MQ-Proxy API
//! and the admin token. One comparison for all of them, in constant time: both sides are
//! hashed first, so neither the content nor the length of the secret shows in the timing.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// A configured secret; never printed.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 20],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

fn digest(s: &str) -> [u8; 20] {
    Sha1::digest(s.as_bytes()).into()
}

impl Token {
    /// The token `secret`; `None` for an empty one (no token: the call is open).
    pub fn new(secret: &str) -> Option<Self> {
        (!secret.is_empty()).then(|| Token {
            digest: digest(secret),
        })
    }

    /// Whether `given` is this token; a missing one never is.
    pub fn matches(&self, given: Option<&str>) -> bool {
        let Some(given) = given else {
            return false;
        };
        bool::from(self.digest.ct_eq(&digest(given)))
    }
}

/// The token of a request: `Authorization: Bearer <token>` (scheme in any case), else the
/// `token` parameter.
pub fn presented<'a>(authorization: Option<&'a str>, param: Option<&'a str>) -> Option<&'a str> {
    authorization
        .and_then(|a| {
            let (scheme, rest) = a.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .or(param)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_same_secret() {
        let t = Token::new("s3cret").unwrap();
        assert!(t.matches(Some("s3cret")));
        for wrong in ["s3cre", "s3cret ", "S3cret", "", "s3cret-and-more"] {
            assert!(!t.matches(Some(wrong)), "{wrong:?}");
        }
        assert!(!t.matches(None));
        assert!(Token::new("").is_none());
        assert_eq!(format!("{t:?}"), "Token(..)");
    }

    #[test]
    fn bearer_header_first_then_parameter() {
        assert_eq!(presented(Some("Bearer abc"), Some("p")), Some("abc"));
        assert_eq!(presented(Some("bearer  abc "), None), Some("abc"));
        assert_eq!(presented(Some("Basic abc"), Some("p")), Some("p"));
        assert_eq!(presented(None, Some("p")), Some("p"));
        assert_eq!(presented(None, None), None);
    }
}
