//! The Aliyun MQ HTTP API's error codes and how they go over the wire: an `<Error>` document in
//! the namespace `http://mq.aliyuncs.com/doc/v1` (no trailing slash: Java's JAXB binding
//! matches it exactly) and a lower-case `x-mq-request-id` header (Python reads the raw,
//! case-sensitive header name).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::xml;

/// The header every answer of this API carries.
pub const REQUEST_ID_HEADER: &str = "x-mq-request-id";
/// The Content-Type of every XML answer (Node parses a body only when it starts with
/// `text/xml`).
pub const XML_CONTENT_TYPE: &str = "text/xml;charset=utf-8";

/// The codes this gateway answers with, each with the status Aliyun gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 403: no credentials configured, or the key may not do this.
    AccessDenied,
    /// 403: the AccessKeyId is not configured.
    InvalidAccessKeyId,
    /// 403: the signature does not match the request.
    SignatureDoesNotMatch,
    /// 403: the `Date` header is more than the allowed skew away from the gateway's clock.
    RequestTimeTooSkewed,
    /// 400: the `Authorization` header is not `MQ <id>:<signature>`.
    InvalidAuthorizationHeader,
    /// 400: no `Authorization` header.
    MissingAuthorizationHeader,
    /// 400: the `Date` header is missing or not an HTTP date.
    InvalidDateHeader,
    /// 400: a value is outside what the API accepts.
    InvalidArgument,
    /// 400: the body is not well-formed XML of the expected shape.
    MalformedXML,
    /// 400: a query parameter is missing or malformed.
    InvalidQueryString,
    /// 400: the path or method is not part of the API.
    InvalidRequestURL,
    /// 404: the broker has no route for the topic.
    TopicNotExist,
    /// 404: nothing to consume, or a handle that expired.
    MessageNotExist,
    /// 400 (inside `<Errors>` of an ack: 404): a malformed or unknown receipt handle.
    ReceiptHandleError,
    /// 501: a part of the API this gateway does not serve (yet).
    NotImplemented,
    /// 503: the broker could not be reached; the outcome of a send may be unknown.
    ServiceUnavailable,
    /// 500.
    InternalError,
}

