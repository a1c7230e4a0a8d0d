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
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen2 = seen.clone();
    let handler: rmq_client::connection::ServerRequestHandler =
        std::sync::Arc::new(move |_addr, r| {
            seen2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            assert!(r.request_code() == RequestCode::NotifyConsumerIdsChanged || r.opaque == 1001);
            None
        });
    let _c = Connection::connect(&addr, T, 1 << 24, Some(handler))
        .await
        .unwrap();
    let resp = tokio::time::timeout(T, done_rx).await.unwrap().unwrap();
    assert!(resp.is_response());
    assert_eq!(resp.opaque, 1001);
    assert_eq!(resp.response_code(), ResponseCode::RequestCodeNotSupported);
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 2);
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
