//! The HTTP APIs the gateway serves beside `/mq/*`.

pub mod aliyun;
