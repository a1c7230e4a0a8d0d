#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the captured 4.9.8 frames. Nothing is committed: the seeds
# are cut from ../shared at run time (RMQ_FIXTURES overrides the fixtures directory).
#   frame_decoder      whole frames, plus a few multi-frame streams
#   json_header        header slices of JSON (type 0) frames
#   binary_header      header slices of ROCKETMQ (type 1) frames
#   stored_message     bodies of `messages` frames (PULL / VIEW / QUERY responses)
#   batch              bodies of `batch` frames (SEND_BATCH_MESSAGE)
#   route_json         bodies of `json` / `json-legacy` frames
#   properties_msg_id  property strings of stored messages, msg ids and tags from the headers
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
fixtures="${RMQ_FIXTURES:-$here/../../shared/fixtures/rocketmq-4.9.8}"
if [[ ! -f "$fixtures/index.json" ]]; then
  echo "seed.sh: no fixtures at $fixtures (set RMQ_FIXTURES)" >&2
  exit 1
fi
exec python3 - "$fixtures" "$here/corpus" <<'PY'
import hashlib, json, os, shutil, struct, sys

fixtures, out = sys.argv[1], sys.argv[2]
index = json.load(open(os.path.join(fixtures, "index.json")))
targets = ["frame_decoder", "json_header", "binary_header", "stored_message", "batch",
           "route_json", "properties_msg_id"]
for t in targets:
    shutil.rmtree(os.path.join(out, t), ignore_errors=True)
    os.makedirs(os.path.join(out, t))

seen = {t: set() for t in targets}

def put(target, data):
    # Named by content, as libFuzzer names its own units; duplicates collapse.
    h = hashlib.sha1(data).hexdigest()
    if h in seen[target]:
        return
    seen[target].add(h)
    with open(os.path.join(out, target, "seed-" + h), "wb") as f:
        f.write(data)

def split(frame):
    (length, word) = struct.unpack(">iI", frame[:8])
    hl = word & 0xFFFFFF
    return word >> 24, frame[8:8 + hl], frame[8 + hl:4 + length]

def props_of_records(body):
    """Property strings of the stored-message records in a PULL body (v1/v2 layout)."""
    pos = 0
    while pos + 8 <= len(body):
        total, magic = struct.unpack(">iI", body[pos:pos + 8])
        if total < 8 or pos + total > len(body):
            return
        p = pos + 4 + 4 + 4 + 4 + 4 + 8 + 8
        sysflag = struct.unpack(">i", body[p:p + 4])[0]
        p += 4 + 8 + (20 if sysflag & 0x10 else 8) + 8 + (20 if sysflag & 0x20 else 8) + 4 + 8
        blen = struct.unpack(">i", body[p:p + 4])[0]
        p += 4 + blen
        if magic == 0xDAA320AB:
            tlen = struct.unpack(">h", body[p:p + 2])[0]; p += 2
        else:
            tlen = body[p]; p += 1
        p += tlen
        plen = struct.unpack(">h", body[p:p + 2])[0]
        yield body[p + 2:p + 2 + plen]
        pos += total

by_scenario = {}
for e in index:
    frame = open(os.path.join(fixtures, e["file"]), "rb").read()
    by_scenario.setdefault(e["scenario"], []).append(frame)
    put("frame_decoder", frame)
    t, header, body = split(frame)
    put("json_header" if t == 0 else "binary_header", header)
    kind = e["body_kind"]
    if kind == "messages":
        put("stored_message", body)
        for p in props_of_records(body):
            put("properties_msg_id", p)
    elif kind == "batch":
        put("batch", body)
    elif kind in ("json", "json-legacy"):
        put("route_json", body)
    ext = (e.get("decoded_header") or {}).get("extFields") or {}
    for k in ("msgId", "offsetMsgId", "tags", "subscription", "properties"):
        v = ext.get(k)
        if isinstance(v, str) and v:
            put("properties_msg_id", v.encode())

# Synthetic records the 4.9.8 captures lack: a 5.x inner-batch record (sysFlag INNER_BATCH |
# NEED_UNWRAP, body = batch of 3 items) at the very top of the offset range, where numbering the
# unwrapped items must wrap as Java's long arithmetic does instead of overflowing.
def batch_item(body, props=b""):
    return struct.pack(">iiiii", 22 + len(body) + len(props), 0, 0, 0, len(body)) + body + \
        struct.pack(">h", len(props)) + props

def stored_record(body, sysflag, queue_offset, topic=b"t", props=b""):
    host = bytes([10, 0, 0, 1]) + struct.pack(">i", 10911)
    fields = struct.pack(">IiiiqqiQ", 0xDAA320A7, 0, 0, 0, queue_offset, 0, sysflag, 0) + host + \
        struct.pack(">q", 0) + host + struct.pack(">iqi", 0, 0, len(body)) + body + \
        bytes([len(topic)]) + topic + struct.pack(">h", len(props)) + props
    return struct.pack(">i", 4 + len(fields)) + fields

inner = b"".join(batch_item(b"m%d" % i, b"TAGS\x01a") for i in range(3))
for qo in (0, 2**63 - 2):
    put("stored_message", stored_record(inner, 0x80 | 0x40, qo))
put("batch", inner)

# Streams of several frames back to back, as a connection carries them.
for name, frames in sorted(by_scenario.items()):
    put("frame_decoder", b"".join(frames[:4]))

for t in targets:
    d = os.path.join(out, t)
    n = len(os.listdir(d))
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"seed.sh: {t:18} {n:4} seeds, {size:7} bytes")
PY
