//! The signed identity assertion (`[assertion]`, docs/ASSERTION.md): a real
//! gateway signs it, a recording upstream captures it, and the Python
//! (PyJWT) and Node (jose) verifiers of `examples/assertion/` check it with
//! the JWKS they fetch from the admin listener.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use authgear_gateway::commands::devissuer::DevIssuer;
use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der};
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http::StatusCode;
use serde_json::{json, Value};
use support::*;

const HEADER: &str = "x-authgear-gateway-assertion";
const ISS: &str = "https://gateway.test";
const ROLES: &str = "https://authgear.com/claims/user/roles";

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("agw-assert-{tag}-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A new private key as PEM PKCS#8, written to `dir/name`.
fn key_file(dir: &Path, name: &str, eddsa: bool) -> String {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let der = if eddsa {
        Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref().to_vec()
    } else {
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap().as_ref().to_vec()
    };
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let path = dir.join(name);
    std::fs::write(&path, format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"))).unwrap();
    path.display().to_string()
}

fn assertion_section(keys: &[&str], extra: &str) -> String {
    let list: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
    format!("[assertion]\nissuer = \"{ISS}\"\nkey_files = [{}]\n{extra}\n", list.join(", "))
}

/// Routes: a public one, an authenticated one on the default upstream
/// (forwarding the roles), and one on upstream `b`.
fn config(iss: &DevIssuer, a: &Upstream, b: &Upstream, assertion: &str) -> String {
    let rest = format!(
        r#"
[upstreams.b]
url = "http://{b}"

[[routes]]
path = "/public/**"
auth = "public"

[[routes]]
path = "/b/**"
upstream = "b"

[[routes]]
path = "/app/**"
headers = {{ "x-user" = "sub", "x-roles" = "{ROLES}", "x-token-aud" = "aud", "x-token-iss" = "iss" }}

{assertion}
"#,
        b = b.addr
    );
    config_text(iss, a.addr, "", &rest)
}

fn origin(u: &Upstream) -> String {
    format!("http://{}", u.addr)
}

fn payload(jws: &str) -> Value {
    let part = jws.split('.').nth(1).expect("a compact JWS");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn jws_header(jws: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jws.split('.').next().unwrap()).unwrap()).unwrap()
}

/// Which example runs.
#[derive(Clone, Copy, Debug)]
enum Lang {
    Python,
    Node,
}

/// Runs one example verifier: `Ok(claims)` when it accepts, `Err(why)`.
fn verify(lang: Lang, gw: &Gw, aud: &str, alg: &str, leeway: &str, token: &str) -> Result<Value, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/assertion");
    let mut cmd = match lang {
        Lang::Python => {
            let mut c = Command::new(support::tools::python());
            c.arg(dir.join("verify.py"));
            c
        }
        Lang::Node => {
            let mut c = Command::new("node");
            c.arg(dir.join("verify.cjs")).env("NODE_PATH", support::tools::prefix().join("node/node_modules"));
            c
        }
    };
    let out = cmd
        .arg(token)
        .env("JWKS_URL", format!("{}/.well-known/jwks.json", gw.admin))
        .env("ASSERTION_ISSUER", ISS)
        .env("ASSERTION_AUDIENCE", aud)
        .env("ASSERTION_ALG", alg)
        .env("LEEWAY", leeway)
        .output()
        .expect("the verifier runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{lang:?} printed {stdout}")))
    } else {
        assert!(stdout.starts_with("rejected"), "{lang:?} failed without judging: {stdout} {}", String::from_utf8_lossy(&out.stderr));
        Err(stdout)
    }
}

/// The assertion the upstream received on the last request.
fn captured(up: &Upstream) -> String {
    let seen = up.last();
    let all: Vec<_> = seen.headers.get_all(HEADER).iter().collect();
    assert_eq!(all.len(), 1, "exactly one assertion header: {:?}", seen.headers);
    all[0].to_str().unwrap().to_owned()
}

/// The same header and payload, signed by a key the gateway never had.
fn forge(jws: &str) -> String {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.as_ref()).unwrap();
    let signing_input = jws.rsplit_once('.').unwrap().0;
    let sig = key.sign(&rng, signing_input.as_bytes()).unwrap();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

/// The payload rewritten to another `sub`, the signature kept.
fn tamper(jws: &str) -> String {
    let parts: Vec<&str> = jws.split('.').collect();
    let mut p = payload(jws);
    p["sub"] = "admin".into();
    format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(p.to_string()), parts[2])
}

