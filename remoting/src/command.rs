//! `RemotingCommand`: one request or response, and its two header serializations
//! (docs/protocol.md §3-§5).

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::code::{LanguageCode, RequestCode, ResponseCode, SerializeType};
use crate::error::CodecError;
use crate::ext_fields::ExtFields;

/// Flag bit 0: the frame is a response.
pub const FLAG_RESPONSE: i32 = 0x1;
/// Flag bit 1: one-way request, never answered.
pub const FLAG_ONEWAY: i32 = 0x2;

/// The version ordinal we send: 4.9.8. It is >= 401 (strict-JSON routes) and <= 475 (no GO_AWAY
/// handshake expected), so it is safe against both the 4.9 and the 5.x line
/// (docs/protocol.md §3.4).
pub const DEFAULT_VERSION: i32 = 409;

/// The language we announce. RUST (12) is known to brokers since 4.9.4, so a 4.9.8 or 5.x broker
/// records it rather than null; no broker behaves differently for it (only CPP changes anything).
pub const DEFAULT_LANGUAGE: LanguageCode = LanguageCode::Rust;

/// One RocketMQ remoting command: header fields plus an opaque body.
///
/// A request with a typed header, encoded as a frame in either header serialization and read
/// back:
///
/// ```
/// use rmq_remoting::header::{CommandHeader, GetMaxOffsetRequestHeader};
/// use rmq_remoting::{RemotingCommand, RequestCode, ResponseCode, SerializeType};
///
/// let header = GetMaxOffsetRequestHeader {
///     topic: "orders".into(),
///     queue_id: 3,
///     ..Default::default()
/// };
/// let mut request = header.to_request(RequestCode::GetMaxOffset);
/// request.opaque = 42;
/// for serialization in [SerializeType::Json, SerializeType::RocketMq] {
///     let frame = request.clone().with_serialize_type(serialization).to_frame().unwrap();
///     let decoded = RemotingCommand::from_frame(&frame).unwrap();
///     assert_eq!(decoded.request_code(), RequestCode::GetMaxOffset);
///     assert_eq!(decoded.opaque, 42);
///     assert_eq!(GetMaxOffsetRequestHeader::from_command(&decoded).unwrap(), header);
/// }
///
/// // The broker's answer carries the request's opaque.
/// let response = RemotingCommand::response(ResponseCode::Success, 42, None);
/// assert!(response.is_response());
/// assert_eq!(response.response_code(), ResponseCode::Success);
///
/// // Bad input is an error, never a panic.
/// assert!(RemotingCommand::from_frame(&[0, 0, 0, 9, 1, 2]).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    /// Request code for requests, response code for responses.
    pub code: i32,
    /// The sender's language.
    pub language: LanguageCode,
    /// The sender's version ordinal (e.g. 4.9.8 = 453).
    pub version: i32,
    /// Matches a response to its request.
    pub opaque: i32,
    /// Bit 0: response; bit 1: one-way.
    pub flag: i32,
    /// Free text, mostly an error's description in responses.
    pub remark: Option<String>,
    /// `None` = member absent; `Some(empty)` = `"extFields":{}` in JSON (some 4.9.8 responses
    /// carry it, docs/protocol.md §4.1). Binary headers cannot tell the two apart.
    pub ext_fields: Option<ExtFields>,
    /// The serialization used (decoded) or to use (encoded) for the header.
    pub serialize_type: SerializeType,
    /// Whether a JSON header carries `serializeTypeCurrentRPC`. Java always writes it and the
    /// rocketmq-rust broker drops connections without it (docs/protocol.md §19), so new commands
    /// set it.
    pub json_rpc_type_member: bool,
    /// The body, opaque to the frame.
    pub body: Bytes,
}

impl Default for RemotingCommand {
    fn default() -> Self {
        RemotingCommand {
            code: 0,
            language: DEFAULT_LANGUAGE,
            version: DEFAULT_VERSION,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields: None,
            serialize_type: SerializeType::Json,
            json_rpc_type_member: true,
            body: Bytes::new(),
        }
    }
}

