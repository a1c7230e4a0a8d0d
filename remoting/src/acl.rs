//! ACL request signing (docs/protocol.md §16): HMAC-SHA1 over the sorted extFields values and the
//! body.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::command::RemotingCommand;

/// The extFields key of the access key.
pub const ACCESS_KEY: &str = "AccessKey";
/// The extFields key of the STS security token.
pub const SECRET_TOKEN: &str = "SecurityToken";
/// The extFields key of the signature.
pub const SIGNATURE: &str = "Signature";
/// QUERY_MESSAGE's extra field that 4.9 brokers leave out of the signed content.
pub const UNIQUE_KEY_QUERY: &str = "_UNIQUE_KEY_QUERY";

/// Credentials for a broker with ACL enabled.
#[derive(Clone, PartialEq, Eq)]
pub struct AclCredentials {
    /// The access key, sent in the clear.
    pub access_key: String,
    /// The secret key signatures are made with; never sent.
    pub secret_key: String,
    /// An STS token, sent along when present.
    pub security_token: Option<String>,
}

impl std::fmt::Debug for AclCredentials {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclCredentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"***")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

/// Which broker line verifies the signature; it decides whether `_UNIQUE_KEY_QUERY` is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclFlavor {
    /// 4.9 brokers always exclude `_UNIQUE_KEY_QUERY` from the content.
    V4,
    /// 5.x brokers include it for request versions >= 401 (ours is 409).
    V5,
}

/// Java `String.compareTo` order: by UTF-16 code units.
fn java_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// The signature of `content` with `secret`: standard base64 of HMAC-SHA1.
pub fn signature(secret: &str, content: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(content);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Adds `AccessKey` (and `SecurityToken`) and `Signature` to the request's extFields.
pub fn sign(cmd: &mut RemotingCommand, creds: &AclCredentials, flavor: AclFlavor) {
    let mut fields = cmd.ext_fields.take().unwrap_or_default();
    fields.remove(SIGNATURE);
    fields.insert(ACCESS_KEY, creds.access_key.clone());
    if let Some(t) = &creds.security_token {
        fields.insert(SECRET_TOKEN, t.clone());
    }
    let mut keys: Vec<&str> = fields
        .keys()
        .filter(|k| !(flavor == AclFlavor::V4 && *k == UNIQUE_KEY_QUERY))
        .collect();
    keys.sort_by(|a, b| java_cmp(a, b));
    keys.dedup();
    let mut content: Vec<u8> = Vec::with_capacity(256 + cmd.body.len());
    for k in keys {
        // A repeated key counts once, with its last value, as in the Java map.
        content.extend_from_slice(fields.get(k).unwrap_or_default().as_bytes());
    }
    content.extend_from_slice(&cmd.body);
    fields.insert(SIGNATURE, signature(&creds.secret_key, &content));
    cmd.ext_fields = Some(fields);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::RequestCode;
    use crate::ext_fields::ExtFields;

    fn creds() -> AclCredentials {
        AclCredentials {
            access_key: "rocketmq2".into(),
            secret_key: "12345678".into(),
            security_token: None,
        }
    }

    #[test]
    fn spec_example_g() {
        let ext: ExtFields = [("topic", "TestTopic")].into_iter().collect();
        let mut cmd = RemotingCommand::request(RequestCode::GetRouteinfoByTopic, ext.clone());
        sign(&mut cmd, &creds(), AclFlavor::V4);
        assert_eq!(cmd.ext(SIGNATURE), Some("4BdPrKFCVqVwZdprdcFZ2xLMn80="));

        let mut cmd = RemotingCommand::request(RequestCode::GetRouteinfoByTopic, ext)
            .with_body(&b"{\"k\":1}"[..]);
        sign(&mut cmd, &creds(), AclFlavor::V4);
        assert_eq!(cmd.ext(SIGNATURE), Some("VJ9NV9K9vkV9IEcZ5YeG3LnSCwI="));

        let ext: ExtFields = [
            ("topic", "TestTopic"),
            ("queueId", "0"),
            ("bname", "broker-a"),
        ]
        .into_iter()
        .collect();
        let mut cmd = RemotingCommand::request(RequestCode::GetMaxOffset, ext);
        sign(&mut cmd, &creds(), AclFlavor::V5);
        assert_eq!(cmd.ext(SIGNATURE), Some("Nyc7boM/BOJoZ3+HTRL4T9sURho="));
        // re-signing replaces, never signs the old signature
        sign(&mut cmd, &creds(), AclFlavor::V5);
        assert_eq!(cmd.ext(SIGNATURE), Some("Nyc7boM/BOJoZ3+HTRL4T9sURho="));
    }

    #[test]
    fn unique_key_query_excluded_for_v4_only() {
        let ext: ExtFields = [("topic", "TestTopic"), (UNIQUE_KEY_QUERY, "true")]
            .into_iter()
            .collect();
        let mut v4 = RemotingCommand::request(RequestCode::QueryMessage, ext.clone());
        sign(&mut v4, &creds(), AclFlavor::V4);
        assert_eq!(v4.ext(SIGNATURE), Some("4BdPrKFCVqVwZdprdcFZ2xLMn80="));
        let mut v5 = RemotingCommand::request(RequestCode::QueryMessage, ext);
        sign(&mut v5, &creds(), AclFlavor::V5);
        assert_ne!(v5.ext(SIGNATURE), v4.ext(SIGNATURE));
        assert!(format!("{:?}", creds()).contains("***"));
    }
}
