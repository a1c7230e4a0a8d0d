//! The API's XML: request bodies read namespace-agnostically (the SDKs send the root with
//! `xmlns=".../doc/v1/"`, Go without any), text escaped or in CDATA (or both); answers written
//! in the namespace `http://mq.aliyuncs.com/doc/v1` with one text node per element (Python reads
//! only an element's first child node).

use quick_xml::escape::partial_escape;
use quick_xml::events::Event;
use quick_xml::Reader;

use super::error::{invalid_argument, malformed_xml, AliyunError};

/// The namespace of every document the gateway writes.
pub const NAMESPACE: &str = "http://mq.aliyuncs.com/doc/v1";
const DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// Most handles one ack takes.
pub const MAX_HANDLES: usize = 16;

/// A root element and its children as `(local name, text)`, in document order.
#[derive(Debug, PartialEq, Eq)]
struct Flat {
    root: String,
    children: Vec<(String, String)>,
}

/// Reads `<Root><A>text</A><B><![CDATA[..]]></B>...</Root>`: exactly two levels, children with
/// text only. Anything else is `MalformedXML`.
fn parse_flat(body: &[u8]) -> Result<Flat, AliyunError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| malformed_xml(format!("The XML you provided is not UTF-8: {e}.")))?;
    let mut reader = Reader::from_str(text);
    let bad = |m: String| malformed_xml(format!("The XML you provided was not well-formed: {m}."));
    let mut root: Option<String> = None;
    let mut root_closed = false;
    // The child being read: its name and text so far.
    let mut child: Option<(String, String)> = None;
    let mut children = Vec::new();
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| bad(format!("{e} at byte {}", reader.buffer_position())))?;
        match ev {
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if root_closed {
                    return Err(bad(format!("element <{name}> after the root element")));
                }
                match (&root, &child) {
                    (None, _) => root = Some(name),
                    (Some(_), None) => child = Some((name, String::new())),
                    (Some(_), Some((c, _))) => {
                        return Err(bad(format!("element <{name}> inside <{c}>")));
                    }
                }
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if root_closed {
                    return Err(bad(format!("element <{name}> after the root element")));
                }
                match (&root, &child) {
                    (None, _) => {
                        root = Some(name);
                        root_closed = true;
                    }
                    (Some(_), None) => children.push((name, String::new())),
                    (Some(_), Some((c, _))) => {
                        return Err(bad(format!("element <{name}> inside <{c}>")));
                    }
                }
            }
            Event::End(_) => {
                // The reader checks that end names match their start.
                if let Some(c) = child.take() {
                    children.push(c);
                } else {
                    root_closed = true;
                }
            }
            Event::Text(t) => {
                let s = t
                    .unescape()
                    .map_err(|e| bad(format!("bad character reference: {e}")))?;
                match &mut child {
                    Some((_, acc)) => acc.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err(bad("text outside the elements".into())),
                }
            }
            Event::CData(c) => {
                let s = std::str::from_utf8(&c)
                    .map_err(|e| bad(format!("CDATA is not UTF-8: {e}")))?
                    .to_owned();
                match &mut child {
                    Some((_, acc)) => acc.push_str(&s),
                    None => return Err(bad("CDATA outside the elements".into())),
                }
            }
            Event::Eof => break,
        }
    }
    match root {
        Some(root) if root_closed => Ok(Flat { root, children }),
        Some(root) => Err(bad(format!("<{root}> is not closed"))),
        None => Err(bad("no root element".into())),
    }
}

/// The body of PublishMessage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishRequest {
    /// `MessageBody`, unescaped; never empty.
    pub body: String,
    /// `MessageTag`, unvalidated; None if absent or empty.
    pub tag: Option<String>,
    /// The raw `Properties` text, `k:v|k:v|`; None if absent or empty.
    pub properties: Option<String>,
}

/// Reads a PublishMessage body, with or without namespace, escaped or CDATA, children in any
/// order (unknown ones ignored). `MalformedXML` for bad XML, another root than `<Message>` or a
/// repeated child; `InvalidArgument` for no body or a missing or empty `<MessageBody>`.
pub fn parse_publish(body: &[u8]) -> Result<PublishRequest, AliyunError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid_argument(
            "The request has no body: a <Message> with a <MessageBody> is required.",
        ));
    }
    let flat = parse_flat(body)?;
    if flat.root != "Message" {
        return Err(malformed_xml(format!(
            "The root element must be <Message>, not <{}>.",
            flat.root
        )));
    }
    let mut body = None;
    let mut tag = None;
    let mut properties = None;
    for (name, text) in flat.children {
        let slot = match name.as_str() {
            "MessageBody" => &mut body,
            "MessageTag" => &mut tag,
            "Properties" => &mut properties,
            // Fields of newer API versions are ignored, as Aliyun does.
            _ => continue,
        };
        if slot.replace(text).is_some() {
            return Err(malformed_xml(format!(
                "<{name}> appears twice in <Message>."
            )));
        }
    }
    let body = body.ok_or_else(|| {
        invalid_argument("The XML you provided did not validate: <MessageBody> is missing.")
    })?;
    if body.is_empty() {
        return Err(invalid_argument("The MessageBody is empty."));
    }
    Ok(PublishRequest {
        body,
        tag: tag.filter(|t| !t.is_empty()),
        properties: properties.filter(|p| !p.is_empty()),
    })
}