async fn started(eddsa: bool, extra: &str) -> (DevIssuer, Upstream, Upstream, Gw, PathBuf) {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.unwrap();
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let dir = temp_dir("keys");
    let key = key_file(&dir, "k1.pem", eddsa);
    let alg = if eddsa { "algorithm = \"EdDSA\"\n" } else { "" };
    let gw = start_ready(&config(&iss, &a, &b, &assertion_section(&[&key], &format!("{alg}{extra}")))).await;
    (iss, a, b, gw, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_node_accept_the_assertion_and_refuse_tampered_foreign_audience_and_forged_ones() {
    let (iss, a, b, gw, _dir) = started(false, "").await;
    let token = iss.mint("user-1", json!({ ROLES: ["admin", "ops"] }));
    assert_eq!(get_with(&gw.url("/app/x"), &token).await.status, StatusCode::OK);
    let jws = captured(&a);
    let claims = payload(&jws);
    // The route also maps the token's `iss` and `aud` to headers: those
    // never replace the assertion's own.
    assert_eq!(claims["iss"], ISS);
    assert_eq!(claims["aud"], origin(&a));
    assert!(a.last().headers.get("x-token-aud").is_some());
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims[ROLES], json!(["admin", "ops"]));
    let exp = claims["exp"].as_u64().unwrap();
    assert_eq!(exp - claims["iat"].as_u64().unwrap(), 60, "the default lifetime");
    let h = jws_header(&jws);
    assert_eq!((h["alg"].as_str(), h["typ"].as_str()), (Some("ES256"), Some("JWT")));

    for lang in [Lang::Python, Lang::Node] {
        let ok = verify(lang, &gw, &origin(&a), "ES256", "5", &jws).unwrap_or_else(|e| panic!("{lang:?} refused a good assertion: {e}"));
        assert_eq!(ok["sub"], "user-1");
        assert!(verify(lang, &gw, &origin(&a), "ES256", "5", &tamper(&jws)).is_err(), "{lang:?} accepted a tampered one");
        assert!(verify(lang, &gw, &origin(&b), "ES256", "5", &jws).is_err(), "{lang:?} accepted another app's");
        assert!(verify(lang, &gw, &origin(&a), "ES256", "5", &forge(&jws)).is_err(), "{lang:?} accepted a forged one");
        // The algorithm is pinned: an app expecting EdDSA refuses ES256.
        assert!(verify(lang, &gw, &origin(&a), "EdDSA", "5", &jws).is_err(), "{lang:?} took the token's alg");
    }

    // The route on upstream b gets an assertion for b.
    assert_eq!(get_with(&gw.url("/b/y"), &token).await.status, StatusCode::OK);
    let for_b = captured(&b);
    assert_eq!(payload(&for_b)["aud"], origin(&b));
    assert!(verify(Lang::Python, &gw, &origin(&b), "ES256", "5", &for_b).is_ok());

    // The next request reuses the cached one; another user gets their own.
    assert_eq!(get_with(&gw.url("/app/z"), &token).await.status, StatusCode::OK);
    assert_eq!(captured(&a), jws, "a fresh assertion is reused for the same identity");
    let other = iss.mint("user-2", json!({}));
    assert_eq!(get_with(&gw.url("/app/z"), &other).await.status, StatusCode::OK);
    let jws2 = captured(&a);
    assert_eq!(payload(&jws2)["sub"], "user-2");
    assert_ne!(payload(&jws2)["jti"], claims["jti"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eddsa_assertions_verify_in_python_and_node() {
    let (iss, a, _b, gw, _dir) = started(true, "").await;
    let token = iss.mint("user-ed", json!({}));
    assert_eq!(get_with(&gw.url("/app/x"), &token).await.status, StatusCode::OK);
    let jws = captured(&a);
    assert_eq!(jws_header(&jws)["alg"], "EdDSA");
    for lang in [Lang::Python, Lang::Node] {
        assert!(verify(lang, &gw, &origin(&a), "EdDSA", "5", &jws).is_ok(), "{lang:?}");
        assert!(verify(lang, &gw, &origin(&a), "EdDSA", "5", &tamper(&jws)).is_err(), "{lang:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_assertions_are_refused_by_both_verifiers() {
    // Long enough that a verifier started cold (Python importing its crypto
    // library on a loaded machine) still checks it before it expires.
    let (iss, a, _b, gw, _dir) = started(false, "lifetime = \"4s\"").await;
    let token = iss.mint("user-1", json!({}));
    assert_eq!(get_with(&gw.url("/app/x"), &token).await.status, StatusCode::OK);
    let jws = captured(&a);
    let exp = payload(&jws)["exp"].as_u64().unwrap();
    assert!(verify(Lang::Python, &gw, &origin(&a), "ES256", "0", &jws).is_ok(), "good while fresh");
    // Waiting for the clock is the behaviour under test: past exp plus
    // the verifiers' one-second leeway.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64((exp as f64 + 2.2 - now).max(0.0))).await;
    for lang in [Lang::Python, Lang::Node] {
        let e = verify(lang, &gw, &origin(&a), "ES256", "1", &jws).expect_err("an expired assertion");
        assert!(e.to_lowercase().contains("exp"), "{lang:?}: {e}");
    }
    // The gateway itself signs a new one by then.
    assert_eq!(get_with(&gw.url("/app/x"), &token).await.status, StatusCode::OK);
    assert_ne!(captured(&a), jws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sent_assertion_headers_are_stripped_on_every_route_and_public_routes_carry_none() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.unwrap();
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let dir = temp_dir("strip");
    let key = key_file(&dir, "k1.pem", false);
    // A name outside the x-authgear- family, so only the configured name protects it.
    let gw = start_ready(&config(&iss, &a, &b, &assertion_section(&[&key], "header = \"X-App-Identity\""))).await;
    let token = iss.mint("user-1", json!({}));
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.";
    let spellings = [("x-app-identity", forged), ("X_App_Identity", forged), ("x.app.identity", forged)];

    let public = send("GET", &gw.url("/public/p"), &spellings, b"").await;
    assert_eq!(public.status, StatusCode::OK);
    let seen = a.last();
    for (name, _) in spellings {
        assert!(seen.headers.get(name).is_none(), "{name} reached the app on a public route");
    }

    let auth = format!("Bearer {token}");
    let mut with_token = spellings.to_vec();
    with_token.push(("authorization", &auth));
    assert_eq!(send("GET", &gw.url("/app/x"), &with_token, b"").await.status, StatusCode::OK);
    let seen = a.last();
    let values: Vec<_> = seen.headers.get_all("x-app-identity").iter().collect();
    assert_eq!(values.len(), 1, "{:?}", seen.headers);
    assert_ne!(values[0], forged);
    assert_eq!(payload(values[0].to_str().unwrap())["sub"], "user-1");
    assert!(seen.headers.get("x_app_identity").is_none() && seen.headers.get("x.app.identity").is_none());
    // The default name is never set with a custom one configured.
    assert!(seen.headers.get(HEADER).is_none());
}

fn jwks_kids(doc: &Value) -> Vec<String> {
    doc["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_publishes_both_keys_and_the_new_first_key_signs() {
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.unwrap();
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let dir = temp_dir("rotate");
    let (k1, k2) = (key_file(&dir, "k1.pem", false), key_file(&dir, "k2.pem", false));
    let extra = "jwks_path = \"/.well-known/gateway-jwks.json\"";
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config(&iss, &a, &b, &assertion_section(&[&k1], extra))).unwrap();
    let gw = start_ready(&std::fs::read_to_string(&path).unwrap()).await;
    let token = iss.mint("user-1", json!({}));

    let (status, admin) = get(&format!("{}/.well-known/jwks.json", gw.admin), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(admin.header("cache-control").is_some_and(|c| c.contains("max-age=")), "{:?}", admin.headers);
    let doc = admin.json();
    let old_kids = jwks_kids(&doc);
    assert_eq!(old_kids.len(), 1);
    for k in doc["keys"].as_array().unwrap() {
        assert!(k.get("d").is_none(), "the private part is never published");
        assert_eq!((k["kty"].as_str(), k["alg"].as_str(), k["use"].as_str()), (Some("EC"), Some("ES256"), Some("sig")));
    }
    // The main listener's copy is public: no token, and before every route.
    let (status, main) = get(&gw.url("/.well-known/gateway-jwks.json"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(main.json(), doc);
    let (status, _) = get(&gw.url("/.well-known/gateway-jwks.json"), &[("host", "a.test"), ("host", "b.test")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "screened like every request: two Hosts are refused");

    assert_eq!(get_with(&gw.url("/app/x"), &token).await.status, StatusCode::OK);
    let before = captured(&a);
    assert_eq!(jws_header(&before)["kid"], old_kids[0]);

    // Rotation: the new key first, the old one kept for assertions in flight.
    std::fs::write(&path, config(&iss, &a, &b, &assertion_section(&[&k2, &k1], extra))).unwrap();
    assert!(authgear_gateway::reload::reload_from(&gw.server.gateway, &path), "the rotation reloads");
    let kids = jwks_kids(&get(&format!("{}/.well-known/jwks.json", gw.admin), &[]).await.1.json());
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[1], old_kids[0]);
    assert_eq!(get(&gw.url("/.well-known/gateway-jwks.json"), &[]).await.1.json()["keys"].as_array().map(Vec::len), Some(2));

    assert_eq!(get_with(&gw.url("/app/x"), &token).await.status, StatusCode::OK);
    let after = captured(&a);
    assert_eq!(jws_header(&after)["kid"], kids[0], "the new first key signs at once");
    for lang in [Lang::Python, Lang::Node] {
        assert!(verify(lang, &gw, &origin(&a), "ES256", "5", &after).is_ok(), "{lang:?}: new key");
        assert!(verify(lang, &gw, &origin(&a), "ES256", "5", &before).is_ok(), "{lang:?}: old key still published");
    }

    // A reload that breaks a key file keeps the running keys.
    std::fs::write(&k2, "not a key").unwrap();
    std::fs::write(&path, config(&iss, &a, &b, &assertion_section(&[&k2, &k1], &format!("{extra}\nlifetime = \"30s\"")))).unwrap();
    assert!(!authgear_gateway::reload::reload_from(&gw.server.gateway, &path));
    assert_eq!(jwks_kids(&get(&format!("{}/.well-known/jwks.json", gw.admin), &[]).await.1.json()), kids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_allow_answers_carry_the_assertion() {
    let fa = "[forward_auth]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1/32\"]\nflavour = \"nginx\"\n";
    let (iss, a, _b, gw, _dir) = started(false, &format!("\n{fa}")).await;
    let decide = format!("http://{}/", gw.server.forward_auth_addr.expect("forward-auth listener"));
    let token = iss.mint("user-fa", json!({ ROLES: ["ops"] }));
    let auth = format!("Bearer {token}");
    let allowed = send("GET", &decide, &[("x-original-url", "http://app.test/app/x"), ("x-original-method", "GET"), ("authorization", &auth)], b"").await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.body);
    let jws = allowed.header(HEADER).expect("the allow answer carries the assertion").to_owned();
    let claims = payload(&jws);
    assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some("user-fa"), Some(origin(&a).as_str())));
    assert!(verify(Lang::Node, &gw, &origin(&a), "ES256", "5", &jws).is_ok());

    // Anonymous on a public route: present and empty, so an ingress that
    // copies it overwrites the client's own.
    let public = send("GET", &decide, &[("x-original-url", "http://app.test/public/p"), ("x-original-method", "GET"), (HEADER, "forged")], b"").await;
    assert_eq!(public.status, StatusCode::OK);
    assert_eq!(public.header(HEADER), Some(""));

    let denied = send("GET", &decide, &[("x-original-url", "http://app.test/app/x"), ("x-original-method", "GET")], b"").await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert!(denied.header(HEADER).is_none());
}

fn errors(section: &str) -> Vec<authgear_gateway::config::Diagnostic> {
    let base = "[upstream]\nurl = \"http://127.0.0.1:3000\"\n\n[auth]\nissuer = \"https://example.authgear.cloud\"\n\n[[routes]]\npath = \"/**\"\n\n";
    match authgear_gateway::Config::from_toml(&format!("{base}{section}"), "t.toml") {
        Ok(_) => Vec::new(),
        Err(d) => d.errors().cloned().collect(),
    }
}

#[test]
fn weak_algorithms_wrong_keys_and_bad_lifetimes_are_refused_with_key_and_line() {
    authgear_gateway::install_crypto_provider();
    let dir = temp_dir("cfg");
    let ec = key_file(&dir, "ec.pem", false);
    let ed = key_file(&dir, "ed.pem", true);
    let has = |e: &[authgear_gateway::config::Diagnostic], key: &str, line: usize| e.iter().any(|d| d.key == key && d.line == line);
    for alg in ["HS256", "none", "RS256", "ES512"] {
        let e = errors(&format!("[assertion]\nissuer = \"gw\"\nalgorithm = \"{alg}\"\nkey_files = [{ec:?}]\n"));
        assert!(has(&e, "assertion.algorithm", 12), "{alg}: {e:?}");
    }
    // An Ed25519 key where ES256 is asked for, and a file that is missing.
    let e = errors(&format!("[assertion]\nissuer = \"gw\"\nkey_files = [\n  {ed:?},\n  \"/nonexistent/key.pem\",\n]\n"));
    let lines: Vec<usize> = e.iter().filter(|d| d.key == "assertion.key_files").map(|d| d.line).collect();
    assert_eq!(lines, [13, 14], "{e:?}");
    assert!(!e.iter().any(|d| d.message.contains("BEGIN")), "a diagnostic never shows key material");
    let e = errors(&format!("[assertion]\nissuer = \"gw\"\nkey_files = [{ec:?}]\nlifetime = \"1h\"\n"));
    assert!(has(&e, "assertion.lifetime", 13), "{e:?}");
    let e = errors(&format!("[assertion]\nkey_files = [{ec:?}]\nheader = \"Authorization\"\njwks_path = \"jwks\"\n"));
    assert!(e.iter().any(|d| d.key == "assertion.issuer"), "{e:?}");
    assert!(has(&e, "assertion.header", 12) && has(&e, "assertion.jwks_path", 13), "{e:?}");
    assert!(errors(&format!("[assertion]\nissuer = \"gw\"\nkey_files = [{ec:?}]\n")).is_empty());
    assert!(errors(&format!("[assertion]\nissuer = \"gw\"\nalgorithm = \"EdDSA\"\nkey_files = [{ed:?}]\n")).is_empty());
    // A SEC1 `EC PRIVATE KEY` file (`openssl ecparam -genkey`) is read too.
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let sec1: EcPrivateKeyRfc5915Der = pair.private_key().as_der().unwrap();
    let sec1_path = dir.join("sec1.pem");
    std::fs::write(&sec1_path, format!("-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n", STANDARD.encode(sec1.as_ref()))).unwrap();
    assert!(errors(&format!("[assertion]\nissuer = \"gw\"\nkey_files = [{:?}]\n", sec1_path.display().to_string())).is_empty());
    // `enabled = false` keeps the table and sends nothing.
    let cfg = authgear_gateway::Config::from_toml(
        &format!("[upstream]\nurl = \"http://127.0.0.1:3000\"\n[auth]\nissuer = \"https://x.test\"\n[[routes]]\npath = \"/**\"\n[assertion]\nenabled = false\nissuer = \"gw\"\nkey_files = [{ec:?}]\n"),
        "t.toml",
    )
    .unwrap();
    assert!(cfg.assertion.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_login_session_carries_an_assertion_for_its_user() {
    use support::browser::Browser;
    authgear_gateway::install_crypto_provider();
    let iss = DevIssuer::start().await.unwrap();
    let up = Upstream::start().await;
    let dir = temp_dir("login");
    let key = key_file(&dir, "k1.pem", false);
    let origin_url = "https://gw.test";
    let login = format!(
        "[login]\npublic_origin = \"{origin_url}\"\nclient_id = \"web-app\"\nclient_secret = \"s3cret\"\ncookie_keys = [\"k1:{}\"]\n",
        STANDARD.encode([7u8; 32])
    );
    let routes = "[[routes]]\npath = \"/app/**\"\nmethod = \"login\"\n\n[[routes]]\npath = \"/**\"\nauth = \"public\"\n";
    let gw = start_ready(&config_text(&iss, up.addr, "", &format!("{login}\n{routes}\n{}", assertion_section(&[&key], "")))).await;
    let mut b = Browser::new(&[(origin_url, &gw.base)]);
    let page = b.navigate(&format!("{origin_url}/app/page")).await;
    assert_eq!(page.status, StatusCode::OK, "the issuer's login page: {}", page.body);
    let done = b.navigate(&Browser::link(&page, &iss.issuer, "Log in as alice")).await;
    assert_eq!(done.status, StatusCode::OK);
    let jws = captured(&up);
    assert_eq!(payload(&jws)["sub"], "user-alice");
    for lang in [Lang::Python, Lang::Node] {
        assert!(verify(lang, &gw, &origin(&up), "ES256", "5", &jws).is_ok(), "{lang:?}");
    }
    // The public catch-all, same browser: no assertion.
    assert_eq!(b.request("GET", &format!("{origin_url}/about"), &[]).await.status, StatusCode::OK);
    assert!(up.last().headers.get(HEADER).is_none());
}
