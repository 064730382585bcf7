//! Every denial code through JWTs.

use std::time::UNIX_EPOCH;

use arcly_core::auth::{Action, Credentials};
use arcly_core::identity::StreamId;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;

const NOW: u64 = 1_700_000_000;
const K1: &[u8] = b"jwt secret number one";
const K2: &[u8] = b"jwt secret number two";

fn auth() -> JwtAuthenticator {
    JwtAuthenticator::new([("k1".to_owned(), K1.to_vec()), ("k2".to_owned(), K2.to_vec())]).unwrap()
}

fn claims() -> Value {
    json!({"act": "publish", "app": "live", "key": "cam1", "exp": NOW + 600, "iss": "someone", "iat": NOW})
}

fn jwt(alg: Algorithm, kid: Option<&str>, claims: &Value, secret: &[u8]) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn verify_with(auth: &JwtAuthenticator, token: &str, action: Action, stream: &str, now: u64) -> Result<Grant, Denial> {
    let stream: StreamId = stream.parse().unwrap();
    let mut credentials = Credentials::default().with_bearer(token);
    credentials.peer = Some("192.0.2.10:4000".parse().unwrap());
    let request = AuthRequest { action, stream: &stream, credentials: &credentials };
    auth.verify_at(&request, UNIX_EPOCH + Duration::from_secs(now))
}

fn code(token: &str) -> &'static str {
    verify_with(&auth(), token, Action::Publish, "live/cam1", NOW).unwrap_err().code
}

#[test]
fn valid_tokens_with_each_hmac_algorithm_and_key() {
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        for (kid, secret) in [("k1", K1), ("k2", K2)] {
            let grant =
                verify_with(&auth(), &jwt(alg, Some(kid), &claims(), secret), Action::Publish, "live/cam1", NOW);
            assert_eq!(grant.unwrap().app, "live");
        }
    }
    // Without kid: fine with a single key.
    let single = JwtAuthenticator::new([("k1".to_owned(), K1.to_vec())]).unwrap();
    verify_with(&single, &jwt(Algorithm::HS256, None, &claims(), K1), Action::Publish, "live/cam1", NOW).unwrap();
}

#[test]
fn every_denial_code() {
    let stream = "live/cam1";
    let a = auth();
    let good = jwt(Algorithm::HS256, Some("k1"), &claims(), K1);
    let stream_id: StreamId = stream.parse().unwrap();
    let none = Credentials::default();
    let request = AuthRequest { action: Action::Publish, stream: &stream_id, credentials: &none };
    assert_eq!(a.verify(&request).unwrap_err().code, codes::MISSING);
    assert_eq!(code("not.a.jwt"), codes::MALFORMED);
    assert_eq!(code("nothing"), codes::MALFORMED);
    assert_eq!(code(&jwt(Algorithm::HS256, Some("k9"), &claims(), K1)), codes::UNKNOWN_KEY);
    assert_eq!(code(&jwt(Algorithm::HS256, None, &claims(), K1)), codes::UNKNOWN_KEY, "no kid, two keys");
    assert_eq!(code(&jwt(Algorithm::HS256, Some("k1"), &claims(), K2)), codes::BAD_SIGNATURE);
    assert_eq!(code(&good[..good.len() - 4]), codes::BAD_SIGNATURE);
    // alg "none": header {"alg":"none","kid":"k1"}, no signature.
    let (_, rest) = good.split_once('.').unwrap();
    let (payload, _) = rest.split_once('.').unwrap();
    let none_header = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        r#"{"alg":"none","typ":"JWT","kid":"k1"}"#,
    );
    let unsigned = verify_with(&a, &format!("{none_header}.{payload}."), Action::Publish, stream, NOW).unwrap_err();
    assert_eq!(unsigned.code, codes::MALFORMED, "{unsigned}");
    // Another algorithm than HMAC: refused before any key use.
    let rs_header = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#,
    );
    let (_, sig) = good.rsplit_once('.').unwrap();
    let rs = verify_with(&a, &format!("{rs_header}.{payload}.{sig}"), Action::Publish, stream, NOW).unwrap_err();
    assert_eq!(rs.code, codes::BAD_SIGNATURE, "{rs}");
    assert_eq!(verify_with(&a, &good, Action::Publish, stream, NOW + 631).unwrap_err().code, codes::EXPIRED);
    verify_with(&a, &good, Action::Publish, stream, NOW + 630).unwrap();
    let mut later = claims();
    later["nbf"] = json!(NOW + 100);
    let later = jwt(Algorithm::HS256, Some("k1"), &later, K1);
    assert_eq!(code(&later), codes::NOT_YET_VALID);
    assert_eq!(verify_with(&a, &good, Action::Play, stream, NOW).unwrap_err().code, codes::WRONG_ACTION);
    assert_eq!(verify_with(&a, &good, Action::Publish, "live/cam2", NOW).unwrap_err().code, codes::WRONG_STREAM);
    let mut bound = claims();
    bound["ip"] = json!("192.0.2.99");
    assert_eq!(code(&jwt(Algorithm::HS256, Some("k1"), &bound, K1)), codes::WRONG_IP);
    bound["ip"] = json!("192.0.2.10");
    verify_with(&a, &jwt(Algorithm::HS256, Some("k1"), &bound, K1), Action::Publish, stream, NOW).unwrap();
    // Claims that do not say what they allow.
    let mut both = claims();
    both["pfx"] = json!("cam");
    assert_eq!(code(&jwt(Algorithm::HS256, Some("k1"), &both, K1)), codes::MALFORMED);
    let no_exp = json!({"act": "publish", "app": "live", "key": "cam1"});
    assert_eq!(code(&jwt(Algorithm::HS256, Some("k1"), &no_exp, K1)), codes::MALFORMED);
}