/// The body of AckMessage: 1..=16 receipt handles, as sent (unvalidated).
pub fn parse_receipt_handles(body: &[u8]) -> Result<Vec<String>, AliyunError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid_argument(
            "The request has no body: <ReceiptHandles> with 1 to 16 <ReceiptHandle> is required.",
        ));
    }
    let flat = parse_flat(body)?;
    if flat.root != "ReceiptHandles" {
        return Err(malformed_xml(format!(
            "The root element must be <ReceiptHandles>, not <{}>.",
            flat.root
        )));
    }
    let handles: Vec<String> = flat
        .children
        .into_iter()
        .filter(|(n, _)| n == "ReceiptHandle")
        .map(|(_, h)| h.trim().to_owned())
        .collect();
    if handles.is_empty() || handles.len() > MAX_HANDLES {
        return Err(invalid_argument(format!(
            "The number of ReceiptHandle should be between 1 and {MAX_HANDLES}, not {}.",
            handles.len()
        )));
    }
    Ok(handles)
}

/// Text for an element: escaped, and characters XML 1.0 cannot carry (most C0 controls)
/// replaced by U+FFFD, so the document always parses.
fn text(s: &str) -> String {
    let allowed =
        |c: char| matches!(c, '\t' | '\n' | '\r') || c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}';
    if s.chars().all(allowed) {
        partial_escape(s).into_owned()
    } else {
        let clean: String = s
            .chars()
            .map(|c| if allowed(c) { c } else { '\u{FFFD}' })
            .collect();
        partial_escape(clean.as_str()).into_owned()
    }
}

fn element(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&text(value));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// `<Error>` with the four children Python requires (all present even when empty).
pub fn error_document(code: &str, message: &str, request_id: &str, host_id: &str) -> String {
    let mut s = format!(r#"{DECL}<Error xmlns="{NAMESPACE}">"#);
    element(&mut s, "Code", code);
    element(&mut s, "Message", message);
    element(&mut s, "RequestId", request_id);
    element(&mut s, "HostId", host_id);
    s.push_str("</Error>");
    s
}

/// One failed handle of an ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckFailure {
    /// `ErrorCode`: `ReceiptHandleError` (malformed, foreign or unknown handle) or
    /// `MessageNotExist` (the handle expired).
    pub code: String,
    /// `ErrorMessage`, for people.
    pub message: String,
    /// `ReceiptHandle`: the handle as sent.
    pub handle: String,
}

/// `<Errors>` of a partly failed ack: exactly ErrorCode, ErrorMessage, ReceiptHandle per
/// `<Error>`, each non-empty (Python drops empty elements and then rejects the answer).
pub fn ack_errors_document(failures: &[AckFailure]) -> String {
    let mut s = format!(r#"{DECL}<Errors xmlns="{NAMESPACE}">"#);
    for f in failures {
        s.push_str("<Error>");
        element(&mut s, "ErrorCode", non_empty(&f.code));
        element(&mut s, "ErrorMessage", non_empty(&f.message));
        element(&mut s, "ReceiptHandle", non_empty(&f.handle));
        s.push_str("</Error>");
    }
    s.push_str("</Errors>");
    s
}

/// Elements of `body` as `(path, text)` with `path` the local names from the root down, e.g.
/// `Errors/Error/ErrorCode`: enough to read the gateway's own answers back (forwarded acks).
fn leaves(body: &[u8]) -> Option<Vec<(String, String)>> {
    let mut reader = Reader::from_str(std::str::from_utf8(body).ok()?);
    let mut path: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut text = String::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => {
                path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                text.clear();
            }
            Event::Text(t) => text.push_str(&t.unescape().ok()?),
            Event::CData(c) => text.push_str(std::str::from_utf8(&c).ok()?),
            Event::End(_) => {
                out.push((path.join("/"), std::mem::take(&mut text)));
                path.pop();
            }
            Event::Eof => return Some(out),
            _ => {}
        }
    }
}

