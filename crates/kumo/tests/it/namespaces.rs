//! Namespaces through the real server: what each holds is its own (functions, buckets,
//! calls, secrets, records, routes), tokens act in their own namespace only and learn nothing
//! of another on any endpoint of the route table, and quotas refuse what would exceed them.

use crate::harness::{TestServer, authorized, config, error_code};
use kumo_api::{Client, FunctionConfig, KvCondition, Quotas, Role};

/// A namespace made by the admin, and an admin client acting in it.
async fn namespace(server: &TestServer, name: &str, quotas: Quotas) -> Client {
    assert!(server.client.put_namespace(name, &quotas).await.unwrap());
    server.client.clone().in_namespace(name)
}

/// A token of `role` in `namespace`: its secret.
async fn token_in(server: &TestServer, name: &str, role: Role, namespace: &str) -> String {
    let created = server
        .client
        .create_token(name, role, Some(namespace), None)
        .await
        .unwrap();
    assert_eq!(created.token.namespace.as_deref(), Some(namespace));
    created.secret
}

fn with(json: &str) -> FunctionConfig {
    serde_json::from_str(json).unwrap()
}

#[tokio::test]
async fn namespaces_keep_functions_data_calls_and_routes_apart() {
    let server = TestServer::start().await;
    let shop = namespace(&server, "shop", Quotas::default()).await;
    let hello = std::fs::read(test_programs::HELLO).unwrap();
    let probe = std::fs::read(test_programs::HTTP_PROBE).unwrap();
    let kv_probe = std::fs::read(test_programs::KV_PROBE).unwrap();
    let caller = std::fs::read(test_programs::CALL_PROBE).unwrap();
    shop.deploy("probe", probe, &config()).await.unwrap();
    shop.deploy("kv", kv_probe.clone(), &with(r#"{"kv":["b"]}"#))
        .await
        .unwrap();
    shop.deploy(
        "caller",
        caller.clone(),
        &with(r#"{"allow_outbound":["*"]}"#),
    )
    .await
    .unwrap();
    server.deploy("hello", test_programs::HELLO, config()).await;
    server
        .client
        .deploy("caller", caller, &with(r#"{"allow_outbound":["*"]}"#))
        .await
        .unwrap();

    // Each namespace lists its own functions; the same name may live in both.
    let names = |list: Vec<kumo_api::FunctionRecord>| -> Vec<String> {
        list.into_iter().map(|f| f.name).collect()
    };
    assert_eq!(
        names(shop.list().await.unwrap()),
        ["shop/caller", "shop/kv", "shop/probe"]
    );
    assert_eq!(
        names(server.client.list().await.unwrap()),
        ["caller", "hello"]
    );
    shop.deploy("hello", hello, &config()).await.unwrap();

    // The data plane: NAME.NS; a `/` smuggled in names nothing.
    let status = |path: &str| {
        let url = format!("{}{path}", server.url);
        async move { reqwest::get(url).await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/fn/probe.shop/").await, 200);
    assert_eq!(status("/fn/probe/").await, 404, "not in default");
    assert_eq!(status("/fn/probe.nowhere/").await, 404);
    assert_eq!(status("/fn/shop%2Fprobe/").await, 404);
    assert_eq!(status("/api/v1/functions/shop%2Fprobe").await, 401);
    let smuggled = server
        .get("/api/v1/functions/shop%2Fprobe")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(smuggled).await, "invalid_request");

    // Buckets: the guest's `b` and the API's `b` are the namespace's own.
    let set = server
        .post("/fn/kv.shop/set/b/k")
        .body("from-shop")
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success(), "{}", set.status());
    assert_eq!(
        &shop.kv_get("b", "k").await.unwrap().value[..],
        b"from-shop"
    );
    let absent = server.client.kv_get("b", "k").await.unwrap_err();
    assert!(absent.to_string().contains("key_not_found"), "{absent}");
    server
        .client
        .kv_put("b", "k", b"from-default".to_vec(), KvCondition::Always)
        .await
        .unwrap();
    assert_eq!(
        &shop.kv_get("b", "k").await.unwrap().value[..],
        b"from-shop"
    );

    // Calls: NAME.fn.internal is the caller's namespace's NAME.
    let call = |path: &'static str| server.post(path).body("http://probe.fn.internal/").send();
    assert_eq!(call("/fn/caller.shop").await.unwrap().status(), 200);
    let from_default = call("/fn/caller").await.unwrap();
    assert_eq!(from_default.status(), 404, "default has no probe");

    // Secrets, records and triggers are listed per namespace.
    shop.set_secret("TOKEN", b"s3cret".to_vec()).await.unwrap();
    assert_eq!(shop.secrets().await.unwrap()[0].name, "TOKEN");
    assert!(server.client.secrets().await.unwrap().is_empty());
    let invoked = shop.invoke("hello", Vec::new()).await.unwrap();
    let id = invoked.request_id.unwrap();
    assert!(shop.invocation(&id).await.is_ok());
    let elsewhere = server.client.invocation(&id).await.unwrap_err();
    assert!(elsewhere.to_string().contains("not_found"), "{elsewhere}");
    let records = server.client.invocations(None, 100).await.unwrap();
    assert!(records.iter().all(|r| !r.function.starts_with("shop/")));
    let usage = server
        .client
        .usage("1h", kumo_api::UsageBy::Namespace)
        .await
        .unwrap();
    let keys: Vec<_> = usage.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["default", "shop"], "chargeback by namespace");

    // Routes are the server's: another namespace's route is a conflict that names no one.
    shop.deploy(
        "routed",
        std::fs::read(test_programs::HELLO).unwrap(),
        &with(r#"{"routes":["/only-here"]}"#),
    )
    .await
    .unwrap();
    let taken = server
        .client
        .deploy(
            "mine",
            std::fs::read(test_programs::HELLO).unwrap(),
            &with(r#"{"routes":["/only-here"]}"#),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(taken.contains("conflict"), "{taken}");
    assert!(
        !taken.contains("routed") && !taken.contains("shop"),
        "{taken}"
    );
    assert_eq!(status("/only-here").await, 200);

    // Admin tokens are everywhere; a namespace must exist to be given; a namespace with
    // things in it is not deleted.
    let admin_in_shop = server
        .client
        .create_token("boss", Role::Admin, Some("shop"), None)
        .await
        .unwrap_err();
    assert!(admin_in_shop.to_string().contains("invalid_request"));
    let nowhere = server
        .client
        .create_token("lost", Role::Developer, Some("nowhere"), None)
        .await
        .unwrap_err();
    assert!(nowhere.to_string().contains("not_found"), "{nowhere}");
    let default = server.client.delete_namespace("default").await.unwrap_err();
    assert!(default.to_string().contains("invalid_request"), "{default}");
    let busy = server.client.delete_namespace("shop").await.unwrap_err();
    assert!(busy.to_string().contains("conflict"), "{busy}");
    namespace(&server, "empty", Quotas::default()).await;
    server.client.delete_namespace("empty").await.unwrap();
    let listed = server.client.namespaces().await.unwrap();
    let listed: Vec<_> = listed.iter().map(|n| n.namespace.name.as_str()).collect();
    assert_eq!(listed, ["default", "shop"]);

    // The CLI acts in `-n NS`.
    let out = server.cli(&["-n", "shop", "ls"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("shop/probe"),
        "{text}"
    );
    // Every function listed (the header aside) is the namespace's: default's `caller` and
    // `hello` are not among them.
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 5, "{text}");
    assert!(rows.iter().all(|l| l.starts_with("shop/")), "{text}");
    let out = server.cli(&["namespace", "ls"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("shop ")), "{text}");
}

/// A value that must never leave the victim's namespace.
const MARKERS: [&str; 5] = [
    "victim-kv-value",
    "victim-object",
    "victim-secret",
    "secretfn",
    "victim-workflow",
];

/// A route-table path with its parameters filled in to name the victim's resources (an
/// `{id}` is its invocation's, or under `/executions` its workflow execution's).
fn filled(path: &str, invocation: &str, execution: &str) -> String {
    let id = match path.starts_with("/executions") {
        true => execution,
        false => invocation,
    };
    path.split('/')
        .map(|segment| match segment {
            "{name}" => "secretfn",
            "{version}" => "1",
            "{alias}" => "live",
            "{id}" => id,
            "{outcome}" => "success",
            "{topic}" => "news",
            "{bucket}" => "vault",
            "{*key}" => "k",
            "{namespace}" => "victim",
            other if other.starts_with('{') => {
                panic!("no value for {other} of {path}: name one in `filled`")
            }
            other => other,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn a_token_of_one_namespace_learns_nothing_of_another_on_any_endpoint() {
    let server = TestServer::start().await;
    let victim = namespace(&server, "victim", Quotas::default()).await;
    namespace(&server, "attacker", Quotas::default()).await;
    victim
        .deploy(
            "secretfn",
            std::fs::read(test_programs::HELLO).unwrap(),
            &with(r#"{"topics":["news"],"auth":"token"}"#),
        )
        .await
        .unwrap();
    victim.publish_version("secretfn", "").await.unwrap();
    victim.set_alias("secretfn", "live", 1, None).await.unwrap();
    victim
        .kv_put(
            "vault",
            "k",
            b"victim-kv-value".to_vec(),
            KvCondition::Always,
        )
        .await
        .unwrap();
    let put = server
        .http
        .put(format!(
            "{}/api/v1/namespaces/victim/objects/vault/k",
            server.url
        ))
        .body("victim-object")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    victim
        .set_secret("TOP", b"victim-secret".to_vec())
        .await
        .unwrap();
    let invocation = victim
        .invoke("secretfn", b"victim-kv-value".to_vec())
        .await
        .unwrap()
        .request_id
        .unwrap();

    // A workflow of the same name, and one of its executions.
    let definition = serde_json::json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "victim-workflow", "End": true}}});
    victim
        .put_workflow("secretfn", definition.to_string().into_bytes())
        .await
        .unwrap();
    let execution = victim
        .start_execution("secretfn", serde_json::json!({}), None, Some(10))
        .await
        .unwrap();
    assert_eq!(execution["output"], "victim-workflow");
    let execution = execution["id"].as_str().unwrap().to_string();

    let developer = authorized(&token_in(&server, "dev", Role::Developer, "attacker").await);
    let invoker = authorized(&token_in(&server, "inv", Role::Invoker, "attacker").await);
    let methods = [
        reqwest::Method::GET,
        reqwest::Method::HEAD,
        reqwest::Method::PUT,
        reqwest::Method::POST,
        reqwest::Method::DELETE,
    ];
    let mut requests = 0;
    for path in kumo_server::API_PATHS {
        let target = filled(path, &invocation, &execution);
        // The victim's namespace by name, the attacker's own naming the victim's things,
        // and the unprefixed paths (`default`, which the attacker may not enter either).
        let urls = [
            format!("/api/v1/namespaces/victim{target}"),
            format!("/api/v1/namespaces/attacker{target}"),
            format!("/api/v1{target}"),
        ];
        for url in urls {
            for client in [&developer, &invoker] {
                for method in &methods {
                    let response = client
                        .request(method.clone(), format!("{}{url}", server.url))
                        .body("x")
                        .send()
                        .await
                        .unwrap();
                    requests += 1;
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap();
                    for marker in MARKERS {
                        // An error may repeat what the request named; nothing else may
                        // show a trace of the victim.
                        let leaked =
                            body.contains(marker) && (status < 400 || marker != "secretfn");
                        assert!(!leaked, "{method} {url} ({status}) leaked {marker}: {body}");
                    }
                    if url.contains("/victim/") || url.starts_with("/api/v1/namespaces/victim") {
                        assert!(
                            matches!(status, 403 | 404),
                            "{method} {url} answered {status}: {body}"
                        );
                    }
                }
            }
        }
    }
    assert!(requests >= kumo_server::API_PATHS.len() * 30);

    // The data plane: a token-only function of another namespace is as absent as none.
    let on_data_plane = invoker
        .post(format!("{}/fn/secretfn.victim", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(on_data_plane).await, "function_not_found");

    // Nothing of the victim's changed.
    assert_eq!(
        &victim.kv_get("vault", "k").await.unwrap().value[..],
        b"victim-kv-value"
    );
    assert_eq!(victim.list().await.unwrap().len(), 1);
    assert_eq!(victim.aliases("secretfn").await.unwrap().len(), 1);
    assert_eq!(victim.secrets().await.unwrap().len(), 1);
    let object = server
        .get("/api/v1/namespaces/victim/objects/vault/k")
        .send()
        .await
        .unwrap();
    assert_eq!(object.text().await.unwrap(), "victim-object");
    // Metrics show a namespace's token its own functions only.
    let metrics = developer
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("secretfn"), "{metrics}");
}

#[tokio::test]
async fn quotas_refuse_what_would_exceed_them_and_nothing_is_half_written() {
    let server = TestServer::start().await;
    let quotas = Quotas {
        max_functions: Some(1),
        max_concurrency: Some(1),
        max_kv_bytes: Some(64),
        max_object_bytes: Some(32),
        max_queued_events: Some(1),
    };
    let small = namespace(&server, "small", quotas).await;
    let probe = std::fs::read(test_programs::HTTP_PROBE).unwrap();
    let probe_config = with(r#"{"kv":["b"],"timeout":"2s"}"#);
    small
        .deploy("probe", probe.clone(), &probe_config)
        .await
        .unwrap();
    // Redeploying the same function is no new function.
    small
        .deploy("probe", probe.clone(), &probe_config)
        .await
        .unwrap();
    let second = small.deploy("other", probe, &config()).await.unwrap_err();
    assert!(second.to_string().contains("quota_exceeded"), "{second}");
    assert!(second.to_string().contains("max_functions"), "{second}");
    assert_eq!(
        small.list().await.unwrap().len(),
        1,
        "nothing half deployed"
    );

    small
        .kv_put("b", "k", vec![b'x'; 40], KvCondition::Always)
        .await
        .unwrap();
    let over = small
        .kv_put("b", "k2", vec![b'x'; 40], KvCondition::Always)
        .await
        .unwrap_err();
    assert!(over.to_string().contains("max_kv_bytes"), "{over}");
    assert!(small.kv_get("b", "k2").await.is_err(), "not written");

    let object = |bytes: usize| {
        server
            .http
            .put(format!(
                "{}/api/v1/namespaces/small/objects/o/k",
                server.url
            ))
            .body(vec![b'y'; bytes])
            .send()
    };
    let too_big = object(33).await.unwrap();
    assert_eq!(error_code(too_big).await, "quota_exceeded");
    assert!(object(32).await.unwrap().status().is_success());

    // A looping invocation holds the namespace's one slot (`max_concurrency`), so a submitted
    // event waits in the queue until it times out; the second would be one too many.
    let held = server.get("/fn/probe.small/loop").send();
    let held = tokio::spawn(async move { held.await.unwrap().status().as_u16() });
    let running = server
        .metric_eventually("kumo_invocations_in_flight", 1)
        .await;
    assert_eq!(running, 1);
    small
        .invoke_async("probe", b"1".to_vec(), None)
        .await
        .unwrap();
    let second = small.invoke_async("probe", b"2".to_vec(), None).await;
    let refused = second.unwrap_err().to_string();
    assert!(refused.contains("max_queued_events"), "{refused}");
    assert_eq!(held.await.unwrap(), 504);

    // Use against quota, as the admin sees it.
    let listed = server.client.namespaces().await.unwrap();
    let small_info = listed.iter().find(|n| n.namespace.name == "small").unwrap();
    assert_eq!(small_info.used.functions, 1);
    assert_eq!(small_info.used.kv_bytes, 41);
    assert_eq!(small_info.used.object_bytes, 32);
    assert_eq!(small_info.namespace.quotas.max_concurrency, Some(1));
    // Quotas are replaced whole; the default namespace can have them too.
    assert!(
        !server
            .client
            .put_namespace("small", &Quotas::default())
            .await
            .unwrap()
    );
    let more = server.client.clone().in_namespace("small");
    more.deploy(
        "other",
        std::fs::read(test_programs::HTTP_PROBE).unwrap(),
        &config(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_namespace_at_its_concurrency_quota_throttles_and_others_go_on() {
    let server = TestServer::start().await;
    let quotas = Quotas {
        max_concurrency: Some(1),
        ..Quotas::default()
    };
    let busy = namespace(&server, "busy", quotas).await;
    let looping = FunctionConfig {
        timeout: std::time::Duration::from_secs(2),
        ..config()
    };
    let probe = std::fs::read(test_programs::HTTP_PROBE).unwrap();
    busy.deploy("probe", probe, &looping).await.unwrap();
    server
        .deploy("probe", test_programs::HTTP_PROBE, config())
        .await;
    // One looping invocation holds the namespace's only slot until its timeout.
    let held = server.get("/fn/probe.busy/loop").send();
    let held = tokio::spawn(async move { held.await.unwrap().status().as_u16() });
    let running = server
        .metric_eventually("kumo_invocations_in_flight", 1)
        .await;
    assert_eq!(running, 1);
    let throttled = server.get("/fn/probe.busy/").send().await.unwrap();
    assert_eq!(throttled.status(), 429);
    let message = throttled.text().await.unwrap();
    assert!(
        message.contains("busy") && message.contains("max_concurrency quota"),
        "{message}"
    );
    let elsewhere = server.get("/fn/probe/").send().await.unwrap();
    assert_eq!(
        elsewhere.status(),
        200,
        "another namespace is not held back"
    );
    assert_eq!(held.await.unwrap(), 504, "the held invocation timed out");
}

#[tokio::test]
async fn routes_bound_to_hosts_let_namespaces_share_a_path_and_never_capture_each_other() {
    let server = TestServer::start().await;
    let shop = namespace(&server, "shop", Quotas::default()).await;
    let blog = namespace(&server, "blog", Quotas::default()).await;
    let probe = std::fs::read(test_programs::HTTP_PROBE).unwrap();
    let on = |host: &str| with(&format!(r#"{{"routes":["/env/*"],"host":"{host}"}}"#));
    let shop_config = FunctionConfig {
        env: [("SITE".to_string(), "shop".to_string())].into(),
        ..on("shop.example.com")
    };
    let blog_config = FunctionConfig {
        env: [("SITE".to_string(), "blog".to_string())].into(),
        ..on("blog.example.com")
    };
    shop.deploy("site", probe.clone(), &shop_config)
        .await
        .unwrap();
    blog.deploy("site", probe.clone(), &blog_config)
        .await
        .unwrap();
    let site = |host: &'static str| server.get("/env/SITE").header("host", host).send();
    let shop_answer = site("Shop.Example.com:8080").await.unwrap();
    assert_eq!(shop_answer.text().await.unwrap(), "shop");
    assert_eq!(
        site("blog.example.com")
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "blog"
    );
    assert_eq!(site("other.example.com").await.unwrap().status(), 404);

    // A route on every host would take both sites' traffic: refused, naming no one.
    let everywhere = server
        .client
        .deploy("grab", probe.clone(), &with(r#"{"routes":["/env/*"]}"#))
        .await
        .unwrap_err()
        .to_string();
    assert!(everywhere.contains("conflict"), "{everywhere}");
    assert!(!everywhere.contains("site"), "{everywhere}");
    // The same host again, from another namespace: refused too.
    let same_host = server
        .client
        .deploy("grab", probe, &on("shop.example.com"))
        .await
        .unwrap_err();
    assert!(same_host.to_string().contains("conflict"), "{same_host}");
    let bad = server
        .client
        .deploy(
            "bad",
            std::fs::read(test_programs::HELLO).unwrap(),
            &with(r#"{"host":"Not A Host:80"}"#),
        )
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("host"), "{bad}");
}
