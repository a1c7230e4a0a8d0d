//! A byte stream through `RemotingCodec`, whole and cut into chunks: decoding must never panic,
//! must not depend on how the stream is cut, and every decoded command must round-trip.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rmq_remoting::{RemotingCodec, RemotingCommand};
use rmq_remoting_fuzz::check_command_round_trip;
use tokio_util::codec::Decoder;

/// What a connection sees: the commands decoded, then how the stream ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    commands: Vec<RemotingCommand>,
    /// `None` = clean end of stream; otherwise the error text.
    end: Option<String>,
}

/// Feeds `data` to `codec` in chunks whose sizes cycle through `sizes` (empty = all at once),
/// decoding after every chunk until the codec wants more, then signals end of stream.
fn run(mut codec: RemotingCodec, data: &[u8], sizes: &[usize]) -> Outcome {
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = if sizes.is_empty() {
            rest.len()
        } else {
            sizes[i % sizes.len()].clamp(1, rest.len())
        };
        i += 1;
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(cmd)) => commands.push(cmd),
                Ok(None) => break,
                Err(e) => {
                    return Outcome {
                        commands,
                        end: Some(e.to_string()),
                    }
                }
            }
        }
    }
    // End of stream: whatever is left is a truncated frame.
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(cmd)) => commands.push(cmd),
            Ok(None) => {
                return Outcome {
                    commands,
                    end: None,
                }
            }
            Err(e) => {
                return Outcome {
                    commands,
                    end: Some(e.to_string()),
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = run(RemotingCodec::new(), data, &[]);
    for cmd in &whole.commands {
        check_command_round_trip(cmd);
    }

    // The cut points come from the data itself so that seeds stay plain captured frames.
    let k = data.last().copied().unwrap_or(0) as usize;
    let sizes = [1 + k % 7, 1, 3 + k % 31, 4, 1 + k];
    let chunked = run(RemotingCodec::new(), data, &sizes);
    assert_eq!(whole, chunked, "chunking changed the outcome");

    // A small frame limit: fewer frames, never a different one.
    let max = 8 + 16 * k;
    let limited = run(RemotingCodec::with_max_frame(max), data, &sizes[..2]);
    assert!(limited.commands.len() <= whole.commands.len());
    assert_eq!(
        limited.commands[..],
        whole.commands[..limited.commands.len()],
        "a frame limit changed a decoded frame"
    );
});
