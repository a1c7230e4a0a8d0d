//! Typed request and response headers: the named string parameters (`extFields`) of each command,
//! as Java's custom-header classes define them (docs/protocol.md §7 and §9).
//!
//! Every header implements [`CommandHeader`]. Field names are the Java field names; values are
//! written as Java's `toString()` would (decimal numbers, `true`/`false`). Reading is as lenient as
//! the Java decoder where real peers depend on it: unknown keys (e.g. the `ReqT` a pull consumer's
//! hook adds) are ignored, and booleans may also be `0`/`1`, as rocketmq-client-cpp sends them.

use crate::code::RequestCode;
use crate::command::RemotingCommand;
use crate::error::HeaderError;
use crate::ext_fields::ExtFields;

/// A typed view of a command's `extFields`.
pub trait CommandHeader: Sized {
    /// Writes every present field, replacing existing values of the same keys in place.
    fn write_to(&self, ext: &mut ExtFields);

    /// Reads the header; a missing required field or an unparsable value is an error.
    fn read_from(ext: &ExtFields) -> Result<Self, HeaderError>;

    /// The header as a fresh `extFields` map, in the order a Java peer writes it.
    fn to_ext_fields(&self) -> ExtFields {
        let mut ext = ExtFields::with_capacity(16);
        self.write_to(&mut ext);
        ext
    }

    /// A request of `code` carrying this header, ready for a body and an opaque.
    ///
    /// ```
    /// use rmq_remoting::header::{CommandHeader, GetRouteInfoRequestHeader};
    /// use rmq_remoting::RequestCode;
    ///
    /// let header = GetRouteInfoRequestHeader {
    ///     topic: "orders".into(),
    ///     accept_standard_json_only: None,
    /// };
    /// let cmd = header.to_request(RequestCode::GetRouteinfoByTopic);
    /// assert_eq!(cmd.ext("topic"), Some("orders"));
    /// assert_eq!(GetRouteInfoRequestHeader::from_command(&cmd).unwrap(), header);
    /// ```
    fn to_request(&self, code: RequestCode) -> RemotingCommand {
        RemotingCommand::request(code, self.to_ext_fields())
    }

    /// Reads the header of `cmd`; a command without `extFields` reads like an empty map.
    fn from_command(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        match &cmd.ext_fields {
            Some(ext) => Self::read_from(ext),
            None => Self::read_from(&ExtFields::new()),
        }
    }
}

/// Declares header structs and their [`CommandHeader`] impls from one field list.
///
/// `field: Type = "wireKey"` is required unless `Type` is an `Option`; a trailing
/// `default expr` makes an absent key read as `expr` (Java primitives, which a Java peer always
/// sends but other clients omit). Fields are written in list order, so the list order is the
/// wire order.
macro_rules! command_header {
    (@read $ext:ident, $key:literal, $ty:ty) => {
        <$ty as $crate::header::value::Slot>::read($ext.get($key), $key)?
    };
    (@read $ext:ident, $key:literal, $ty:ty, $default:expr) => {
        match $ext.get($key) {
            None => $default,
            v => <$ty as $crate::header::value::Slot>::read(v, $key)?,
        }
    };
    ($(
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $key:literal $(default $default:expr)? ),*
            $(,)?
        }
    )*) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                #[doc = ""]
                #[doc = concat!("Wire key `", $key, "`.")]
                pub $field: $ty,
            )*
        }

        impl $crate::header::CommandHeader for $name {
            fn write_to(&self, ext: &mut $crate::ext_fields::ExtFields) {
                $( $crate::header::value::Slot::write(&self.$field, ext, $key); )*
            }

            fn read_from(
                ext: &$crate::ext_fields::ExtFields,
            ) -> Result<Self, $crate::error::HeaderError> {
                Ok($name {
                    $( $field: command_header!(@read ext, $key, $ty $(, $default)?), )*
                })
            }
        }
    )*};
}

mod admin;
mod broker_to_client;
mod consume;
mod produce;
mod value;

pub use admin::*;
pub use broker_to_client::*;
pub use consume::*;
pub use produce::*;
pub use value::{BoundaryType, TopicFilterType};