impl RemotingCommand {
    /// A request with the given code and named parameters.
    pub fn request(code: RequestCode, ext_fields: ExtFields) -> Self {
        RemotingCommand {
            code: code.as_i32(),
            ext_fields: Some(ext_fields),
            ..Default::default()
        }
    }

    /// A response to a request with `opaque`.
    pub fn response(code: ResponseCode, opaque: i32, remark: Option<String>) -> Self {
        RemotingCommand {
            code: code.as_i32(),
            opaque,
            flag: FLAG_RESPONSE,
            remark,
            ..Default::default()
        }
    }

    /// The command with `body`.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The command with its header written as `t`.
    pub fn with_serialize_type(mut self, t: SerializeType) -> Self {
        self.serialize_type = t;
        self
    }

    /// Whether this is a response (flag bit 0).
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// Whether this request expects no response (flag bit 1).
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// Marks the request one-way.
    pub fn set_oneway(&mut self) {
        self.flag |= FLAG_ONEWAY;
    }

    /// The code, read as a request code.
    pub fn request_code(&self) -> RequestCode {
        RequestCode::from(self.code)
    }

    /// The code, read as a response code.
    pub fn response_code(&self) -> ResponseCode {
        ResponseCode::from(self.code)
    }

    /// A named parameter of the header.
    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.as_ref().and_then(|f| f.get(key))
    }

    /// Mutable access to the named parameters, creating the map if absent.
    pub fn ext_fields_mut(&mut self) -> &mut ExtFields {
        self.ext_fields.get_or_insert_with(ExtFields::new)
    }

    /// Encodes the header alone in this command's serialization type.
    pub fn encode_header(&self, dst: &mut BytesMut) -> Result<(), CodecError> {
        match self.serialize_type {
            SerializeType::Json => {
                encode_json_header(self, dst);
                Ok(())
            }
            SerializeType::RocketMq => encode_binary_header(self, dst),
        }
    }

    /// Writes the whole frame (length prefix included) into `dst`.
    pub fn encode_frame(&self, dst: &mut BytesMut, max_frame: usize) -> Result<(), CodecError> {
        let start = dst.len();
        dst.reserve(8 + 128 + self.body.len());
        dst.put_u32(0);
        dst.put_u32(0);
        let header_start = dst.len();
        if let Err(e) = self.encode_header(dst) {
            dst.truncate(start);
            return Err(e);
        }
        let header_len = dst.len() - header_start;
        if header_len > 0x00FF_FFFF {
            dst.truncate(start);
            return Err(CodecError::HeaderTooLarge(header_len));
        }
        let frame_len = 4 + 4 + header_len + self.body.len();
        if frame_len > max_frame {
            dst.truncate(start);
            return Err(CodecError::FrameTooLarge {
                len: frame_len,
                max: max_frame,
            });
        }
        dst.extend_from_slice(&self.body);
        let length_field = (frame_len - 4) as u32;
        let type_word = ((self.serialize_type.code() as u32) << 24) | header_len as u32;
        dst[start..start + 4].copy_from_slice(&length_field.to_be_bytes());
        dst[start + 4..start + 8].copy_from_slice(&type_word.to_be_bytes());
        Ok(())
    }

    /// Convenience: the whole frame as one buffer.
    pub fn to_frame(&self) -> Result<Bytes, CodecError> {
        let mut b = BytesMut::new();
        self.encode_frame(&mut b, crate::codec::DEFAULT_MAX_FRAME)?;
        Ok(b.freeze())
    }

    /// Decodes a frame without its 4-byte length prefix (header-length word, header, body).
    /// The body is split off without copying.
    pub fn decode_frame_payload(mut payload: BytesMut) -> Result<Self, CodecError> {
        if payload.len() < 4 {
            return Err(CodecError::FrameTooShort(payload.len() as i64));
        }
        let word = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
        let type_code = (word >> 24) as u8;
        let header_len = (word & 0x00FF_FFFF) as usize;
        let available = payload.len() - 4;
        if header_len > available {
            return Err(CodecError::BadHeaderLength {
                header: header_len,
                available,
            });
        }
        let serialize_type = SerializeType::from_code(type_code)
            .ok_or(CodecError::UnknownSerializeType(type_code))?;
        let _ = payload.split_to(4);
        let header = payload.split_to(header_len);
        let body = payload.freeze();
        let mut cmd = match serialize_type {
            SerializeType::Json => decode_json_header(&header)?,
            SerializeType::RocketMq => decode_binary_header(&header)?,
        };
        cmd.body = body;
        Ok(cmd)
    }

    /// Decodes one whole frame (length prefix included), as captured on the wire.
    pub fn from_frame(frame: &[u8]) -> Result<Self, CodecError> {
        let mut codec = crate::codec::RemotingCodec::new();
        let mut buf = BytesMut::from(frame);
        match codec.decode_command(&mut buf)? {
            Some(cmd) if buf.is_empty() => Ok(cmd),
            Some(_) => Err(CodecError::BadHeaderLength {
                header: 0,
                available: buf.len(),
            }),
            None => Err(CodecError::FrameTooShort(frame.len() as i64)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON header (docs/protocol.md §4). Written by hand to reproduce fastjson byte for byte: members
// in alphabetical order, nulls omitted, fastjson's string escapes.

fn encode_json_header(cmd: &RemotingCommand, dst: &mut BytesMut) {
    let mut itoa = itoa_buf();
    dst.put_slice(b"{\"code\":");
    dst.put_slice(fmt_i32(&mut itoa, cmd.code));
    if let Some(ext) = &cmd.ext_fields {
        dst.put_slice(b",\"extFields\":{");
        for (i, (k, v)) in ext.iter().enumerate() {
            if i > 0 {
                dst.put_u8(b',');
            }
            write_json_string(dst, k);
            dst.put_u8(b':');
            write_json_string(dst, v);
        }
        dst.put_u8(b'}');
    }
    dst.put_slice(b",\"flag\":");
    dst.put_slice(fmt_i32(&mut itoa, cmd.flag));
    dst.put_slice(b",\"language\":");
    match cmd.language.name() {
        Some(name) => {
            dst.put_u8(b'"');
            dst.put_slice(name.as_bytes());
            dst.put_u8(b'"');
        }
        None => dst.put_slice(fmt_i32(&mut itoa, cmd.language.code() as i32)),
    }
    dst.put_slice(b",\"opaque\":");
    dst.put_slice(fmt_i32(&mut itoa, cmd.opaque));
    if let Some(remark) = &cmd.remark {
        dst.put_slice(b",\"remark\":");
        write_json_string(dst, remark);
    }
    if cmd.json_rpc_type_member {
        dst.put_slice(b",\"serializeTypeCurrentRPC\":\"JSON\"");
    }
    dst.put_slice(b",\"version\":");
    dst.put_slice(fmt_i32(&mut itoa, cmd.version));
    dst.put_u8(b'}');
}

fn itoa_buf() -> [u8; 12] {
    [0u8; 12]
}

fn fmt_i32(buf: &mut [u8; 12], v: i32) -> &[u8] {
    let mut n = (v as i64).unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// fastjson's escaping: `"` and `\` with a backslash; \b \t \n \f \r short; every other control
/// character and DEL as `\u00XX` with upper-case hex; everything else raw UTF-8.
pub(crate) fn write_json_string(dst: &mut BytesMut, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    dst.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            0x08 => Some(b"\\b"),
            b'\t' => Some(b"\\t"),
            b'\n' => Some(b"\\n"),
            0x0C => Some(b"\\f"),
            b'\r' => Some(b"\\r"),
            0x00..=0x1F | 0x7F => None,
            _ => continue,
        };
        dst.put_slice(&bytes[run_start..i]);
        run_start = i + 1;
        match esc {
            Some(e) => dst.put_slice(e),
            None => dst.put_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xF) as usize],
            ]),
        }
    }
    dst.put_slice(&bytes[run_start..]);
    dst.put_u8(b'"');
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonHeader {
    #[serde(default)]
    code: Option<i32>,
    #[serde(default, deserialize_with = "de_language")]
    language: Option<LanguageCode>,
    #[serde(default)]
    version: Option<i32>,
    #[serde(default)]
    opaque: Option<i32>,
    #[serde(default)]
    flag: Option<i32>,
    #[serde(default)]
    remark: Option<String>,
    #[serde(default, deserialize_with = "de_ext_fields")]
    ext_fields: Option<ExtFields>,
    #[serde(default, rename = "serializeTypeCurrentRPC")]
    serialize_type_current_rpc: Option<serde::de::IgnoredAny>,
}

