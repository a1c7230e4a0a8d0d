//! `rmq-gateway`: the HTTP gateway binary. Not implemented yet (issue 4); it refuses to start
//! rather than pretend to serve.

fn main() {
    eprintln!("rmq-gateway: the HTTP gateway is not implemented yet (see issue 4)");
    std::process::exit(2);
}