impl Code {
    /// The code as it goes into `<Code>` / `<ErrorCode>`, e.g. `"MessageNotExist"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::AccessDenied => "AccessDenied",
            Code::InvalidAccessKeyId => "InvalidAccessKeyId",
            Code::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            Code::RequestTimeTooSkewed => "RequestTimeTooSkewed",
            Code::InvalidAuthorizationHeader => "InvalidAuthorizationHeader",
            Code::MissingAuthorizationHeader => "MissingAuthorizationHeader",
            Code::InvalidDateHeader => "InvalidDateHeader",
            Code::InvalidArgument => "InvalidArgument",
            Code::MalformedXML => "MalformedXML",
            Code::InvalidQueryString => "InvalidQueryString",
            Code::InvalidRequestURL => "InvalidRequestURL",
            Code::TopicNotExist => "TopicNotExist",
            Code::MessageNotExist => "MessageNotExist",
            Code::ReceiptHandleError => "ReceiptHandleError",
            Code::NotImplemented => "NotImplemented",
            Code::ServiceUnavailable => "ServiceUnavailable",
            Code::InternalError => "InternalError",
        }
    }

    /// The HTTP status of a plain `<Error>` answer with this code.
    pub fn status(self) -> StatusCode {
        match self {
            Code::AccessDenied
            | Code::InvalidAccessKeyId
            | Code::SignatureDoesNotMatch
            | Code::RequestTimeTooSkewed => StatusCode::FORBIDDEN,
            Code::InvalidAuthorizationHeader
            | Code::MissingAuthorizationHeader
            | Code::InvalidDateHeader
            | Code::InvalidArgument
            | Code::MalformedXML
            | Code::InvalidQueryString
            | Code::InvalidRequestURL
            | Code::ReceiptHandleError => StatusCode::BAD_REQUEST,
            Code::TopicNotExist | Code::MessageNotExist => StatusCode::NOT_FOUND,
            Code::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            Code::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed request: the code, a message for people, and where it was answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AliyunError {
    /// `Code`; it also decides the HTTP status.
    pub code: Code,
    /// `Message`: what went wrong, for people.
    pub message: String,
    /// Filled in by the handler; a fresh id otherwise.
    pub request_id: Option<String>,
    /// `HostId`: the endpoint the client called (`http://` + its Host header).
    pub host_id: Option<String>,
}

impl AliyunError {
    /// An error not yet tied to a request (no request id or endpoint).
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        AliyunError {
            code,
            message: message.into(),
            request_id: None,
            host_id: None,
        }
    }

    /// Ties the error to the request's id and endpoint.
    pub fn at(mut self, request_id: &str, host_id: &str) -> Self {
        self.request_id = Some(request_id.to_owned());
        self.host_id = Some(host_id.to_owned());
        self
    }
}

/// Shorthands for the codes handlers use most: `InvalidArgument` (400) with this message.
pub fn invalid_argument(m: impl Into<String>) -> AliyunError {
    AliyunError::new(Code::InvalidArgument, m)
}
/// `MalformedXML` (400) with this message.
pub fn malformed_xml(m: impl Into<String>) -> AliyunError {
    AliyunError::new(Code::MalformedXML, m)
}
/// `InvalidQueryString` (400) with this message.
pub fn invalid_query(m: impl Into<String>) -> AliyunError {
    AliyunError::new(Code::InvalidQueryString, m)
}

/// A text/xml answer with the request id header.
pub fn xml_response(status: StatusCode, request_id: &str, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(XML_CONTENT_TYPE),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(REQUEST_ID_HEADER, v);
    }
    r
}

impl IntoResponse for AliyunError {
    fn into_response(self) -> Response {
        let request_id = self
            .request_id
            .clone()
            .unwrap_or_else(super::request_id::next);
        let body = xml::error_document(
            self.code.as_str(),
            &self.message,
            &request_id,
            self.host_id.as_deref().unwrap_or(""),
        );
        xml_response(self.code.status(), &request_id, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_answer_xml_with_the_lower_case_request_id_header() {
        let r = AliyunError::new(Code::TopicNotExist, "no such topic")
            .at("REQ1", "http://127.0.0.1:8080")
            .into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()["content-type"], XML_CONTENT_TYPE);
        assert_eq!(r.headers()["x-mq-request-id"], "REQ1");
        // http lower-cases header names on the wire; the name is spelled so here too.
        assert!(r.headers().keys().any(|k| k.as_str() == REQUEST_ID_HEADER));
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Error xmlns="http://mq.aliyuncs.com/doc/v1"><Code>TopicNotExist</Code><Message>no such topic</Message><RequestId>REQ1</RequestId><HostId>http://127.0.0.1:8080</HostId></Error>"#
        );
        // Without a context the error still carries a request id, in the body and the header.
        let r = AliyunError::new(Code::InternalError, "x").into_response();
        let id = r.headers()["x-mq-request-id"].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        assert!(std::str::from_utf8(&body)
            .unwrap()
            .contains(&format!("<RequestId>{id}</RequestId>")));
    }

    #[test]
    fn statuses_follow_aliyun() {
        use Code::*;
        for (c, s) in [
            (AccessDenied, 403),
            (InvalidAccessKeyId, 403),
            (SignatureDoesNotMatch, 403),
            (RequestTimeTooSkewed, 403),
            (MissingAuthorizationHeader, 400),
            (InvalidDateHeader, 400),
            (MalformedXML, 400),
            (InvalidArgument, 400),
            (TopicNotExist, 404),
            (MessageNotExist, 404),
            (InternalError, 500),
        ] {
            assert_eq!(c.status().as_u16(), s, "{c}");
        }
    }
}
