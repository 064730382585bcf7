//! The MAC against RFC 4231, one test per denial code, and mutations of a
//! valid token.

use std::time::UNIX_EPOCH;

use arcly_core::auth::{Action, Credentials};
use arcly_core::identity::StreamId;
use proptest::prelude::*;

use super::*;
use crate::grant::StreamScope;

/// Far from any real clock: tests never depend on the time they run at.
const NOW: u64 = 1_700_000_000;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// RFC 4231 test cases 1-4, 6 and 7 (case 5 is a truncated output, which
/// this crate never produces nor accepts), through [`MacKey`], the MAC that
/// [`TokenKey::mint`] and verification use.
#[test]
fn hmac_sha256_rfc4231() {
    let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
        (vec![0x0b; 20], b"Hi There".to_vec(), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (
            b"Jefe".to_vec(),
            b"what do ya want for nothing?".to_vec(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (vec![0xaa; 20], vec![0xdd; 50], "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        ((1..=25).collect(), vec![0xcd; 50], "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
        (
            vec![0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
        (
            vec![0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        ),
    ];
    for (i, (key, data, expected)) in cases.iter().enumerate() {
        assert_eq!(MacKey::new(key).tag(data).to_vec(), hex(expected), "RFC 4231 case {}", [1, 2, 3, 4, 6, 7][i]);
    }
}

/// A token's MAC is the tag of the text before its last dot, under the key.
#[test]
fn minted_tokens_carry_the_mac_of_their_text() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let token = TokenKey::new("k1", secret).unwrap().mint(&grant());
    let (signed, mac) = token.rsplit_once('.').unwrap();
    assert_eq!(URL_SAFE_NO_PAD.decode(mac).unwrap(), MacKey::new(secret).tag(signed.as_bytes()).to_vec());
    assert_eq!(mac.len(), MAC_TEXT_LEN);
}

fn grant() -> Grant {
    Grant::new(Action::Publish, "live", StreamScope::Key("cam1".into())).expires_at(NOW + 600)
}

fn auth() -> TokenAuthenticator {
    TokenAuthenticator::new([
        TokenKey::new("k1", "first secret, long enough").unwrap(),
        TokenKey::new("k2", "second secret, long enough").unwrap(),
    ])
    .unwrap()
}

/// Verifies `token` for `action` on `stream` from `peer` at `now`.
fn verify_from(token: &str, action: Action, stream: &str, peer: &str, now: u64) -> Result<Grant, Denial> {
    let stream: StreamId = stream.parse().unwrap();
    let mut credentials = Credentials::with_query("test", format!("token={token}"));
    credentials.peer = Some(peer.parse().unwrap());
    let request = AuthRequest { action, stream: &stream, credentials: &credentials };
    auth().verify_at(&request, UNIX_EPOCH + Duration::from_secs(now))
}

fn verify(token: &str) -> Result<Grant, Denial> {
    verify_from(token, Action::Publish, "live/cam1", "192.0.2.10:40000", NOW)
}

fn code(result: Result<Grant, Denial>) -> &'static str {
    match result {
        Ok(g) => panic!("accepted: {g:?}"),
        Err(d) => d.code,
    }
}

fn mint(key: &str, grant: &Grant) -> String {
    auth().mint(key, grant).unwrap()
}

#[test]
fn a_valid_token_is_accepted_with_either_key() {
    for key in ["k1", "k2"] {
        assert_eq!(verify(&mint(key, &grant())).unwrap(), grant());
    }
    // From the bearer header too.
    let stream: StreamId = "live/cam1".parse().unwrap();
    let credentials = Credentials::default().with_bearer(mint("k1", &grant()));
    let request = AuthRequest { action: Action::Publish, stream: &stream, credentials: &credentials };
    auth().verify_at(&request, UNIX_EPOCH + Duration::from_secs(NOW)).unwrap();
}

#[test]
fn missing() {
    let stream: StreamId = "live/cam1".parse().unwrap();
    for credentials in
        [Credentials::default(), Credentials::with_query("t", "token="), Credentials::with_query("t", "a=b")]
    {
        let request = AuthRequest { action: Action::Publish, stream: &stream, credentials: &credentials };
        assert_eq!(auth().verify(&request).unwrap_err().code, codes::MISSING);
    }
}

#[test]
fn malformed() {
    let good = mint("k1", &grant());
    for bad in [
        "garbage".to_owned(),
        "v1.k1.abc".to_owned(),
        format!("v2{}", &good[2..]),
        format!("{good}.x"),
        format!("v1.bad key.{}", &good[6..]),
        "x".repeat(MAX_TOKEN_LEN + 1),
    ] {
        assert_eq!(code(verify(&bad)), codes::MALFORMED, "{bad}");
    }
    // A payload that is signed but is not ours is still refused: only a
    // key holder can get there.
    let key = auth().key("k1").unwrap().clone();
    for payload in ["not base64!", "bm90IGpzb24", &URL_SAFE_NO_PAD.encode(r#"{"act":"x"}"#)] {
        let signed = format!("v1.k1.{payload}");
        let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(key.mac.tag(signed.as_bytes())));
        assert_eq!(code(verify(&token)), codes::MALFORMED, "{payload}");
    }
}

#[test]
fn unknown_key() {
    let other = TokenKey::new("k9", "first secret, long enough").unwrap();
    let denial = verify(&other.mint(&grant())).unwrap_err();
    assert_eq!(denial.code, codes::UNKNOWN_KEY);
    assert_eq!(denial.message, "unknown key id \"k9\"");
}

#[test]
fn forged_and_truncated_macs_are_bad_signatures_with_their_own_messages() {
    // Signed with another secret under a known id.
    let forged = TokenKey::new("k1", "an attacker's guess at it").unwrap().mint(&grant());
    let denial = verify(&forged).unwrap_err();
    assert_eq!(denial.code, codes::BAD_SIGNATURE);
    assert!(denial.message.contains("does not match"), "{denial}");
    // A payload changed after signing (a longer expiry).
    let good = mint("k1", &grant());
    let (_, mac) = good.rsplit_once('.').unwrap();
    let longer = TokenKey::new("k1", "whatever secret is here").unwrap().mint(&grant().expires_at(NOW + 999_999));
    let (signed, _) = longer.rsplit_once('.').unwrap();
    assert_eq!(code(verify(&format!("{signed}.{mac}"))), codes::BAD_SIGNATURE);
    // Cut short: refused before any comparison, as truncated.
    for cut in [1, 10, 42] {
        let truncated = &good[..good.len() - cut];
        let denial = verify(truncated).unwrap_err();
        assert_eq!(denial.code, codes::BAD_SIGNATURE, "{truncated}");
        assert!(denial.message.starts_with("truncated MAC"), "{denial}");
    }
    let denial = verify(&format!("{good}A")).unwrap_err();
    assert!(denial.message.starts_with("MAC too long"), "{denial}");
}

#[test]
fn expired_and_not_yet_valid_with_skew() {
    let token = mint("k1", &grant());
    // 30 s of skew by default.
    verify_from(&token, Action::Publish, "live/cam1", "192.0.2.1:1", NOW + 630).unwrap();
    let denial = verify_from(&token, Action::Publish, "live/cam1", "192.0.2.1:1", NOW + 631).unwrap_err();
    assert_eq!((denial.code, denial.message.as_str()), (codes::EXPIRED, "token expired 31 s ago"));
    let later = mint("k1", &grant().not_before(NOW + 100));
    verify_from(&later, Action::Publish, "live/cam1", "192.0.2.1:1", NOW + 70).unwrap();
    assert_eq!(code(verify_from(&later, Action::Publish, "live/cam1", "192.0.2.1:1", NOW)), codes::NOT_YET_VALID);
    // No skew.
    let strict = auth().with_skew(Duration::ZERO);
    let stream: StreamId = "live/cam1".parse().unwrap();
    let credentials = Credentials::with_query("t", format!("token={token}"));
    let request = AuthRequest { action: Action::Publish, stream: &stream, credentials: &credentials };
    let at = |s| UNIX_EPOCH + Duration::from_secs(s);
    strict.verify_at(&request, at(NOW + 600)).unwrap();
    assert_eq!(strict.verify_at(&request, at(NOW + 601)).unwrap_err().code, codes::EXPIRED);
}

#[test]
fn wrong_action() {
    let token = mint("k1", &grant());
    assert_eq!(code(verify_from(&token, Action::Play, "live/cam1", "192.0.2.1:1", NOW)), codes::WRONG_ACTION);
}

#[test]
fn wrong_stream_key_prefix_and_app() {
    let token = mint("k1", &grant());
    for stream in ["live/cam2", "live/cam10", "other/cam1"] {
        assert_eq!(code(verify_from(&token, Action::Publish, stream, "192.0.2.1:1", NOW)), codes::WRONG_STREAM);
    }
    let prefix = mint("k1", &Grant { scope: StreamScope::Prefix("cam".into()), ..grant() });
    for ok in ["live/cam", "live/cam1", "live/camera"] {
        verify_from(&prefix, Action::Publish, ok, "192.0.2.1:1", NOW).unwrap();
    }
    for bad in ["live/ca", "live/xcam", "other/cam1"] {
        assert_eq!(code(verify_from(&prefix, Action::Publish, bad, "192.0.2.1:1", NOW)), codes::WRONG_STREAM);
    }
}

#[test]
fn wrong_ip() {
    let bound = grant().ip("192.0.2.10".parse().unwrap());
    let token = mint("k2", &bound);
    verify_from(&token, Action::Publish, "live/cam1", "192.0.2.10:5000", NOW).unwrap();
    verify_from(&token, Action::Publish, "live/cam1", "[::ffff:192.0.2.10]:5000", NOW).unwrap();
    let denial = verify_from(&token, Action::Publish, "live/cam1", "192.0.2.11:5000", NOW).unwrap_err();
    assert_eq!(denial.code, codes::WRONG_IP);
    assert!(!denial.message.contains("192.0.2.10"), "the bound address is not shown: {denial}");
    // No peer address at all.
    let stream: StreamId = "live/cam1".parse().unwrap();
    let credentials = Credentials::with_query("t", format!("token={token}"));
    let request = AuthRequest { action: Action::Publish, stream: &stream, credentials: &credentials };
    assert_eq!(auth().verify_at(&request, UNIX_EPOCH + Duration::from_secs(NOW)).unwrap_err().code, codes::WRONG_IP);
}

#[test]
fn every_denial_has_its_own_reason() {
    let good = mint("k1", &grant().ip("192.0.2.10".parse().unwrap()));
    let reasons: Vec<String> = [
        verify_from(&good, Action::Publish, "live/cam1", "192.0.2.10:1", NOW + 3600),
        verify(&TokenKey::new("k1", "not the right secret!").unwrap().mint(&grant())),
        verify(&good[..good.len() - 5]),
        verify_from(&good, Action::Publish, "live/other", "192.0.2.10:1", NOW),
        verify(&TokenKey::new("k3", "not the right secret!").unwrap().mint(&grant())),
        verify_from(&good, Action::Publish, "live/cam1", "192.0.2.99:1", NOW),
    ]
    .into_iter()
    .map(|r| r.unwrap_err().to_string())
    .collect();
    for (i, r) in reasons.iter().enumerate() {
        assert!(!reasons[..i].contains(r), "{r} given twice: {reasons:?}");
    }
}

#[test]
fn tokens_need_no_escaping_and_keys_are_checked() {
    let token = mint("k2", &grant().ip("2001:db8::1".parse().unwrap()));
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "{token}");
    assert!(matches!(TokenKey::new("", "0123456789abcdef"), Err(KeyError::InvalidId(_))));
    assert!(matches!(TokenKey::new("a.b", "0123456789abcdef"), Err(KeyError::InvalidId(_))));
    assert!(matches!(TokenKey::new("k", "short"), Err(KeyError::ShortSecret { len: 5, .. })));
    let k = || TokenKey::new("k", "0123456789abcdef").unwrap();
    assert!(matches!(TokenAuthenticator::new([k(), k()]), Err(KeyError::DuplicateId(_))));
    assert!(matches!(TokenAuthenticator::new([]), Err(KeyError::NoKeys)));
    assert!(matches!(auth().mint("nope", &grant()), Err(KeyError::UnknownId(_))));
    assert!(!format!("{:?}", auth()).contains("secret"));
}

/// Replaces the character at `at` by `with`, appends or truncates.
#[derive(Clone, Debug)]
enum Mutation {
    Replace(usize, char),
    Truncate(usize),
    Extend(String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let chars = prop_oneof![
        proptest::char::range('0', '9'),
        proptest::char::range('A', 'Z'),
        proptest::char::range('a', 'z'),
        Just('-'),
        Just('_'),
        Just('.'),
        Just('='),
        Just('+'),
        Just('/'),
        any::<char>(),
    ];
    prop_oneof![
        (any::<usize>(), chars).prop_map(|(i, c)| Mutation::Replace(i, c)),
        any::<usize>().prop_map(Mutation::Truncate),
        "[A-Za-z0-9_.=-]{1,8}".prop_map(Mutation::Extend),
    ]
}

proptest! {
    #[test]
    fn any_mutation_of_a_valid_token_is_refused(m in mutation(), key in 0usize..2, prefix in any::<bool>()) {
        let scope = if prefix { StreamScope::Prefix("cam".into()) } else { StreamScope::Key("cam1".into()) };
        let good = mint(["k1", "k2"][key], &Grant { scope, ..grant() });
        prop_assert!(verify(&good).is_ok());
        let chars: Vec<char> = good.chars().collect();
        let bad: String = match &m {
            Mutation::Replace(i, c) => {
                let i = i % chars.len();
                prop_assume!(chars[i] != *c);
                chars.iter().enumerate().map(|(j, &o)| if j == i { *c } else { o }).collect()
            }
            Mutation::Truncate(n) => chars[..n % chars.len()].iter().collect(),
            Mutation::Extend(tail) => format!("{good}{tail}"),
        };
        prop_assert!(verify(&bad).is_err(), "{m:?} of {good} accepted: {bad}");
    }
}
