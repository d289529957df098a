//! Bad signaling input gets its typed error, the connection stays usable, and a
//! normal offer on the same connection still works afterwards.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: std::net::SocketAddr) -> Ws {
    tokio_tungstenite::connect_async(ws_url(addr)).await.expect("ws connects").0
}

/// The next JSON message, or `None` if nothing comes within `wait`.
async fn next_json(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                return Some(serde_json::from_str(text.as_str()).expect("server sends JSON"));
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(err))) => panic!("socket error: {err}"),
        }
    }
}

/// The next message that is not a trickled candidate.
async fn next_non_ice(ws: &mut Ws) -> Option<Value> {
    loop {
        let message = next_json(ws, Duration::from_secs(5)).await?;
        if message["type"] != "ice" {
            return Some(message);
        }
    }
}

async fn expect_error(ws: &mut Ws, frame: Message, code: &str) {
    let shown: String = format!("{frame:?}").chars().take(120).collect();
    ws.send(frame).await.expect("send");
    let reply = next_non_ice(ws).await.unwrap_or_else(|| panic!("no reply to {shown}"));
    assert_eq!(reply["type"], "error", "reply to {shown}: {reply}");
    assert_eq!(reply["code"], code, "reply to {shown}: {reply}");
    assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()), "{reply}");
}

