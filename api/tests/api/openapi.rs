//! `GET /openapi.json` is an OpenAPI 3.1 document of every route of the contract and of
//! exactly the routes served; `GET /docs` is a working docs page over it.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::harness::{scenario, Reply, TestApp};

/// The HTTP contract, beside the repository.
const API_MD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/API.md");

const METHODS: [Method; 5] = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

/// Routes named outside API.md that the server serves or may serve: probed as well, so
/// that serving one undocumented fails.
const MORE_ROUTES: [&str; 5] =
    ["/docs", "/calls/{call_id}/notifications", "/notifications", "/notifications/{id}/retry", "/assignments"];

/// A route as `(METHOD, /path)` with every `{param}` written `{}`, so that parameter
/// names do not matter.
type Route = (String, String);

fn normalise(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            c if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

/// Every backticked `METHOD /path` in `text`, without its query.
fn contract_routes(text: &str) -> BTreeSet<Route> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|quoted| {
            let (method, path) = quoted.split_once(' ')?;
            let known = METHODS.iter().any(|known| known.as_str() == method);
            let path = path.split('?').next()?;
            (known && path.starts_with('/') && !path.contains(' ')).then(|| (method.to_string(), normalise(path)))
        })
        .collect()
}

fn documented_routes(document: &Value) -> BTreeSet<Route> {
    let paths = document["paths"].as_object().expect("the document has paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().expect("a path item").keys();
            methods
                .filter(|method| METHODS.iter().any(|known| known.as_str().eq_ignore_ascii_case(method)))
                .map(move |method| (method.to_uppercase(), normalise(path)))
        })
        .collect()
}

/// The path with each `{}` filled with a fresh UUID.
fn concrete(path: &str) -> String {
    path.split("{}").collect::<Vec<_>>().join(&Uuid::now_v7().to_string())
}

/// Whether the answer came from the router's fallbacks: no route for the path, or none
/// for the method.
fn is_unrouted(reply: &Reply) -> bool {
    let no_route = reply.status == StatusCode::NOT_FOUND
        && reply.body["code"] == "NOT_FOUND"
        && reply.body["detail"].as_str().is_some_and(|detail| detail.contains("no route for"));
    let no_method = reply.status == StatusCode::METHOD_NOT_ALLOWED && reply.body["code"] == "METHOD_NOT_ALLOWED";
    no_route || no_method
}

async fn document(app: &TestApp) -> Value {
    let reply = app.get("/openapi.json").await;
    assert_eq!(reply.header("content-type"), Some("application/json"), "{}", reply.text);
    reply.assert_status(StatusCode::OK).clone()
}

scenario!(the_document_is_openapi_3_1_and_covers_the_contract);
async fn the_document_is_openapi_3_1_and_covers_the_contract(app: TestApp) {
    let document = document(&app).await;
    assert!(document["openapi"].as_str().is_some_and(|version| version.starts_with("3.1.")), "{}", document["openapi"]);
    let built = serde_json::to_value(drivercenter::http::openapi()).expect("the document serialises");
    assert_eq!(document, built, "the served document is the one built from the routes");

    let mut operation_ids = BTreeSet::new();
    for item in document["paths"].as_object().expect("paths").values() {
        for operation in item.as_object().expect("a path item").values() {
            let id = operation["operationId"].as_str().expect("every operation has an id");
            assert!(operation_ids.insert(id.to_string()), "operation id {id} is not unique");
            for (status, response) in operation["responses"].as_object().expect("responses") {
                if status.parse::<u16>().is_ok_and(|status| status >= 400) {
                    assert!(response["content"].is_object(), "{id} {status} describes its body");
                }
            }
        }
    }

    let Ok(contract) = std::fs::read_to_string(API_MD) else {
        println!("SKIPPED: {API_MD} is not there to compare with");
        return;
    };
    let contract = contract_routes(&contract);
    assert!(contract.len() > 20, "API.md names its routes: {contract:?}");
    let documented = documented_routes(&document);
    let missing: Vec<&Route> = contract.difference(&documented).collect();
    assert!(missing.is_empty(), "routes of API.md missing from the document: {missing:?}");
}

scenario!(the_router_serves_exactly_the_documented_routes);
async fn the_router_serves_exactly_the_documented_routes(app: TestApp) {
    let documented = documented_routes(&document(&app).await);
    let contract = std::fs::read_to_string(API_MD).map(|text| contract_routes(&text)).unwrap_or_default();
    let mut paths: BTreeSet<String> = documented.iter().chain(&contract).map(|(_, path)| path.clone()).collect();
    paths.extend(MORE_ROUTES.iter().map(|path| normalise(path)));
    let events_before = app.count_events().await;
    for path in &paths {
        for method in METHODS {
            let reply = app.send(app.request(method.clone(), &concrete(path))).await;
            let is_documented = documented.contains(&(method.to_string(), path.clone()));
            assert_eq!(
                !is_unrouted(&reply),
                is_documented,
                "{method} {path}: documented {is_documented}, answered {} {}",
                reply.status,
                reply.text
            );
        }
    }
    assert_eq!(app.count_events().await, events_before, "probing the routes stored nothing");
}

scenario!(the_docs_page_and_its_assets_are_served);
async fn the_docs_page_and_its_assets_are_served(app: TestApp) {
    let page = app.get("/docs").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.header("content-type").is_some_and(|kind| kind.starts_with("text/html")), "{:?}", page.headers);
    assert!(page.text.contains("id=\"swagger-ui\""), "{}", page.text);
    let assets: Vec<&str> = page
        .text
        .split(['"', '\''])
        .filter(|link| link.starts_with("docs/") && (link.ends_with(".js") || link.ends_with(".css")))
        .collect();
    assert!(assets.len() >= 4, "the page loads its scripts and styles: {assets:?}");
    for asset in assets {
        let reply = app.get(&format!("/{asset}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{asset}: {}", reply.text);
        assert!(!reply.text.is_empty(), "{asset} is empty");
    }
    let initializer = app.get("/docs/swagger-initializer.js").await;
    assert!(initializer.text.contains("\"url\": \"openapi.json\""), "{}", initializer.text);
    app.get("/docs/no-such-asset.js").await.assert_problem(StatusCode::NOT_FOUND, "NOT_FOUND");
}
