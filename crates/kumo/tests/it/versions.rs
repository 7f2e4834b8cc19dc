//! Versions and aliases through the real server: publish freezes `$LATEST`, `NAME:N` and
//! `NAME:alias` reach the right code and config on every way in (data plane, invoke API,
//! async, function calls), rollback by moving an alias, 409 on deleting an aliased version,
//! weighted canaries split traffic, and everything survives a restart.

use crate::harness::{TestServer, config, error_code};
use kumo_api::{Canary, FunctionConfig};
use std::collections::BTreeMap;

fn greeting(text: &str) -> FunctionConfig {
    FunctionConfig {
        env: BTreeMap::from([("GREETING".to_string(), text.to_string())]),
        ..config()
    }
}

/// Deploys the probe as `greet` with GREETING = `text`, then publishes it.
async fn deploy_and_publish(server: &TestServer, text: &str) -> u32 {
    server
        .deploy("greet", test_programs::HTTP_PROBE, greeting(text))
        .await;
    let (version, created) = server.client.publish_version("greet", text).await.unwrap();
    assert!(created);
    version.version
}

async fn greeting_of(server: &TestServer, target: &str) -> (u16, String) {
    let response = server
        .get(&format!("/fn/{target}/env/GREETING"))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_frozen_and_aliases_route_releases() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &[]);
    assert_eq!(deploy_and_publish(&server, "one").await, 1);
    // Nothing changed: publishing again makes no new version.
    let again = String::from_utf8(server.cli(&["publish", "greet"]).stdout).unwrap();
    assert!(again.contains("nothing published"), "{again}");
    assert_eq!(deploy_and_publish(&server, "two").await, 2);
    server
        .deploy("greet", test_programs::HTTP_PROBE, greeting("three"))
        .await;

    // Each version keeps its own config; no qualifier (or $LATEST) is the newest deploy.
    assert_eq!(greeting_of(&server, "greet:1").await, (200, "one".into()));
    assert_eq!(greeting_of(&server, "greet:2").await, (200, "two".into()));
    assert_eq!(greeting_of(&server, "greet").await, (200, "three".into()));
    assert_eq!(
        greeting_of(&server, "greet:$LATEST").await,
        (200, "three".into())
    );
    for missing in ["greet:9", "greet:prod", "greet:0", "greet:Bad"] {
        let response = server
            .get(&format!("/fn/{missing}/env/GREETING"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{missing}");
        assert_eq!(error_code(response).await, "function_not_found");
    }

    // An alias, moved forward and rolled back.
    let set = server.cli(&["alias", "set", "greet", "prod", "2"]);
    assert!(set.status.success(), "{set:?}");
    assert_eq!(greeting_of(&server, "greet:prod").await.1, "two");
    server.cli(&["alias", "set", "greet", "prod", "1"]);
    assert_eq!(greeting_of(&server, "greet:prod").await.1, "one");

    // The invoke API, async invocations and function calls take the alias too.
    let invoked = server
        .client
        .invoke("greet:prod", Vec::new())
        .await
        .unwrap();
    assert_eq!(invoked.status, 200);
    let (id, _) = server
        .client
        .invoke_async("greet:prod", b"queued".to_vec(), None)
        .await
        .unwrap();
    let event = server.client.event(&id, Some("10s")).await.unwrap();
    assert_eq!(event.status, kumo_api::EventStatus::Succeeded, "{event:?}");
    server
        .deploy("caller", test_programs::CALL_PROBE, config())
        .await;
    let called = server
        .post("/fn/caller")
        .body("http://prod.greet.fn.internal/env/GREETING")
        .send()
        .await
        .unwrap();
    assert_eq!(called.text().await.unwrap(), "one");
    let called = server
        .post("/fn/caller")
        .body("http://2.greet.fn.internal/env/GREETING")
        .send()
        .await
        .unwrap();
    assert_eq!(called.text().await.unwrap(), "two");

    // Records say which version ran.
    let records = server.client.invocations(Some("greet"), 100).await.unwrap();
    let count = |version: &str| records.iter().filter(|r| r.version == version).count();
    assert_eq!(count("$LATEST"), 2, "{records:?}");
    assert_eq!(count("2"), 3, "{records:?}");
    assert_eq!(count("1"), 5, "{records:?}");

    // A version an alias points at cannot be deleted.
    let refused = server
        .http
        .delete(format!("{}/api/v1/functions/greet/versions/1", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    assert_eq!(error_code(refused).await, "conflict");
    assert!(!server.cli(&["rm", "greet:1"]).status.success());
    server.cli(&["alias", "set", "greet", "prod", "2"]);
    let removed = server.cli(&["rm", "greet:1"]);
    assert!(removed.status.success(), "{removed:?}");
    assert_eq!(greeting_of(&server, "greet:1").await.0, 404);
    let listed = String::from_utf8(server.cli(&["versions", "greet"]).stdout).unwrap();
    assert!(
        listed.contains("two") && !listed.contains(" one"),
        "{listed}"
    );

    // Bad alias requests are refused with the reason.
    let put_alias = |alias: &str, body: serde_json::Value| {
        let request = server
            .http
            .put(format!(
                "{}/api/v1/functions/greet/aliases/{alias}",
                server.url
            ))
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let numeric = put_alias("3", serde_json::json!({"version": 2})).await;
    assert_eq!(numeric.status(), 400);
    let missing = put_alias("next", serde_json::json!({"version": 7})).await;
    assert_eq!(missing.status(), 404);
    let heavy = put_alias(
        "next",
        serde_json::json!({"version": 2, "canary": {"version": 2, "weight": 10}}),
    )
    .await;
    assert_eq!(heavy.status(), 400);

    // Versions and aliases survive a restart.
    server.stop();
    let server = TestServer::start_in(dir.path(), &[]);
    assert_eq!(
        greeting_of(&server, "greet:prod").await,
        (200, "two".into())
    );
    assert_eq!(greeting_of(&server, "greet:1").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_alias_splits_requests_between_two_versions() {
    let server = TestServer::start().await;
    deploy_and_publish(&server, "stable").await;
    deploy_and_publish(&server, "canary").await;
    server
        .client
        .set_alias(
            "greet",
            "live",
            1,
            Some(Canary {
                version: 2,
                weight: 25,
            }),
        )
        .await
        .unwrap();
    let aliases = String::from_utf8(server.cli(&["alias", "ls", "greet"]).stdout).unwrap();
    assert!(
        aliases.contains("live             1 (75%), 2 (25%)"),
        "{aliases}"
    );

    const REQUESTS: usize = 400;
    let mut canary = 0;
    for _ in 0..REQUESTS / 16 {
        let batch = (0..16).map(|_| greeting_of(&server, "greet:live"));
        for (status, text) in futures::future::join_all(batch).await {
            assert_eq!(status, 200, "{text}");
            canary += usize::from(text == "canary");
        }
    }
    // Binomial(400, 0.25): mean 100, standard deviation 8.7; ±40 is over 4.5 deviations.
    assert!(
        (60..=140).contains(&canary),
        "{canary} of {REQUESTS} went to the canary"
    );
    let records = server
        .client
        .invocations(Some("greet"), REQUESTS as u32)
        .await
        .unwrap();
    let recorded = records.iter().filter(|r| r.version == "2").count();
    assert_eq!(recorded, canary, "records say which version ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_can_run_an_alias_instead_of_latest() {
    let server = TestServer::start().await;
    let routed = |text: &str, triggers_use: Option<&str>| FunctionConfig {
        routes: vec!["/env/*".parse().unwrap()],
        topics: vec!["news".into()],
        triggers_use: triggers_use.map(str::to_string),
        ..greeting(text)
    };
    server
        .deploy("greet", test_programs::HTTP_PROBE, routed("one", None))
        .await;
    server.client.publish_version("greet", "").await.unwrap();
    server
        .client
        .set_alias("greet", "prod", 1, None)
        .await
        .unwrap();
    // New code on $LATEST; the route and the topic keep running prod.
    server
        .deploy(
            "greet",
            test_programs::HTTP_PROBE,
            routed("two", Some("prod")),
        )
        .await;
    assert_eq!(server.get_text("/env/GREETING").await, "one");
    assert_eq!(greeting_of(&server, "greet").await.1, "two");
    let published = server
        .post("/api/v1/topics/news")
        .body("hello")
        .send()
        .await
        .unwrap();
    let published: serde_json::Value = published.json().await.unwrap();
    let id = published["events"][0]["id"].as_str().unwrap();
    let event = server.client.event(id, Some("10s")).await.unwrap();
    assert_eq!(event.status, kumo_api::EventStatus::Succeeded);
    let records = server.client.invocations(Some("greet"), 10).await.unwrap();
    let topic = records
        .iter()
        .find(|r| r.trigger.as_str() == "topic")
        .unwrap();
    assert_eq!(topic.version, "1");
    let triggers = String::from_utf8(server.cli(&["triggers"]).stdout).unwrap();
    assert!(triggers.contains("greet:prod"), "{triggers}");

    // Moving the alias moves the triggers.
    server.client.publish_version("greet", "").await.unwrap();
    server
        .client
        .set_alias("greet", "prod", 2, None)
        .await
        .unwrap();
    assert_eq!(server.get_text("/env/GREETING").await, "two");
}
