//! HLS and LL-HLS over HTTP: the routes under `/live/{app}/{key}/`, served
//! by [`arcly_hls::Hls`].
//!
//! | Route | What | Cache-Control |
//! |---|---|---|
//! | `index.m3u8` | LL-HLS media playlist (`_HLS_msn`, `_HLS_part`, `_HLS_skip`) | `no-cache`; blocking reloads `max-age=2` |
//! | `master.m3u8`, `multivariant.m3u8` | multivariant playlist | `no-cache` |
//! | `init.mp4`, `init{n}.mp4` | fMP4 initialisation segments | `max-age=10` |
//! | `seg{msn}.m4s` | fMP4 segments | `max-age=30` |
//! | `part{msn}.{n}.m4s` | LL-HLS parts | `max-age=30` |
//! | `ts/index.m3u8` | classic HLS playlist (MPEG-TS) | `no-cache` |
//! | `ts/seg{msn}.ts` | MPEG-TS segments | `max-age=30` |
//!
//! Every request is authorized to play (segment names are predictable).
//! A playlist carries its query string (`?token=...`, without the `_HLS_*`
//! directives) into every URI it lists, so a player given one URL with a
//! token in it (hls.js, Safari, ffmpeg) fetches the parts, segments and
//! init sections with the same token. A token sent as `Authorization:
//! Bearer` is not copied into URIs: the player must send the header with
//! every request (hls.js: `xhrSetup`).
//!
//! A blocking reload (`_HLS_msn`) answers once that segment (or part)
//! exists; segments and parts are sent as the packager's buffers, without a
//! copy, with a `Content-Length`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use arcly_core::auth::{Action, Credentials};
use arcly_core::identity::StreamId;
use arcly_hls::{HlsError, PlaylistKind, PlaylistRequest};
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::http::{AppState, credentials, error, no_stream, stream_id};

const PLAYLIST: &str = "application/vnd.apple.mpegurl";
const MP4: &str = "video/mp4";
const TS: &str = "video/mp2t";
const NO_CACHE: &str = "no-cache";
const BLOCKING_CACHE: &str = "public, max-age=2";
const INIT_CACHE: &str = "public, max-age=10";
const MEDIA_CACHE: &str = "public, max-age=30";

type Params = Query<HashMap<String, String>>;

/// Asks the engine's authenticator whether this request may play `id`;
/// `None` when it may. Every HLS request is checked (segment names are
/// predictable); playlists pass their query string on in every URI they
/// list, so a player that got the playlist with a token fetches the rest
/// with it.
async fn refused(state: &AppState, id: &StreamId, creds: &Credentials) -> Option<Response> {
    match state.engine.authorize(Action::Play, id, creds).await {
        Ok(()) => None,
        Err(e) => Some(error(StatusCode::FORBIDDEN, e.to_string())),
    }
}

/// The HLS service, the stream and the token to carry into playlist URIs,
/// once the request is authorized; else the response to give.
async fn admit<'a>(
    state: &'a AppState,
    app: &str,
    key: &str,
    creds: Credentials,
) -> Result<(&'a arcly_hls::Hls, StreamId, Option<String>), Response> {
    let (Some(hls), Some(id)) = (state.hls.as_ref(), stream_id(app, key)) else {
        return Err(no_stream(app, key));
    };
    let token = token_query(creds.query.as_deref());
    match refused(state, &id, &creds).await {
        Some(refusal) => Err(refusal),
        None => Ok((hls, id, token)),
    }
}

