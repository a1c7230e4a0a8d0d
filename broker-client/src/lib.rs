//! `rmq-client`: a RocketMQ name-server and broker client built on `rmq-remoting`.
//!
//! Work in progress (issue 3): connections, routing, producer and pull primitives land here.
//! Today only the codec re-export is available.

pub use rmq_remoting as remoting;
