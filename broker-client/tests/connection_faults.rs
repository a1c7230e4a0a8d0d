//! Faults a real broker cannot produce on demand: out-of-order and missing answers, dropped
//! connections, garbage frames, requests from the server. A small fake peer injects them; the
//! features themselves are proven against the real broker in the other tests.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use rmq_client::connection::Connection;
use rmq_client::remoting_client::RemotingClient;
use rmq_client::{ClientConfig, ClientError};
use rmq_remoting::{ExtFields, RemotingCodec, RemotingCommand, RequestCode, ResponseCode};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap().to_string();
    (l, a)
}

fn req(i: usize) -> RemotingCommand {
    let ext: ExtFields = [("n", i.to_string().as_str())].into_iter().collect();
    RemotingCommand::request(RequestCode::GetMaxOffset, ext)
}

fn answer(r: &RemotingCommand) -> RemotingCommand {
    let mut resp = RemotingCommand::response(ResponseCode::Success, r.opaque, None);
    resp.ext_fields = r.ext_fields.clone();
    resp
}

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn many_in_flight_answered_out_of_order() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut f = Framed::new(s, RemotingCodec::new());
        let mut got = Vec::new();
        while got.len() < 100 {
            got.push(f.next().await.unwrap().unwrap());
        }
        for r in got.iter().rev() {
            f.send(answer(r)).await.unwrap();
        }
        let _ = f.next().await;
    });
    let c = Connection::connect(&addr, T, 1 << 24, None).await.unwrap();
    let calls = (0..100).map(|i| {
        let c = c.clone();
        async move { (i, c.invoke(req(i), T).await) }
    });
    for (i, r) in futures::future::join_all(calls).await {
        assert_eq!(r.unwrap().ext("n"), Some(i.to_string().as_str()));
    }
    assert_eq!(c.pending(), 0);
}

#[tokio::test]
async fn a_missing_answer_times_out_and_is_forgotten() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut f = Framed::new(s, RemotingCodec::new());
        let first = f.next().await.unwrap().unwrap();
        // answer only the second request, and the first one after its waiter gave up
        let second = f.next().await.unwrap().unwrap();
        f.send(answer(&second)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        f.send(answer(&first)).await.unwrap();
        let _ = f.next().await;
    });
    let c = Connection::connect(&addr, T, 1 << 24, None).await.unwrap();
    let slow = c.invoke(req(1), Duration::from_millis(200));
    let c2 = c.clone();
    let fast = async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        c2.invoke(req(2), T).await
    };
    let (slow, fast) = tokio::join!(slow, fast);
    assert!(matches!(slow, Err(ClientError::Timeout { .. })), "{slow:?}");
    assert_eq!(fast.unwrap().ext("n"), Some("2"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(c.pending(), 0);
    assert!(
        !c.is_closed(),
        "a late answer must not break the connection"
    );
}

#[tokio::test]
async fn a_dropped_connection_fails_waiters_at_once_and_is_redialled() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        // first connection: read one request, then hang up without answering
        let (s, _) = l.accept().await.unwrap();
        let mut f = Framed::new(s, RemotingCodec::new());
        let _ = f.next().await;
        drop(f);
        // second connection: a working peer
        let (s, _) = l.accept().await.unwrap();
        let mut f = Framed::new(s, RemotingCodec::new());
        while let Some(Ok(r)) = f.next().await {
            f.send(answer(&r)).await.unwrap();
        }
    });
    let pool = RemotingClient::new(ClientConfig::default());
    let started = Instant::now();
    let r = pool
        .invoke_timeout(&addr, req(1), Duration::from_secs(30))
        .await;
    assert!(
        matches!(r, Err(ClientError::ConnectionClosed { .. })),
        "{r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waiter must not wait for its timeout"
    );
    let r = pool.invoke(&addr, req(2)).await.unwrap();
    assert_eq!(r.ext("n"), Some("2"));
}