/// `GET /live/{app}/{key}/{file}`: fMP4 / LL-HLS files.
pub(crate) async fn file(
    State(state): State<AppState>,
    Path((app, key, file)): Path<(String, String, String)>,
    Query(params): Params,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let (hls, id, token) = match admit(&state, &app, &key, credentials(query, &headers, peer)).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    match file.as_str() {
        "index.m3u8" => with_token(playlist(hls, &id, PlaylistKind::LowLatency, &params).await, token).await,
        "master.m3u8" | "multivariant.m3u8" => match hls.multivariant(&id).await {
            Ok(text) => text_response(add_query_to_uris(&text, token.as_deref()), NO_CACHE),
            Err(e) => hls_error(&e),
        },
        f if f.starts_with("part") && f.ends_with(".m4s") => match hls.part(&id, f).await {
            Ok(parts) => buffers(parts, MP4, MEDIA_CACHE),
            Err(e) => hls_error(&e),
        },
        f if (f.starts_with("seg") && f.ends_with(".m4s")) || (f.starts_with("init") && f.ends_with(".mp4")) => {
            let cache = if f.ends_with(".mp4") { INIT_CACHE } else { MEDIA_CACHE };
            match hls.segment(&id, PlaylistKind::LowLatency, f).await {
                Ok(parts) => buffers(parts, MP4, cache),
                Err(e) => hls_error(&e),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// `GET /live/{app}/{key}/ts/{file}`: classic HLS (MPEG-TS).
pub(crate) async fn ts_file(
    State(state): State<AppState>,
    Path((app, key, file)): Path<(String, String, String)>,
    Query(params): Params,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let (hls, id, token) = match admit(&state, &app, &key, credentials(query, &headers, peer)).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    match file.as_str() {
        "index.m3u8" => with_token(playlist(hls, &id, PlaylistKind::Ts, &params).await, token).await,
        f if f.starts_with("seg") && f.ends_with(".ts") => match hls.segment(&id, PlaylistKind::Ts, f).await {
            Ok(parts) => buffers(parts, TS, MEDIA_CACHE),
            Err(e) => hls_error(&e),
        },
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn playlist(
    hls: &arcly_hls::Hls,
    id: &StreamId,
    kind: PlaylistKind,
    params: &HashMap<String, String>,
) -> Response {
    let req = match PlaylistRequest::from_query(params.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(r) => r,
        Err(e) => return hls_error(&e),
    };
    match hls.playlist(id, kind, req).await {
        Ok(text) => text_response(text, if req.msn.is_some() { BLOCKING_CACHE } else { NO_CACHE }),
        Err(e) => hls_error(&e),
    }
}

fn hls_error(e: &HlsError) -> Response {
    let status = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, e.to_string())
}

fn text_response(text: String, cache: &'static str) -> Response {
    ([(header::CONTENT_TYPE, PLAYLIST), (header::CACHE_CONTROL, cache)], text).into_response()
}

/// A response whose body is `parts` in order, with their total length.
fn buffers(parts: Vec<Bytes>, content_type: &'static str, cache: &'static str) -> Response {
    let len: usize = parts.iter().map(Bytes::len).sum();
    let mut response = Body::from_stream(Parts(parts.into_iter())).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

/// A body of buffers that already exist.
struct Parts(std::vec::IntoIter<Bytes>);

impl futures_core::Stream for Parts {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.find(|b| !b.is_empty()).map(Ok))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.0.len()))
    }
}

/// The request's query string without the LL-HLS delivery directives
/// (`_HLS_*`): what playlist URIs must carry on (a token). `None` if empty.
fn token_query(query: Option<&str>) -> Option<String> {
    let kept: Vec<&str> = query?.split('&').filter(|kv| !kv.is_empty() && !kv.starts_with("_HLS_")).collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// Appends `?query` (or `&query`) to every URI of a playlist: the URI lines
/// and the `URI="..."` attributes (EXT-X-MAP, EXT-X-PART, EXT-X-PRELOAD-HINT).
fn add_query_to_uris(playlist: &str, query: Option<&str>) -> String {
    let Some(query) = query else { return playlist.to_owned() };
    let join = |uri: &str| if uri.contains('?') { format!("{uri}&{query}") } else { format!("{uri}?{query}") };
    let mut out = String::with_capacity(playlist.len() + 64);
    for line in playlist.lines() {
        if !line.starts_with('#') {
            if !line.is_empty() {
                out.push_str(&join(line));
            }
        } else {
            let mut rest = line;
            while let Some(at) = rest.find("URI=\"") {
                let (head, tail) = rest.split_at(at + 5);
                out.push_str(head);
                let Some(end) = tail.find('"') else {
                    rest = tail;
                    break;
                };
                out.push_str(&join(&tail[..end]));
                rest = &tail[end..];
            }
            out.push_str(rest);
        }
        out.push('\n');
    }
    out
}

/// A playlist response with the token carried on into its URIs.
async fn with_token(response: Response, token: Option<String>) -> Response {
    if token.is_none() || response.status() != StatusCode::OK {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "playlist body");
    };
    let text = add_query_to_uris(&String::from_utf8_lossy(&bytes), token.as_deref());
    let mut response = Response::from_parts(parts, Body::from(text));
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
}

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn tokens_are_carried_into_every_uri() {
        assert_eq!(token_query(Some("_HLS_msn=3&token=abc&_HLS_part=1")), Some("token=abc".to_owned()));
        assert_eq!(token_query(Some("_HLS_msn=3")), None);
        let playlist = "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-PART:DURATION=0.2,URI=\"part0.0.m4s\",INDEPENDENT=YES\n#EXTINF:2.0,\nseg0.m4s\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part1.0.m4s\"\n";
        let out = add_query_to_uris(playlist, Some("token=abc"));
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4?token=abc\"\n#EXT-X-PART:DURATION=0.2,URI=\"part0.0.m4s?token=abc\",INDEPENDENT=YES\n#EXTINF:2.0,\nseg0.m4s?token=abc\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part1.0.m4s?token=abc\"\n"
        );
        assert_eq!(add_query_to_uris(playlist, None), playlist);
    }
}