/// Reads an [`ack_errors_document`] back; `None` if `body` is not one.
pub fn parse_ack_errors(body: &[u8]) -> Option<Vec<AckFailure>> {
    let mut out = Vec::new();
    let mut cur = AckFailure {
        code: String::new(),
        message: String::new(),
        handle: String::new(),
    };
    let mut root_seen = false;
    for (path, text) in leaves(body)? {
        match path.as_str() {
            "Errors/Error/ErrorCode" => cur.code = text,
            "Errors/Error/ErrorMessage" => cur.message = text,
            "Errors/Error/ReceiptHandle" => cur.handle = text,
            "Errors/Error" => out.push(std::mem::replace(
                &mut cur,
                AckFailure {
                    code: String::new(),
                    message: String::new(),
                    handle: String::new(),
                },
            )),
            "Errors" => root_seen = true,
            _ => {}
        }
    }
    root_seen.then_some(out)
}

/// `(Code, Message)` of an [`error_document`]; `None` if `body` is not one.
pub fn parse_error(body: &[u8]) -> Option<(String, String)> {
    let leaves = leaves(body)?;
    let find = |p: &str| leaves.iter().find(|(k, _)| k == p).map(|(_, v)| v.clone());
    Some((
        find("Error/Code")?,
        find("Error/Message").unwrap_or_default(),
    ))
}