#[tokio::test]
async fn garbage_from_the_peer_closes_the_connection() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf).await;
        s.write_all(&[0x7f, 0xff, 0xff, 0xff, 1, 2, 3])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    });
    let c = Connection::connect(&addr, T, 1 << 24, None).await.unwrap();
    let r = c.invoke(req(1), T).await;
    match r {
        Err(ClientError::ConnectionClosed { reason, .. }) => {
            assert!(reason.contains("bad frame"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(c.is_closed());
}

#[tokio::test]
async fn refused_connections_are_typed_errors() {
    let (l, addr) = listener().await;
    drop(l);
    let r = Connection::connect(&addr, T, 1 << 24, None).await;
    assert!(matches!(r, Err(ClientError::Connect { .. })), "{r:?}");
}

#[tokio::test]
async fn requests_from_the_server_are_answered_or_ignored() {
    let (l, addr) = listener().await;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut f = Framed::new(s, RemotingCodec::new());
        // one-way notification: must get no answer
        let mut notify = RemotingCommand::request(
            RequestCode::NotifyConsumerIdsChanged,
            [("consumerGroup", "G")].into_iter().collect(),
        );
        notify.opaque = 1000;
        notify.set_oneway();
        f.send(notify).await.unwrap();
        // two-way admin request: must be answered with its opaque
        let mut running =
            RemotingCommand::request(RequestCode::GetConsumerRunningInfo, ExtFields::new());
        running.opaque = 1001;
        f.send(running).await.unwrap();
        let resp = f.next().await.unwrap().unwrap();
        done_tx.send(resp).unwrap();
    });
    // The handler runs on the connection's reader task: it records, the test asserts.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let handler: rmq_client::connection::ServerRequestHandler =
        std::sync::Arc::new(move |_addr, r| {
            seen2
                .lock()
                .unwrap()
                .push((r.request_code(), r.opaque, r.is_oneway()));
            None
        });
    let _c = Connection::connect(&addr, T, 1 << 24, Some(handler))
        .await
        .unwrap();
    let resp = tokio::time::timeout(T, done_rx).await.unwrap().unwrap();
    assert!(resp.is_response());
    assert_eq!(resp.opaque, 1001);
    assert_eq!(resp.response_code(), ResponseCode::RequestCodeNotSupported);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (RequestCode::NotifyConsumerIdsChanged, 1000, true),
            (RequestCode::GetConsumerRunningInfo, 1001, false)
        ]
    );
}

#[tokio::test]
async fn a_panicking_handler_answers_system_error_and_keeps_the_connection() {
    let (l, addr) = listener().await;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut f = Framed::new(s, RemotingCodec::new());
        let mut running =
            RemotingCommand::request(RequestCode::GetConsumerRunningInfo, ExtFields::new());
        running.opaque = 7;
        f.send(running).await.unwrap();
        let resp = f.next().await.unwrap().unwrap();
        // then serve the client's request on the same connection
        let r = f.next().await.unwrap().unwrap();
        f.send(answer(&r)).await.unwrap();
        done_tx.send(resp).unwrap();
        let _ = f.next().await;
    });
    let handler: rmq_client::connection::ServerRequestHandler =
        std::sync::Arc::new(|_addr, _r| panic!("handler bug"));
    let c = Connection::connect(&addr, T, 1 << 24, Some(handler))
        .await
        .unwrap();
    let resp = tokio::time::timeout(T, async {
        // wait until the server's request was handled before sending ours
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.invoke(req(3), T).await
    })
    .await
    .unwrap();
    assert_eq!(resp.unwrap().ext("n"), Some("3"));
    let answered = tokio::time::timeout(T, done_rx).await.unwrap().unwrap();
    assert_eq!(answered.opaque, 7);
    assert_eq!(answered.response_code(), ResponseCode::SystemError);
    assert!(!c.is_closed());
}

