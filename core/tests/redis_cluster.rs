//! The Redis store on a Redis Cluster of three masters started here (`cluster-enabled yes`,
//! joined with `redis-cli --cluster create`): exact limits, keys spread over the masters,
//! several limits of one identity in one slot, batches split by slot, NOSCRIPT on every node.

#![cfg(feature = "redis")]

mod support;

use flux_core::store::redis::{key_slot, RedisConfig, RedisStore, Source};
use flux_core::{AlgorithmKind, Error, Limiter, Quota};
use support::RedisCluster;

const HOUR: u64 = 3_600_000_000_000;

fn limiter(store: &RedisStore, n: u64, kind: AlgorithmKind, prefix: &str) -> Limiter {
    Limiter::builder(Quota::new(n, HOUR, None).unwrap())
        .algorithm(kind)
        .prefix(prefix)
        .build_redis(store)
        .unwrap()
}

#[test]
fn limits_work_on_a_cluster_and_keys_spread_over_its_masters() {
    let cluster = RedisCluster::start();
    let store = RedisStore::connect(RedisConfig {
        nodes: cluster.addresses(),
        fail_silently: false,
        timeout_ms: 2_000,
        ..RedisConfig::default()
    })
    .unwrap();
    for kind in AlgorithmKind::ALL {
        let limiter = limiter(&store, 3, kind, "cl:");
        for i in 0..40 {
            let identity = format!("client-{i}");
            let allowed = (0..5)
                .filter(|_| limiter.hit(&identity, 1).unwrap().allowed)
                .count();
            assert_eq!(allowed, 3, "{kind} {identity}");
        }
        assert_eq!(limiter.store().len(), 40, "{kind}: SCAN over every master");
    }
    let sizes: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|node| node.cli(&["DBSIZE"]).parse().unwrap())
        .collect();
    assert_eq!(sizes.iter().sum::<u64>(), 240);
    assert!(
        sizes.iter().all(|&n| n > 20),
        "keys spread over every master: {sizes:?}"
    );

    // Several limits of one identity: one slot, one atomic script.
    let second = limiter(&store, 10, AlgorithmKind::Gcra, "multi-s:");
    let hour = limiter(&store, 2, AlgorithmKind::SlidingLog, "multi-h:");
    let hits = [(&second, "user-7", 1), (&hour, "user-7", 1)];
    assert!(store.hit_many(&hits).unwrap().allowed);
    assert!(store.hit_many(&hits).unwrap().allowed);
    let denied = store.hit_many(&hits).unwrap();
    assert!(!denied.allowed && denied.decisions[0].allowed && !denied.decisions[1].allowed);
    assert_eq!(second.peek("user-7").unwrap().remaining, 8, "not consumed");
    assert_eq!(
        key_slot("flux:multi-s:{user-7}:gcra"),
        key_slot("flux:multi-h:{user-7}:sliding_log")
    );
    // Different identities cannot share a slot: refused before anything is sent.
    let err = store
        .hit_many(&[(&second, "a", 1), (&hour, "b", 1)])
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(ref m) if m.contains("hash slot")),
        "{err}"
    );

    // The script cache flushed on every node: scripts are loaded again where needed.
    for node in &cluster.nodes {
        assert_eq!(node.cli(&["SCRIPT", "FLUSH"]), "OK");
    }
    let fresh = limiter(&store, 5, AlgorithmKind::TokenBucket, "after-flush:");
    for i in 0..20 {
        let outcome = fresh.hit_outcome(&format!("id{i}"), 1).unwrap();
        assert_eq!(outcome.source, Source::Redis);
        assert_eq!(outcome.decision.remaining, 4);
    }
    let outcome = store
        .hit_many(&[(&fresh, "id0", 1), (&hour, "id0", 1)])
        .unwrap();
    assert!(outcome.allowed);
    let batch = store.hit_batch(&[(&fresh, "id1", 1), (&fresh, "id2", 1)]);
    assert!(batch
        .iter()
        .all(|r| r.as_ref().unwrap().decision.remaining == 3));

    // A batch over identities on every master, two limits mixed: one batch script per hash
    // slot (a script may only touch one slot here), each hit decided as if alone.
    let window = limiter(&store, 3, AlgorithmKind::SlidingWindow, "cl-batch:");
    let gcra = limiter(&store, 3, AlgorithmKind::Gcra, "cl-batch:");
    let ids: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    let hits: Vec<(&Limiter, &str, u64)> = (0..4)
        .flat_map(|_| {
            ids.iter()
                .flat_map(|id| [(&window, id.as_str(), 1), (&gcra, id, 1)])
        })
        .collect();
    for (i, outcome) in store.hit_batch(&hits).into_iter().enumerate() {
        let outcome = outcome.unwrap();
        assert_eq!(outcome.source, Source::Redis);
        // The round (of 80 hits) a hit belongs to is its count on its key: 3 pass.
        assert_eq!(outcome.decision.allowed, i / 80 < 3, "hit {i}");
    }

    // `cluster = true` with a single seed URL finds the rest.
    let seeded = RedisStore::connect(RedisConfig {
        cluster: true,
        fail_silently: false,
        ..RedisConfig::from_url(format!("redis://{}", cluster.addresses()[1]))
    })
    .unwrap();
    let again = limiter(&seeded, 3, AlgorithmKind::Gcra, "cl:");
    assert!(!again.hit("client-0", 1).unwrap().allowed, "the same state");
}
