//! `rmq`: parse, run, and turn failures into an exit code and one line on stderr.

use clap::Parser;
use rmq_cli::args::Cli;
use rmq_cli::exit::{classify, one_line};

fn main() {
    // Logs only when asked for (RUST_LOG): stderr is otherwise one line per failure.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rmq: error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(rmq_cli::run(cli));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if let Err(e) = result {
        eprintln!("rmq: error: {}", one_line(&e));
        std::process::exit(classify(&e) as i32);
    }
}