#[tokio::test]
async fn a_dropped_request_future_leaves_no_waiter() {
    let (l, addr) = listener().await;
    let (late_tx, late_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut f = Framed::new(s, RemotingCodec::new());
        let first = f.next().await.unwrap().unwrap();
        // answer the abandoned request only after its future is gone
        late_rx.await.unwrap();
        f.send(answer(&first)).await.unwrap();
        while let Some(Ok(r)) = f.next().await {
            f.send(answer(&r)).await.unwrap();
        }
    });
    let c = Connection::connect(&addr, T, 1 << 24, None).await.unwrap();
    {
        let fut = c.invoke(req(1), T);
        tokio::pin!(fut);
        assert!(futures::poll!(&mut fut).is_pending());
        assert_eq!(c.pending(), 1, "the request waits for its answer");
    }
    assert_eq!(c.pending(), 0, "dropping the future removed its waiter");
    late_tx.send(()).unwrap();
    // the late answer is dropped and the connection goes on
    assert_eq!(c.invoke(req(2), T).await.unwrap().ext("n"), Some("2"));
    assert_eq!(c.pending(), 0);
    assert!(!c.is_closed());

    // the same through the pool, cancelled by a timeout around the call
    let pool = RemotingClient::new(ClientConfig::default());
    let (l2, addr2) = listener().await;
    tokio::spawn(async move {
        let (s, _) = l2.accept().await.unwrap();
        let mut f = Framed::new(s, RemotingCodec::new());
        while f.next().await.is_some() {}
    });
    let r = tokio::time::timeout(Duration::from_millis(200), pool.invoke(&addr2, req(3))).await;
    assert!(r.is_err(), "nothing answers: the outer timeout fires");
    assert_eq!(pool.connection(&addr2).await.unwrap().pending(), 0);
}

#[tokio::test]
async fn the_last_handle_dropped_ends_the_connection() {
    let (l, addr) = listener().await;
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut f = Framed::new(s, RemotingCodec::new());
        let r = f.next().await.unwrap().unwrap();
        f.send(answer(&r)).await.unwrap();
        // the client's tasks end and close the socket: the stream ends
        let end = f.next().await;
        eof_tx.send(end.is_none()).unwrap();
    });
    let c = Connection::connect(&addr, T, 1 << 24, None).await.unwrap();
    let c2 = c.clone();
    assert_eq!(c2.invoke(req(1), T).await.unwrap().ext("n"), Some("1"));
    drop(c);
    assert!(!c2.is_closed(), "a clone keeps the connection open");
    drop(c2);
    let ended = tokio::time::timeout(T, eof_rx).await;
    assert_eq!(ended.map(Result::unwrap).ok(), Some(true));

    // a pool's connections end with the pool
    let (l, addr) = listener().await;
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut f = Framed::new(s, RemotingCodec::new());
        let r = f.next().await.unwrap().unwrap();
        f.send(answer(&r)).await.unwrap();
        eof_tx.send(f.next().await.is_none()).unwrap();
    });
    let pool = RemotingClient::new(ClientConfig::default());
    assert_eq!(
        pool.invoke(&addr, req(2)).await.unwrap().ext("n"),
        Some("2")
    );
    drop(pool);
    let ended = tokio::time::timeout(T, eof_rx).await;
    assert_eq!(ended.map(Result::unwrap).ok(), Some(true));
}

#[tokio::test]
async fn failed_dials_back_off_then_recover() {
    let (l, addr) = listener().await;
    drop(l);
    let cfg = ClientConfig {
        reconnect_backoff: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    let pool = RemotingClient::new(cfg);
    let r = pool.invoke(&addr, req(1)).await;
    assert!(matches!(r, Err(ClientError::Connect { .. })), "{r:?}");
    // within the pause: no dial, a typed error saying when the next one happens
    match pool.invoke(&addr, req(2)).await {
        Err(e @ ClientError::Reconnecting { retry_in, .. }) => {
            assert!(e.is_transport());
            assert!(retry_in <= Duration::from_millis(300), "{retry_in:?}");
        }
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(350)).await;
    // the pause is over: it dials again, fails again, and waits twice as long
    let r = pool.invoke(&addr, req(3)).await;
    assert!(matches!(r, Err(ClientError::Connect { .. })), "{r:?}");
    let retry = match pool.invoke(&addr, req(4)).await {
        Err(ClientError::Reconnecting { retry_in, .. }) => retry_in,
        other => panic!("{other:?}"),
    };
    assert!(retry > Duration::from_millis(300), "{retry:?}");
    // the peer comes back: after the pause the pool dials and the request goes through
    let l = TcpListener::bind(&addr).await.unwrap();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut f = Framed::new(s, RemotingCodec::new());
        while let Some(Ok(r)) = f.next().await {
            f.send(answer(&r)).await.unwrap();
        }
    });
    tokio::time::sleep(retry + Duration::from_millis(50)).await;
    assert_eq!(
        pool.invoke(&addr, req(5)).await.unwrap().ext("n"),
        Some("5")
    );
}

