//! A client's `face-echo` data channel: it opens against the server, messages on
//! it (text or binary) leave the echo alone, and a client with many channels gets
//! the message budget of one.

mod common;

use std::time::{Duration, Instant};

use common::*;
use face_echo::loadgen::client::{ClientOptions, ClientPeer};

/// The server's data-channel rate limit (`loop_messages::MAX_MESSAGE_BURST` and
/// `MAX_MESSAGES_PER_SECOND`, crate-private).
const MAX_MESSAGE_BURST: f64 = 120.0;
const MAX_MESSAGES_PER_SECOND: f64 = 60.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_channel_opens_and_messages_do_not_disturb_the_echo() {
    let server = start(test_config()).await;
    let url = ws_url(server.addr);
    let options = ClientOptions { data_channel: true, ..Default::default() };
    let mut publisher = ClientPeer::connect_options(&url, options, CONNECT_TIMEOUT).await.expect("connects");
    publisher.wait_channel_open(CONNECT_TIMEOUT).await.expect("the face-echo channel opens");
    let mut messages = publisher.channel_messages().expect("a channel was offered");

    publisher.send_on_channel(r#"{"type":"hello"}"#).await.expect("text sent");
    publisher.send_bytes_on_channel(&[0xff, 0x00, 0xfe]).await.expect("binary sent");
    let sent = publish(&mut publisher, 60).await;
    publisher.send_on_channel("not json").await.expect("text sent");
    let echoed = collect_echo(&mut publisher, Duration::from_millis(1500)).await;

    let identical = identical_payloads(&sent, &echoed);
    assert!(identical * 100 >= sent.len() * 95, "only {identical} of {} echoed identical", sent.len());
    assert!(publisher.server_errors().is_empty(), "server errors: {:?}", publisher.server_errors());
    let mut received = Vec::new();
    while let Ok(text) = messages.try_recv() {
        received.push(text);
    }
    println!("echoed {identical} of {} identical; the server sent {} messages", sent.len(), received.len());

    // A viewer's channel opens too.
    let options = ClientOptions { data_channel: true, ..Default::default() };
    let viewer = ClientPeer::watch_options(&url, &publisher.watch_token, options, CONNECT_TIMEOUT)
        .await
        .expect("viewer connects");
    viewer.wait_channel_open(CONNECT_TIMEOUT).await.expect("the viewer's channel opens");
    viewer.send_on_channel(r#"{"type":"hello"}"#).await.expect("text sent");

    viewer.close().await.expect("close");
    publisher.close().await.expect("close");
    server.shutdown().await.expect("shutdown");
}

/// The rate limit is per PeerConnection: four channels, each sending less than one
/// channel's burst, together get one burst (and the rate) through, not four.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_channels_share_one_message_budget() {
    const CHANNELS: usize = 4;
    let per_channel = (MAX_MESSAGE_BURST as usize) * 5 / 6;
    let server = start(test_config()).await;
    let options = ClientOptions { data_channel: true, ..Default::default() };
    let publisher =
        ClientPeer::connect_options(&ws_url(server.addr), options, CONNECT_TIMEOUT).await.expect("connects");
    publisher.wait_channel_open(CONNECT_TIMEOUT).await.expect("the first channel opens");
    let mut more = Vec::new();
    for _ in 1..CHANNELS {
        more.push(publisher.open_another_channel(CONNECT_TIMEOUT).await.expect("another channel opens"));
    }

    let started = Instant::now();
    for _ in 0..per_channel {
        publisher.send_on_channel(r#"{"type":"detections"}"#).await.expect("sent");
        for channel in &more {
            channel.send_text(r#"{"type":"detections"}"#).await.expect("sent");
        }
    }
    let sent = (CHANNELS * per_channel) as u64;
    let loop_stats = || async { sessions(server.addr).await.remove(0)["loop"].clone() };
    assert!(
        eventually(Duration::from_secs(10), || async { loop_stats().await["received"] == sent }).await,
        "the server read every message: {}",
        loop_stats().await
    );
    let spent = started.elapsed().as_secs_f64();
    let stats = loop_stats().await;
    let received = stats["received"].as_u64().expect("received");
    let dropped = stats["dropped_rate"].as_u64().expect("dropped_rate");
    let budget = MAX_MESSAGE_BURST + MAX_MESSAGES_PER_SECOND * spent;
    println!("{CHANNELS} channels, {sent} messages in {spent:.2} s: {stats}");
    assert_eq!(stats["channels_open"], CHANNELS, "{stats}");
    assert!(
        ((received - dropped) as f64) <= budget + 1.0,
        "more than one budget ({budget:.0}) got through: {stats}"
    );
    drop(more);
    publisher.close().await.expect("close");
    server.shutdown().await.expect("shutdown");
}
