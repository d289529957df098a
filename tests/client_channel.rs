//! A client's `face-echo` data channel: it opens against the server, and messages
//! on it (text or binary) leave the echo alone.

mod common;

use std::time::Duration;

use common::*;
use face_echo::loadgen::client::{ClientOptions, ClientPeer};

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
