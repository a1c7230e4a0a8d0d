//! What the examples share: the name server flag (or `RMQ_NAMESRV`) and how they give up.

use clap::Args;

/// Where the brokers are.
#[derive(Args, Debug)]
pub struct Namesrv {
    /// Name servers, `host:port[;host:port]`.
    #[arg(long = "namesrv", env = "RMQ_NAMESRV")]
    pub addrs: String,
}

/// Prints `msg` and exits with status 2.
pub fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2);
}
