//! Sessions end with their client: socket closed, media gone, or server stopping.

mod common;

use std::time::Duration;

use common::*;
use face_echo::loadgen::client::ClientPeer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_gone_closes_the_session_and_tells_the_client() {
    let mut config = test_config();
    config.disconnect_timeout = 1;
    let server = start(config).await;
    let publisher = ClientPeer::connect(&ws_url(server.addr), CONNECT_TIMEOUT).await.expect("connects");
    assert_eq!(sessions(server.addr).await.len(), 1);

    publisher.close_media_only().await.expect("media closed");
    let told = eventually(Duration::from_secs(20), || async { !publisher.server_errors().is_empty() }).await;
    println!("server said: {:?}", publisher.server_errors());
    assert!(told, "the client was not told its session ended");
    assert!(
        eventually(Duration::from_secs(2), || async { sessions(server.addr).await.is_empty() }).await,
        "session still listed after its media ended"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_session_and_tells_clients() {
    let server = start(test_config()).await;
    let url = ws_url(server.addr);
    let a = ClientPeer::connect(&url, CONNECT_TIMEOUT).await.expect("a connects");
    let b = ClientPeer::connect(&url, CONNECT_TIMEOUT).await.expect("b connects");
    let viewer = ClientPeer::watch(&url, &a.watch_token, CONNECT_TIMEOUT).await.expect("a viewer connects");
    assert_eq!(sessions(server.addr).await.len(), 2);
    let started = std::time::Instant::now();
    let sessions_table = server.state.sessions.clone();
    let metrics = server.state.metrics.clone();
    assert_eq!(sessions_table.slots_taken(), 3, "two publishers and a viewer");
    server.shutdown().await.expect("clean shutdown");
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
    assert!(sessions_table.is_empty(), "sessions left after shutdown");
    // Shutdown returns once viewers are closed too, not only publishers.
    assert_eq!(sessions_table.slots_taken(), 0, "a viewer still open after shutdown");
    assert_eq!(metrics.viewers_active.get(), 0);
    for publisher in [&a, &b, &viewer] {
        assert!(
            eventually(Duration::from_secs(2), || async {
                publisher.server_errors().iter().any(|e| e.contains("server_shutdown"))
            })
            .await,
            "client not told of the shutdown: {:?}",
            publisher.server_errors()
        );
    }
}