#[tokio::test]
async fn oversize_frames_are_refused_before_sending() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut f = Framed::new(s, RemotingCodec::new());
        while let Some(Ok(r)) = f.next().await {
            f.send(answer(&r)).await.unwrap();
        }
    });
    let c = Connection::connect(&addr, T, 1024, None).await.unwrap();
    let big = req(1).with_body(BytesMut::zeroed(4096).freeze());
    // refused before it is queued: a typed codec error, and the connection stays usable
    let r = c.invoke(big, Duration::from_secs(2)).await;
    assert!(matches!(r, Err(ClientError::Codec(_))), "{r:?}");
    assert_eq!(c.invoke(req(2), T).await.unwrap().ext("n"), Some("2"));
    let _ = TcpStream::connect(&addr).await;
}

#[tokio::test]
async fn a_request_dropped_before_it_was_written_is_still_sent_whole() {
    let (l, addr) = listener().await;
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut f = Framed::new(s, RemotingCodec::new());
        let first = f.next().await.unwrap().unwrap();
        let second = f.next().await.unwrap().unwrap();
        seen_tx.send(second.ext("n").map(str::to_owned)).unwrap();
        f.send(answer(&first)).await.unwrap();
        while let Some(Ok(r)) = f.next().await {
            f.send(answer(&r)).await.unwrap();
        }
    });
    let c = Connection::connect(&addr, T, 1 << 24, None).await.unwrap();
    // A request in flight makes the next one wait a turn before writing (to share the write).
    let first = c.invoke(req(0), T);
    tokio::pin!(first);
    assert!(futures::poll!(&mut first).is_pending());
    {
        // Its first poll appends the frame and yields before writing it; dropping the future
        // then leaves the write to the connection's writer task.
        let fut = c.invoke(req(1), T);
        tokio::pin!(fut);
        assert!(futures::poll!(&mut fut).is_pending());
    }
    let seen = tokio::time::timeout(T, seen_rx).await;
    assert_eq!(
        seen.map(Result::unwrap).ok(),
        Some(Some("1".to_owned())),
        "the peer got the abandoned request, whole"
    );
    assert_eq!(first.await.unwrap().ext("n"), Some("0"));
    assert_eq!(c.invoke(req(2), T).await.unwrap().ext("n"), Some("2"));
    assert_eq!(c.pending(), 0);
    assert!(!c.is_closed());
}

#[tokio::test]
async fn concurrent_requests_share_writes_and_all_get_their_answers() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut f = Framed::new(s, RemotingCodec::new());
        while let Some(Ok(r)) = f.next().await {
            f.send(answer(&r)).await.unwrap();
        }
    });
    let c = Connection::connect(&addr, T, 1 << 24, None).await.unwrap();
    // Large bodies fill the socket, so writing is handed to the writer task as well.
    let calls = (0..200).map(|i| {
        let c = c.clone();
        tokio::spawn(async move {
            let mut r = req(i);
            r.body = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
            (i, c.invoke(r, T).await)
        })
    });
    for h in futures::future::join_all(calls).await {
        let (i, r) = h.unwrap();
        assert_eq!(r.unwrap().ext("n"), Some(i.to_string().as_str()));
    }
    assert_eq!(c.pending(), 0);
}
