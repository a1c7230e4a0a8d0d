#![warn(missing_docs)]
//! `rmq-remoting`: Apache RocketMQ's TCP remoting protocol as a sans-IO codec.
//!
//! Frames and both header serializations ([`RemotingCommand`], [`RemotingCodec`]), request and
//! response codes ([`code`]), typed request/response headers ([`header`]), JSON bodies ([`body`])
//! and messages: the stored-record decoder, batch encoding, properties and ids ([`message`]).
//! Nothing here touches a socket or reads a clock; decoders return typed errors on hostile input
//! and never allocate beyond the frame limit.

pub mod acl;
pub mod body;
pub mod code;
pub mod codec;
pub mod command;
pub mod error;
pub mod ext_fields;
pub mod header;
pub mod message;

pub use code::{LanguageCode, RequestCode, ResponseCode, SerializeType};
pub use codec::{RemotingCodec, DEFAULT_MAX_FRAME};
pub use command::{RemotingCommand, DEFAULT_LANGUAGE, DEFAULT_VERSION, FLAG_ONEWAY, FLAG_RESPONSE};
pub use error::{BodyError, CodecError, HeaderError, MessageError};
pub use ext_fields::ExtFields;