fn de_language<'de, D: Deserializer<'de>>(d: D) -> Result<Option<LanguageCode>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<LanguageCode>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a language name or code")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(Some(
                LanguageCode::from_name(s).unwrap_or(LanguageCode::Unknown(u8::MAX)),
            ))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            Ok(Some(LanguageCode::from_code(
                u8::try_from(n).unwrap_or(u8::MAX),
            )))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Ok(Some(LanguageCode::from_code(
                u8::try_from(n).unwrap_or(u8::MAX),
            )))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// extFields values are strings from Java peers, but C++ and JS clients send numbers and
/// booleans (docs/protocol.md §4.2); Java's decoder accepts them, so we do, as their text.
fn de_ext_fields<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ExtFields>, D::Error> {
    struct MapV;
    impl<'de> Visitor<'de> for MapV {
        type Value = Option<ExtFields>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of string values")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = ExtFields::with_capacity(map.size_hint().unwrap_or(8).min(64));
            while let Some(k) = map.next_key::<String>()? {
                let v: ExtValue = map.next_value()?;
                if let Some(v) = v.0 {
                    out.push(k, v);
                }
            }
            Ok(Some(out))
        }
    }
    d.deserialize_any(MapV)
}

struct ExtValue(Option<String>);

impl<'de> Deserialize<'de> for ExtValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExtValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ExtValue, E> {
                Ok(ExtValue(Some(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<ExtValue, E> {
                Ok(ExtValue(Some(s)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ExtValue, E> {
                Ok(ExtValue(Some(n.to_string())))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ExtValue, E> {
                Ok(ExtValue(Some(n.to_string())))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<ExtValue, E> {
                Ok(ExtValue(Some(n.to_string())))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<ExtValue, E> {
                Ok(ExtValue(Some(b.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ExtValue, E> {
                Ok(ExtValue(None))
            }
        }
        d.deserialize_any(V)
    }
}

fn decode_json_header(bytes: &[u8]) -> Result<RemotingCommand, CodecError> {
    // serde would also fill a struct from a JSON array; a header is always an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(CodecError::JsonHeader("header is not a JSON object".into()));
    }
    let h: JsonHeader =
        serde_json::from_slice(bytes).map_err(|e| CodecError::JsonHeader(e.to_string()))?;
    Ok(RemotingCommand {
        code: h.code.unwrap_or(0),
        language: h.language.unwrap_or(LanguageCode::Java),
        version: h.version.unwrap_or(0),
        opaque: h.opaque.unwrap_or(0),
        flag: h.flag.unwrap_or(0),
        remark: h.remark,
        ext_fields: h.ext_fields,
        serialize_type: SerializeType::Json,
        json_rpc_type_member: h.serialize_type_current_rpc.is_some(),
        body: Bytes::new(),
    })
}

// ---------------------------------------------------------------------------------------------
// ROCKETMQ binary header (docs/protocol.md §5).

fn encode_binary_header(cmd: &RemotingCommand, dst: &mut BytesMut) -> Result<(), CodecError> {
    let code = i16::try_from(cmd.code).map_err(|_| CodecError::BinaryFieldRange {
        field: "code",
        value: cmd.code,
    })?;
    let version = i16::try_from(cmd.version).map_err(|_| CodecError::BinaryFieldRange {
        field: "version",
        value: cmd.version,
    })?;
    dst.put_i16(code);
    dst.put_u8(cmd.language.code());
    dst.put_i16(version);
    dst.put_i32(cmd.opaque);
    dst.put_i32(cmd.flag);
    match cmd.remark.as_deref() {
        Some(r) if !r.is_empty() => {
            dst.put_i32(r.len() as i32);
            dst.put_slice(r.as_bytes());
        }
        _ => dst.put_i32(0),
    }
    let len_pos = dst.len();
    dst.put_i32(0);
    if let Some(ext) = &cmd.ext_fields {
        for (k, v) in ext.iter() {
            // Empty strings read back as null on the Java side; skipping them is what Java's
            // encoder does for nulls, and the result decodes the same.
            if k.len() > i16::MAX as usize {
                return Err(CodecError::BinaryHeader(
                    "extFields key longer than 32767 bytes",
                ));
            }
            dst.put_i16(k.len() as i16);
            dst.put_slice(k.as_bytes());
            dst.put_i32(v.len() as i32);
            dst.put_slice(v.as_bytes());
        }
    }
    let ext_len = dst.len() - len_pos - 4;
    dst[len_pos..len_pos + 4].copy_from_slice(&(ext_len as i32).to_be_bytes());
    Ok(())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(CodecError::BinaryHeader(what))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn i16(&mut self, what: &'static str) -> Result<i16, CodecError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, CodecError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }
    fn string(&mut self, len: i64, what: &'static str) -> Result<Option<String>, CodecError> {
        if len < 0 || len as usize > self.buf.len() {
            return Err(CodecError::BinaryHeader(what));
        }
        if len == 0 {
            return Ok(None);
        }
        let b = self.take(len as usize, what)?;
        String::from_utf8(b.to_vec())
            .map(Some)
            .map_err(|_| CodecError::BinaryHeader("string is not UTF-8"))
    }
}

fn decode_binary_header(bytes: &[u8]) -> Result<RemotingCommand, CodecError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let code = r.i16("truncated code")? as i32;
    let language = LanguageCode::from_code(r.u8("truncated language")?);
    let version = r.i16("truncated version")? as i32;
    let opaque = r.i32("truncated opaque")?;
    let flag = r.i32("truncated flag")?;
    let remark_len = r.i32("truncated remark length")?;
    let remark = r.string(remark_len as i64, "bad remark length")?;
    let ext_len = r.i32("truncated extFields length")?;
    if ext_len < 0 || ext_len as usize > bytes.len() - r.pos {
        return Err(CodecError::BinaryHeader("bad extFields length"));
    }
    let ext_end = r.pos + ext_len as usize;
    let mut ext_fields = None;
    if ext_len > 0 {
        let mut fields = ExtFields::new();
        let mut er = Reader {
            buf: &bytes[..ext_end],
            pos: r.pos,
        };
        while er.pos < ext_end {
            let klen = er.i16("truncated extFields key length")?;
            let key = er.string(klen as i64, "bad extFields key length")?;
            let vlen = er.i32("truncated extFields value length")?;
            let value = er.string(vlen as i64, "bad extFields value length")?;
            // The Java decoder stores nulls; they never reach a typed header, so drop them.
            if let (Some(k), Some(v)) = (key, value) {
                fields.push(k, v);
            }
        }
        if !fields.is_empty() {
            ext_fields = Some(fields);
        }
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        serialize_type: SerializeType::RocketMq,
        json_rpc_type_member: true,
        body: Bytes::new(),
    })
}
