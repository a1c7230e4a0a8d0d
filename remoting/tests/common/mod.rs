//! Access to the real 4.9.8 captures in `tests/fixtures/` (see its README.md).
#![allow(dead_code)]

use std::path::PathBuf;

pub fn fixtures_dir() -> PathBuf {
    if let Ok(p) = std::env::var("RMQ_FIXTURES") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every index entry. Panics (fails the test) when the fixtures are missing: they are the proof.
pub fn index() -> Vec<serde_json::Value> {
    let path = fixtures_dir().join("index.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixtures index {} not readable: {e}", path.display()));
    let v: Vec<serde_json::Value> = serde_json::from_str(&text).expect("index.json parses");
    assert_eq!(v.len(), 865, "expected the 865 captured frames");
    v
}

pub fn frame(entry: &serde_json::Value) -> Vec<u8> {
    let f = entry["file"].as_str().unwrap();
    std::fs::read(fixtures_dir().join(f)).unwrap_or_else(|e| panic!("{f}: {e}"))
}
