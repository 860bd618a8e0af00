//! Three members over the in-process transport: election, replication,
//! failover and snapshot catch-up. Proves the seams are ready for the
//! cluster issue's HTTP transport.

mod raft_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keelson_kv::raft::{InProcessRouter, KvNode, NodeError, PeerNode, RaftConfig};
use keelson_kv::storage::MemStorage;
use raft_support::{eventually, ListSm};

const LONG: Duration = Duration::from_secs(30);

struct Cluster {
    router: InProcessRouter,
    nodes: BTreeMap<u64, Arc<KvNode<ListSm>>>,
}

impl Cluster {
    async fn start(snapshot_count: u64) -> Cluster {
        let router = InProcessRouter::new();
        let members: BTreeMap<u64, PeerNode> = (1..=3)
            .map(|i| {
                (
                    i,
                    PeerNode::new(format!("infra{i}"), vec![format!("http://10.0.0.{i}:2380")]),
                )
            })
            .collect();
        let mut nodes = BTreeMap::new();
        for id in 1..=3u64 {
            let mut c = RaftConfig::new(id, format!("infra{id}"), "/unused");
            c.peer_urls = members[&id].peer_urls.clone();
            c.initial_members = members.clone();
            c.heartbeat_interval = Duration::from_millis(30);
            c.election_timeout = Duration::from_millis(300);
            c.snapshot_count = snapshot_count;
            c.snapshot_catchup_entries = 0;
            let storage = Arc::new(MemStorage::new(Vec::new(), 0));
            let node =
                KvNode::start_with_storage(c, storage, ListSm::default(), router.transport_for(id))
                    .await
                    .unwrap();
            router.register(id, node.raft().clone());
            nodes.insert(id, Arc::new(node));
        }
        Cluster { router, nodes }
    }

    async fn leader(&self) -> Arc<KvNode<ListSm>> {
        let mut found = None;
        eventually("a leader", LONG, || {
            found = self.nodes.values().find(|n| n.is_leader()).cloned();
            found.is_some()
        })
        .await;
        found.unwrap_or_else(|| unreachable!())
    }

    async fn converged(&self, ids: &[u64], n: usize) {
        eventually("replicas to converge", LONG, || {
            let states: Vec<Vec<(u64, Vec<u8>)>> = ids
                .iter()
                .map(|id| self.nodes[id].read(|sm| sm.items.clone()))
                .collect();
            states[0].len() == n && states.iter().all(|s| s == &states[0])
        })
        .await;
    }

    async fn shutdown(self) {
        for n in self.nodes.values() {
            n.shutdown().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_a_leader_and_replicate() {
    let c = Cluster::start(100_000).await;
    let leader = c.leader().await;
    for n in c.nodes.values() {
        assert_eq!(n.wait_for_leader(LONG).await.unwrap(), leader.member_id());
        assert_eq!(n.members().len(), 3);
    }
    let mut last = 0;
    for i in 0..100 {
        last = leader
            .propose(format!("k{i}").into_bytes())
            .await
            .unwrap()
            .0;
    }
    c.converged(&[1, 2, 3], 100).await;

    // Followers refuse proposals and name the leader.
    let follower = c.nodes.values().find(|n| !n.is_leader()).unwrap().clone();
    match follower.propose(b"x".to_vec()).await {
        Err(NodeError::NotLeader { leader: l }) => assert_eq!(l, Some(leader.member_id())),
        other => panic!("expected NotLeader, got {other:?}"),
    }
    // A linearizable read on the leader covers every acknowledged write.
    let at = leader.linearizable_read().await.unwrap();
    assert!(
        at >= last,
        "read index {at} behind acknowledged write {last}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_leader_elects_another_and_the_old_one_catches_up() {
    let c = Cluster::start(100_000).await;
    let old = c.leader().await;
    old.propose(b"before".to_vec()).await.unwrap();
    c.router.set_isolated(old.member_id(), true);

    let mut new_leader = None;
    eventually("a new leader", LONG, || {
        new_leader = c
            .nodes
            .values()
            .find(|n| n.member_id() != old.member_id() && n.is_leader())
            .cloned();
        new_leader.is_some()
    })
    .await;
    let new_leader = new_leader.unwrap_or_else(|| unreachable!());
    assert!(new_leader.current_term() > 1);
    new_leader.propose(b"after".to_vec()).await.unwrap();

    c.router.set_isolated(old.member_id(), false);
    c.converged(&[1, 2, 3], 2).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_catches_up_from_a_snapshot() {
    let c = Cluster::start(20).await;
    let leader = c.leader().await;
    let lagging = c
        .nodes
        .values()
        .find(|n| n.member_id() != leader.member_id())
        .unwrap()
        .clone();
    c.router.set_isolated(lagging.member_id(), true);
    for i in 0..100 {
        leader.propose(format!("v{i}").into_bytes()).await.unwrap();
    }
    eventually("leader purges its log", LONG, || {
        leader.storage().purged().is_some_and(|p| p.index >= 60)
    })
    .await;
    c.router.set_isolated(lagging.member_id(), false);
    c.converged(&[1, 2, 3], 100).await;
    assert!(
        lagging.snapshot_index().is_some(),
        "follower did not install a snapshot"
    );
    c.shutdown().await;
}