fn non_empty(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// The answer of PublishMessage.
pub fn publish_document(message_id: &str, body_md5: &str) -> String {
    let mut s = format!(r#"{DECL}<Message xmlns="{NAMESPACE}">"#);
    element(&mut s, "MessageId", message_id);
    element(&mut s, "MessageBodyMD5", body_md5);
    s.push_str("</Message>");
    s
}

/// One message of a ConsumeMessage answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumedMessage {
    /// `MessageId`: the id the publish answered.
    pub message_id: String,
    /// `ReceiptHandle`: acks this delivery.
    pub receipt_handle: String,
    /// `MessageBodyMD5`: upper-case hex MD5 of the body.
    pub body_md5: String,
    /// `MessageBody`, as text.
    pub body: String,
    /// `PublishTime`: when the broker stored the message, ms since the epoch.
    pub publish_time: i64,
    /// `NextConsumeTime`: when the message comes again unless acked, ms since the epoch.
    pub next_consume_time: i64,
    /// `FirstConsumeTime`: when it was first handed out, ms since the epoch.
    pub first_consume_time: i64,
    /// `ConsumedTimes`: 1 on the first delivery.
    pub consumed_times: u32,
    /// `MessageTag`; None (or empty): the element is left out.
    pub tag: Option<String>,
    /// `k:v|k:v|` as [`super::props::encode`] writes it; None (or empty): the element is left
    /// out.
    pub properties: Option<String>,
}

/// The answer of ConsumeMessage. Never call with no messages: an empty `<Messages/>` crashes
/// Node and Java; nothing to hand out is `MessageNotExist`.
pub fn messages_document(messages: &[ConsumedMessage]) -> String {
    debug_assert!(!messages.is_empty());
    let mut s = format!(r#"{DECL}<Messages xmlns="{NAMESPACE}">"#);
    for m in messages {
        s.push_str("<Message>");
        element(&mut s, "MessageId", &m.message_id);
        element(&mut s, "ReceiptHandle", &m.receipt_handle);
        element(&mut s, "MessageBodyMD5", &m.body_md5);
        element(&mut s, "MessageBody", &m.body);
        element(&mut s, "PublishTime", &m.publish_time.to_string());
        element(&mut s, "NextConsumeTime", &m.next_consume_time.to_string());
        element(
            &mut s,
            "FirstConsumeTime",
            &m.first_consume_time.to_string(),
        );
        element(&mut s, "ConsumedTimes", &m.consumed_times.to_string());
        if let Some(t) = m.tag.as_deref().filter(|t| !t.is_empty()) {
            element(&mut s, "MessageTag", t);
        }
        if let Some(p) = m.properties.as_deref().filter(|p| !p.is_empty()) {
            element(&mut s, "Properties", p);
        }
        s.push_str("</Message>");
    }
    s.push_str("</Messages>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::aliyun::error::Code;

    const CAPTURED: &str = include_str!("../../../tests/fixtures/aliyun/sdk-requests.jsonl");

    fn captured_bodies(method: &str) -> Vec<String> {
        CAPTURED
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["method"] == method)
            .map(|v| v["body"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn captured_publish_bodies_parse() {
        let bodies = captured_bodies("POST");
        assert_eq!(bodies.len(), 3);
        // Python (escaped text, trailing '|'), Python without ns, Node (CDATA, no trailing '|').
        let python = parse_publish(bodies[0].as_bytes()).unwrap();
        assert_eq!(python.body, "hello <world> & 中文");
        assert_eq!(python.tag.as_deref(), Some("TagA"));
        assert_eq!(python.properties.as_deref(), Some("KEYS:k1|a:b|"));
        let node = parse_publish(bodies[2].as_bytes()).unwrap();
        assert_eq!(node.body, python.body);
        assert_eq!(node.tag, python.tag);
        assert_eq!(node.properties.as_deref(), Some("KEYS:k1|a:b"));
        parse_publish(bodies[1].as_bytes()).unwrap();
    }

    #[test]
    fn captured_ack_bodies_parse() {
        let bodies = captured_bodies("DELETE");
        assert_eq!(bodies.len(), 5);
        let h = parse_receipt_handles(bodies[0].as_bytes()).unwrap();
        assert_eq!(
            h,
            vec![
                "RH-1795312424670-0",
                "RH-1795312424670-1",
                "RH-1795312424670-2"
            ]
        );
        for b in &bodies {
            assert!(!parse_receipt_handles(b.as_bytes()).unwrap().is_empty());
        }
    }

    #[test]
    fn go_shape_mixed_text_and_unknown_children() {
        let go = "<Message><MessageBody>a &amp; b</MessageBody><MessageTag>T</MessageTag><Properties>k:v|</Properties></Message>";
        let p = parse_publish(go.as_bytes()).unwrap();
        assert_eq!((p.body.as_str(), p.tag.as_deref()), ("a & b", Some("T")));
        let mixed = "<Message xmlns='x'>\n <MessageBody>a<![CDATA[<b>]]>&#x4e2d;</MessageBody>\n <Future>1</Future><MessageTag/></Message>";
        let p = parse_publish(mixed.as_bytes()).unwrap();
        assert_eq!(p.body, "a<b>中");
        assert_eq!(p.tag, None);
        let prefixed = "<mq:Message xmlns:mq='http://mq.aliyuncs.com/doc/v1/'><mq:MessageBody>x</mq:MessageBody></mq:Message>";
        assert_eq!(parse_publish(prefixed.as_bytes()).unwrap().body, "x");
        let go_ack = "<ReceiptHandles><ReceiptHandle><![CDATA[h1]]></ReceiptHandle><ReceiptHandle>h2</ReceiptHandle></ReceiptHandles>";
        assert_eq!(
            parse_receipt_handles(go_ack.as_bytes()).unwrap(),
            vec!["h1", "h2"]
        );
    }

    #[test]
    fn malformed_and_invalid_bodies() {
        let code = |b: &str| parse_publish(b.as_bytes()).unwrap_err().code;
        for bad in [
            "<Message><MessageBody>x</MessageBody>",
            "<Message><MessageBody>x</Body></Message>",
            "<Message><MessageBody><b>x</b></MessageBody></Message>",
            "<Message><MessageBody>x</MessageBody><MessageBody>y</MessageBody></Message>",
            "<Messages><MessageBody>x</MessageBody></Messages>",
            "<Message><MessageBody>x</MessageBody></Message><Message/>",
            "<Message>loose<MessageBody>x</MessageBody></Message>",
            "<Message><MessageBody>&bogus;</MessageBody></Message>",
            "not xml",
        ] {
            assert_eq!(code(bad), Code::MalformedXML, "{bad}");
        }
        assert_eq!(
            parse_publish(&[b'<', 0xff, b'>']).unwrap_err().code,
            Code::MalformedXML
        );
        for invalid in [
            "",
            "  ",
            "<Message/>",
            "<Message><MessageTag>t</MessageTag></Message>",
            "<Message><MessageBody></MessageBody></Message>",
            "<Message><MessageBody><![CDATA[]]></MessageBody></Message>",
        ] {
            assert_eq!(code(invalid), Code::InvalidArgument, "{invalid:?}");
        }
        let hcode = |b: &str| parse_receipt_handles(b.as_bytes()).unwrap_err().code;
        assert_eq!(
            hcode("<ReceiptHandles></ReceiptHandles>"),
            Code::InvalidArgument
        );
        assert_eq!(hcode("<ReceiptHandles/>"), Code::InvalidArgument);
        let many: String = (0..17)
            .map(|i| format!("<ReceiptHandle>h{i}</ReceiptHandle>"))
            .collect();
        assert_eq!(
            hcode(&format!("<ReceiptHandles>{many}</ReceiptHandles>")),
            Code::InvalidArgument
        );
        let sixteen: String = (0..16)
            .map(|i| format!("<ReceiptHandle>h{i}</ReceiptHandle>"))
            .collect();
        assert_eq!(
            parse_receipt_handles(format!("<ReceiptHandles>{sixteen}</ReceiptHandles>").as_bytes())
                .unwrap()
                .len(),
            16
        );
        assert_eq!(
            hcode("<Message><ReceiptHandle>h</ReceiptHandle></Message>"),
            Code::MalformedXML
        );
    }

    /// Parses a written document back: root name with its namespace, and its children.
    fn reparse(doc: &str) -> (String, Vec<(String, String)>) {
        assert!(doc.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?>"#));
        let flat = parse_flat(doc.as_bytes()).unwrap();
        (flat.root, flat.children)
    }

    #[test]
    fn error_document_is_exact() {
        let doc = error_document("MessageNotExist", "Message not exist.", "RID", "http://h:1");
        assert_eq!(
            doc,
            r#"<?xml version="1.0" encoding="UTF-8"?><Error xmlns="http://mq.aliyuncs.com/doc/v1"><Code>MessageNotExist</Code><Message>Message not exist.</Message><RequestId>RID</RequestId><HostId>http://h:1</HostId></Error>"#
        );
        // All four children are written even when empty, and text is escaped.
        let (root, children) = reparse(&error_document("C", "a < b & \u{1}", "", ""));
        assert_eq!(root, "Error");
        let names: Vec<&str> = children.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Code", "Message", "RequestId", "HostId"]);
        assert_eq!(children[1].1, "a < b & \u{FFFD}");
    }

    #[test]
    fn ack_errors_and_publish_and_messages_documents() {
        let doc = ack_errors_document(&[AckFailure {
            code: "ReceiptHandleError".into(),
            message: "".into(),
            handle: "h<1>".into(),
        }]);
        assert!(doc.contains(r#"<Errors xmlns="http://mq.aliyuncs.com/doc/v1"><Error><ErrorCode>ReceiptHandleError</ErrorCode><ErrorMessage>-</ErrorMessage><ReceiptHandle>h&lt;1&gt;</ReceiptHandle></Error></Errors>"#), "{doc}");
        // Read back, as a forwarding instance reads the owner's answer.
        let two = [
            AckFailure {
                code: "MessageNotExist".into(),
                message: "gone".into(),
                handle: "h<1>".into(),
            },
            AckFailure {
                code: "ReceiptHandleError".into(),
                message: "bad".into(),
                handle: "h2".into(),
            },
        ];
        assert_eq!(
            parse_ack_errors(ack_errors_document(&two).as_bytes()).unwrap(),
            two
        );
        assert_eq!(parse_ack_errors(b"<Error><Code>X</Code></Error>"), None);
        assert_eq!(parse_ack_errors(b"not xml <"), None);
        assert_eq!(
            parse_error(error_document("AccessDenied", "no", "r", "h").as_bytes()),
            Some(("AccessDenied".into(), "no".into()))
        );
        let doc = publish_document("ID1", "ABC");
        assert!(doc.ends_with(r#"<Message xmlns="http://mq.aliyuncs.com/doc/v1"><MessageId>ID1</MessageId><MessageBodyMD5>ABC</MessageBodyMD5></Message>"#), "{doc}");
        let m = ConsumedMessage {
            message_id: "ID".into(),
            receipt_handle: "RH".into(),
            body_md5: "MD5".into(),
            body: "hello <world> & 中文".into(),
            publish_time: 1,
            next_consume_time: 3,
            first_consume_time: 2,
            consumed_times: 1,
            tag: Some("TagA".into()),
            properties: Some("KEYS:k|a:b|".into()),
        };
        let doc = messages_document(&[
            m.clone(),
            ConsumedMessage {
                tag: None,
                properties: None,
                ..m
            },
        ]);
        assert!(doc.contains(r#"<Messages xmlns="http://mq.aliyuncs.com/doc/v1"><Message><MessageId>ID</MessageId><ReceiptHandle>RH</ReceiptHandle><MessageBodyMD5>MD5</MessageBodyMD5><MessageBody>hello &lt;world&gt; &amp; 中文</MessageBody><PublishTime>1</PublishTime><NextConsumeTime>3</NextConsumeTime><FirstConsumeTime>2</FirstConsumeTime><ConsumedTimes>1</ConsumedTimes><MessageTag>TagA</MessageTag><Properties>KEYS:k|a:b|</Properties></Message>"#), "{doc}");
        assert_eq!(doc.matches("<MessageTag>").count(), 1);
    }
}
