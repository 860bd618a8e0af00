//! Embedding the store: start a member with a data directory, use it
//! through `KvClient`, watch a key, stop, restart, and find the data again.
//!
//! Run with `cargo run -p keelson-examples --example embed_kv`;
//! `cargo test -p keelson-examples` runs it too.

use keelson_kv::client::{KvClient, Precondition, WatchOptions};
use keelson_kv::embedded::EmbeddedKvClient;
use keelson_kv::server::{KvServer, ServerConfig};

/// Everything the example does; returns what it read back after restart.
async fn run(data_dir: &std::path::Path) -> Result<String, Box<dyn std::error::Error>> {
    let config = ServerConfig {
        data_dir: data_dir.to_path_buf(),
        listen_client_urls: vec![], // in-process only
        ..ServerConfig::default()
    };
    let server = KvServer::start(config.clone()).await?;
    let kv = EmbeddedKvClient::from_handle(&server);

    let created = kv.set("/app/leader", "node-a", Default::default()).await?;
    println!("set /app/leader at index {}", created.etcd_index);

    // A watch from the next index sees the compare-and-swap below.
    let watcher = {
        let kv = kv.clone();
        let from = created.etcd_index + 1;
        tokio::spawn(async move {
            kv.watch_once(
                "/app",
                WatchOptions {
                    recursive: true,
                    wait_index: Some(from),
                },
            )
            .await
        })
    };
    let only_if = Precondition {
        value: Some("node-a".into()),
        index: None,
    };
    kv.compare_and_swap("/app/leader", "node-b", only_if, None)
        .await?;
    let event = watcher.await??;
    println!(
        "watch saw {:?} -> {:?}",
        event.event.action,
        event.event.node.as_ref().and_then(|n| n.value.as_deref())
    );
    server.shutdown().await?;

    // The data is in the directory: a new member on it has the key.
    let server = KvServer::start(config).await?;
    let kv = EmbeddedKvClient::from_handle(&server);
    let got = kv.get("/app/leader", Default::default()).await?;
    let value = got.event.node.and_then(|n| n.value).unwrap_or_default();
    println!("after restart: /app/leader = {value}");
    server.shutdown().await?;
    Ok(value)
}

#[cfg_attr(test, allow(dead_code))]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    run(&dir.path().join("embed.etcd")).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_example_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let value = super::run(&dir.path().join("embed.etcd"))
            .await
            .expect("example runs");
        assert_eq!(value, "node-b");
    }
}