fn text(value: Value) -> Message {
    Message::text(value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_code_and_a_good_offer_still_works() {
    let server = start(test_config()).await;
    let mut ws = connect(server.addr).await;

    expect_error(&mut ws, Message::text("{not json"), "bad_json").await;
    expect_error(&mut ws, Message::text("[1,2,3]"), "bad_json").await;
    expect_error(&mut ws, Message::text("\"offer\""), "bad_json").await;
    expect_error(&mut ws, Message::binary(vec![0xff, 0x00, 0x7b]), "bad_json").await;
    expect_error(&mut ws, text(json!({"sdp": "v=0"})), "bad_json").await;
    expect_error(&mut ws, text(json!({"type": 42})), "bad_json").await;
    expect_error(&mut ws, text(json!({"type": "subscribe"})), "unknown_type").await;
    expect_error(&mut ws, text(json!({"type": "offer"})), "bad_sdp").await;
    expect_error(&mut ws, text(json!({"type": "offer", "sdp": 7})), "bad_sdp").await;
    expect_error(&mut ws, text(json!({"type": "offer", "sdp": "hello"})), "bad_sdp").await;
    expect_error(
        &mut ws,
        text(json!({"type": "offer", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"})),
        "bad_sdp",
    )
    .await;
    expect_error(
        &mut ws,
        text(json!({"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"})),
        "bad_sdp",
    )
    .await;
    expect_error(
        &mut ws,
        text(json!({"type": "offer", "sdp": format!("v=0\r\n{}", "a=x\r\n".repeat(7_000))})),
        "bad_sdp",
    )
    .await;
    expect_error(&mut ws, text(json!({"type": "ice", "candidate": 5})), "bad_candidate").await;
    expect_error(
        &mut ws,
        text(json!({"type": "ice", "candidate": {"candidate": "garbage"}})),
        "bad_candidate",
    )
    .await;
    expect_error(&mut ws, text(json!({"type": "ice", "candidate": {"sdpMid": "0"}})), "bad_candidate").await;

    // End-of-candidates in both forms, and a candidate before the offer: accepted quietly.
    ws.send(text(json!({"type": "ice", "candidate": null}))).await.unwrap();
    ws.send(text(json!({"type": "ice", "candidate": {"candidate": "", "sdpMid": "0"}}))).await.unwrap();
    ws.send(text(json!({"type": "ice", "candidate": {
        "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}})))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws, Duration::from_millis(300)).await, None, "no reply to accepted input");

    // The same connection can still publish.
    let (_pc, sdp) = real_offer().await;
    ws.send(text(json!({"type": "offer", "sdp": sdp}))).await.unwrap();
    let answer = next_non_ice(&mut ws).await.expect("an answer");
    assert_eq!(answer["type"], "answer", "{answer}");
    assert!(answer["sdp"].as_str().unwrap().starts_with("v=0"));
    let session = answer["session"].as_str().expect("session id").to_owned();
    assert!(sessions(server.addr).await.iter().any(|s| s["id"] == session.as_str()));

    // After the offer: a well-formed but unusable candidate, and a second offer.
    expect_error(&mut ws, text(json!({"type": "ice", "candidate": {
        "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 notaport typ host", "sdpMid": "0", "sdpMLineIndex": 0}})), "bad_candidate").await;
    expect_error(&mut ws, text(json!({"type": "offer", "sdp": sdp})), "already_negotiated").await;

    // Closing the socket ends the session.
    ws.close(None).await.unwrap();
    assert!(
        eventually(Duration::from_secs(1), || async { sessions(server.addr).await.is_empty() }).await,
        "session outlived its WebSocket"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_sessions_the_server_is_full() {
    let mut config = test_config();
    config.max_sessions = 1;
    let server = start(config).await;
    let (_pc1, sdp1) = real_offer().await;
    let (_pc2, sdp2) = real_offer().await;

    let mut first = connect(server.addr).await;
    first.send(text(json!({"type": "offer", "sdp": sdp1}))).await.unwrap();
    assert_eq!(next_non_ice(&mut first).await.expect("answer")["type"], "answer");

    let mut second = connect(server.addr).await;
    expect_error(&mut second, text(json!({"type": "offer", "sdp": sdp2})), "server_full").await;
    assert_eq!(next_json(&mut second, Duration::from_secs(2)).await, None, "closed after server_full");

    let (status, metrics) = http_get(server.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("face_echo_sessions_active 1"), "{metrics}");
    drop(first);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes_answer() {
    let server = start(test_config()).await;
    assert_eq!(http_get(server.addr, "/healthz").await, (200, "ok".to_owned()));
    let (status, page) = http_get(server.addr, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<html") || page.contains("<!doctype") || page.contains("<!DOCTYPE"), "{page}");
    assert_eq!(http_get(server.addr, "/api/sessions").await, (200, "[]".to_owned()));
    assert_eq!(http_get(server.addr, "/no/such/file.js").await.0, 404);
    assert_eq!(http_get(server.addr, "/models/../Cargo.toml").await.0, 404);
    // A plain GET on /ws is not an upgrade: refused, server unharmed.
    assert!(http_get(server.addr, "/ws").await.0 >= 400);
    assert_eq!(http_get(server.addr, "/healthz").await.0, 200);
    server.shutdown().await.unwrap();
}

/// What a hostile case must get back.
enum Expect {
    /// These error codes, in this order (answers and candidates in between are fine).
    Codes(&'static [&'static str]),
    /// An error with this code, then the socket closes.
    CodeThenClose(&'static str),
    /// The socket closes (the WebSocket layer refused the frame).
    Closed,
    /// Nothing: accepted quietly.
    Quiet,
}

struct Case {
    name: &'static str,
    frames: Vec<Message>,
    expect: Expect,
}

fn case(name: &'static str, frames: Vec<Message>, expect: Expect) -> Case {
    Case { name, frames, expect }
}

fn candidate(line: &str) -> Message {
    text(json!({"type": "ice", "candidate": {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}}))
}

fn offer(sdp: impl Into<String>) -> Message {
    text(json!({"type": "offer", "sdp": sdp.into()}))
}

/// What came back on `ws` until it closed, went quiet for `quiet`, or gave
/// `enough` error codes: the codes in order, and whether it closed.
async fn replies(ws: &mut Ws, quiet: Duration, enough: usize) -> (Vec<String>, bool) {
    let mut codes = Vec::new();
    while codes.len() < enough {
        match tokio::time::timeout(quiet, ws.next()).await {
            Ok(Some(Ok(Message::Text(frame)))) => {
                let value: Value = serde_json::from_str(frame.as_str()).expect("server sends JSON");
                if value["type"] == "error" {
                    codes.push(value["code"].as_str().unwrap_or("?").to_owned());
                }
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return (codes, true),
            Ok(Some(Ok(_))) => {}
            Err(_) => return (codes, false),
        }
    }
    (codes, false)
}

/// ≥ 30 hostile inputs, each on its own connection: every one gets its typed error
/// or a clean close, the server stays up, and an echo session running beside them
/// all the while loses no packet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_corpus_never_hurts_an_echo_session_beside_it() {
    use tokio_tungstenite::tungstenite::protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    };
    let server = start(test_config()).await;

    // The bystander: publishes at 30 fps until told to stop.
    let mut publisher =
        face_echo::loadgen::client::ClientPeer::connect(&ws_url(server.addr), CONNECT_TIMEOUT)
            .await
            .expect("connects");
    let mut echoed_rx = publisher.take_echoed();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Encoded before the corpus starts; at least 2 s of video whatever the corpus takes.
    let clip = face_echo::loadgen::clip::encode_test_pattern(320, 240, 60, 30, 500).expect("clip");
    let bystander = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let mut sent = Vec::new();
            let mut ticker = tokio::time::interval(Duration::from_millis(33));
            for (index, frame) in clip.iter().cycle().enumerate() {
                if index >= clip.len() && stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                ticker.tick().await;
                sent.extend(publisher.send_frame(&frame.data, 3000).await.expect("send"));
            }
            (publisher, sent)
        }
    });

    let (_pc, real) = real_offer().await;
    let video_lines = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\n";
    let text_frame = |bytes: Vec<u8>| Message::Frame(Frame::message(bytes, OpCode::Data(Data::Text), true));
    let cases = vec![
        case("invalid UTF-8 in a text frame", vec![text_frame(vec![b'{', 0xff, 0xfe, b'}'])], Expect::Closed),
        case("binary frame", vec![Message::binary(vec![1, 2, 3])], Expect::Codes(&["bad_json"])),
        case("empty text", vec![Message::text("")], Expect::Codes(&["bad_json"])),
        case("null", vec![Message::text("null")], Expect::Codes(&["bad_json"])),
        case("empty object", vec![Message::text("{}")], Expect::Codes(&["bad_json"])),
        case("type null", vec![text(json!({"type": null}))], Expect::Codes(&["bad_json"])),
        case("type array", vec![text(json!({"type": ["offer"]}))], Expect::Codes(&["bad_json"])),
        case("type in capitals", vec![text(json!({"type": "OFFER"}))], Expect::Codes(&["unknown_type"])),
        case("type emoji", vec![text(json!({"type": "🎥"}))], Expect::Codes(&["unknown_type"])),
        case(
            "60 KB type string",
            vec![text(json!({"type": "x".repeat(60_000)}))],
            Expect::Codes(&["unknown_type"]),
        ),
        case(
            "100 KB text frame",
            vec![Message::text("a".repeat(100_000))],
            Expect::CodeThenClose("too_large"),
        ),
        case(
            "100 KB binary frame",
            vec![Message::binary(vec![0u8; 100_000])],
            Expect::CodeThenClose("too_large"),
        ),
        case("2 MB frame", vec![Message::text("a".repeat(2_000_000))], Expect::Closed),
        case("deep array nesting", vec![Message::text("[".repeat(60_000))], Expect::Codes(&["bad_json"])),
        case(
            "deep object nesting",
            vec![Message::text(format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000)))],
            Expect::Codes(&["bad_json"]),
        ),
        case(
            "number out of range",
            vec![Message::text(r#"{"type":"offer","sdp":1e999}"#)],
            Expect::Codes(&["bad_json"]),
        ),
        case(
            "sdp is an array",
            vec![text(json!({"type": "offer", "sdp": ["v=0"]}))],
            Expect::Codes(&["bad_sdp"]),
        ),
        case("sdp empty", vec![offer("")], Expect::Codes(&["bad_sdp"])),
        case(
            "sdp garbage",
            vec![offer(format!("v=0\r\n{video_lines}a=fingerprint:nonsense\r\n\u{1}\u{2}"))],
            Expect::Codes(&["bad_sdp"]),
        ),
        case(
            "sdp with NUL bytes",
            vec![offer(format!("v=0\r\n{video_lines}a=\u{0}\u{0}\r\n"))],
            Expect::Codes(&["bad_sdp"]),
        ),
        case(
            "sdp with 300 m-lines",
            vec![offer(format!("v=0\r\n{}", video_lines.repeat(300)))],
            Expect::Codes(&["bad_sdp"]),
        ),
        case(
            "sdp over 32 KiB",
            vec![offer(format!("v=0\r\n{video_lines}{}", "a=x\r\n".repeat(8_000)))],
            Expect::Codes(&["bad_sdp"]),
        ),
        case(
            "real offer with its m-line mangled",
            vec![offer(real.replace("m=video 9", "m=video x"))],
            Expect::Codes(&["bad_sdp"]),
        ),
        case(
            "33 candidates before the offer",
            (0..33).map(|i| candidate(&format!("candidate:{i} 1 udp 1 127.0.0.1 9 typ host"))).collect(),
            Expect::Codes(&["no_offer"]),
        ),
        case("candidate without fields", vec![candidate("candidate:")], Expect::Codes(&["bad_candidate"])),
        case(
            "candidate 2000 bytes",
            vec![candidate(&format!("candidate:1 1 udp 1 127.0.0.1 9 typ host {}", "x".repeat(2_000)))],
            Expect::Codes(&["bad_candidate"]),
        ),
        case(
            "candidate is a number",
            vec![text(json!({"type": "ice", "candidate": 5}))],
            Expect::Codes(&["bad_candidate"]),
        ),
        case(
            "candidate fields of the wrong types",
            vec![text(json!({"type": "ice", "candidate": {"candidate": 1, "sdpMLineIndex": "zero"}}))],
            Expect::Codes(&["bad_candidate"]),
        ),
        case(
            "candidate on an unreachable address",
            vec![candidate("candidate:1 1 udp 1 ::zz 9 typ host")],
            Expect::Quiet,
        ),
        case(
            "extra fields",
            vec![text(json!({"type": "ice", "candidate": null, "extra": [1, {"x": 2}]}))],
            Expect::Quiet,
        ),
        case("close at once", vec![Message::Close(None)], Expect::Closed),
        case(
            "second offer",
            vec![offer(real.clone()), offer(real.clone())],
            Expect::Codes(&["already_negotiated"]),
        ),
        case(
            "bad candidate after the offer",
            vec![offer(real.clone()), candidate("candidate:1 1 udp 1 127.0.0.1 notaport typ host")],
            Expect::Codes(&["bad_candidate"]),
        ),
        case(
            "65 candidates on a session",
            std::iter::once(offer(real.clone()))
                .chain(
                    (0..65).map(|i| {
                        candidate(&format!("candidate:{i} 1 udp 1 127.0.0.1 {} typ host", 1000 + i))
                    }),
                )
                .collect(),
            Expect::Codes(&["too_many_candidates"]),
        ),
        case(
            "flood of 300 frames",
            (0..300).map(|_| Message::text("{}")).collect(),
            Expect::CodeThenClose("rate_limited"),
        ),
    ];
    assert!(cases.len() >= 30, "{} cases", cases.len());

    for Case { name, frames, expect } in cases {
        let mut ws = connect(server.addr).await;
        for frame in frames {
            // The server may close mid-way (that is the point of some cases).
            if ws.send(frame).await.is_err() {
                break;
            }
        }
        let quiet = Duration::from_millis(if matches!(expect, Expect::Quiet) { 400 } else { 3000 });
        let enough = if let Expect::Codes(want) = expect { want.len() } else { usize::MAX };
        let (codes, closed) = replies(&mut ws, quiet, enough).await;
        match expect {
            Expect::Codes(want) => assert_eq!(codes, want, "{name}"),
            Expect::CodeThenClose(want) => {
                assert_eq!(codes.last().map(String::as_str), Some(want), "{name}: got {codes:?}");
                assert!(closed, "{name}: still open after {want}");
            }
            Expect::Closed => assert!(closed, "{name}: not closed (got {codes:?})"),
            Expect::Quiet => assert!(codes.is_empty() && !closed, "{name}: got {codes:?}, closed {closed}"),
        }
        let (status, _) = http_get(server.addr, "/healthz").await;
        assert_eq!(status, 200, "{name}: the server is down");
    }

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (publisher, sent) = bystander.await.expect("bystander");
    let mut echoed = Vec::new();
    while let Ok(Some(packet)) = tokio::time::timeout(Duration::from_millis(1500), echoed_rx.recv()).await {
        echoed.push(packet);
    }
    let identical = identical_payloads(&sent, &echoed);
    println!("bystander: {} packets sent, {identical} echoed identical", sent.len());
    assert!(sent.len() > 20, "the bystander hardly sent");
    assert_eq!(identical, sent.len(), "the echo session beside the corpus lost packets");
    publisher.close().await.unwrap();
    assert!(
        eventually(Duration::from_secs(2), || async { sessions(server.addr).await.is_empty() }).await,
        "sessions left: {:?}",
        sessions(server.addr).await
    );
    server.shutdown().await.unwrap();
}

/// A socket that never offers is closed after `--offer-timeout`, with `idle_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_socket_is_closed() {
    let mut config = test_config();
    config.offer_timeout = 1;
    let server = start(config).await;
    let mut ws = connect(server.addr).await;
    let (codes, closed) = replies(&mut ws, Duration::from_secs(3), usize::MAX).await;
    assert_eq!(codes, vec!["idle_timeout"]);
    assert!(closed);
    server.shutdown().await.unwrap();
}

/// A page from another site may not open /ws (cross-site WebSocket hijacking);
/// the server's own origin, a listed one, and clients that send none may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_our_own_or_listed_origins_open_the_websocket() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut config = test_config();
    config.allow_origin = vec!["https://demo.example.org/".into()];
    let server = start(config).await;
    let try_origin = |origin: Option<String>| async move {
        let mut request = ws_url(server.addr).into_client_request().unwrap();
        if let Some(origin) = origin {
            request.headers_mut().insert("origin", origin.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok(_) => 101,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
            Err(err) => panic!("{err}"),
        }
    };
    assert_eq!(try_origin(None).await, 101);
    assert_eq!(try_origin(Some(format!("http://{}", server.addr))).await, 101);
    assert_eq!(try_origin(Some("https://demo.example.org".into())).await, 101);
    assert_eq!(try_origin(Some("https://evil.example.com".into())).await, 403);
    assert_eq!(try_origin(Some(format!("http://{}.evil.example.com", server.addr.ip()))).await, 403);
    assert_eq!(try_origin(Some("null".into())).await, 403);
    server.shutdown().await.unwrap();
}
