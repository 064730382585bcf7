//! [`Protect`]: an authenticator for some actions only.

use arcly_core::auth::{Action, AuthRequest, Denial, StreamAuthenticator};
use async_trait::async_trait;

/// Asks `inner` for the protected actions and allows the others: the usual
/// set-up protects publishing and leaves playing open.
///
/// ```
/// # tokio_test_block_on(async {
/// use arcly_auth::Protect;
/// use arcly_core::auth::{Action, AuthRequest, Credentials, Denial, StreamAuthenticator};
///
/// struct DenyAll;
/// #[async_trait::async_trait]
/// impl StreamAuthenticator for DenyAll {
///     async fn authorize(&self, _: AuthRequest<'_>) -> Result<(), Denial> {
///         Err("no".into())
///     }
/// }
///
/// let auth = Protect::new(DenyAll).play(false);
/// let stream = "live/a".parse().unwrap();
/// let credentials = Credentials::default();
/// let request = |action| AuthRequest { action, stream: &stream, credentials: &credentials };
/// assert!(auth.authorize(request(Action::Publish)).await.is_err());
/// assert!(auth.authorize(request(Action::Play)).await.is_ok());
/// # });
/// # fn tokio_test_block_on(f: impl std::future::Future<Output = ()>) {
/// #     let mut f = std::pin::pin!(f);
/// #     let waker = std::task::Waker::noop();
/// #     let mut cx = std::task::Context::from_waker(waker);
/// #     assert!(f.as_mut().poll(&mut cx).is_ready());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Protect<A> {
    inner: A,
    publish: bool,
    play: bool,
}

impl<A: StreamAuthenticator> Protect<A> {
    /// Protects both publishing and playing with `inner`.
    pub fn new(inner: A) -> Self {
        Self { inner, publish: true, play: true }
    }

    /// Whether publishing is checked (default true).
    pub fn publish(mut self, protect: bool) -> Self {
        self.publish = protect;
        self
    }

    /// Whether playing is checked (default true).
    pub fn play(mut self, protect: bool) -> Self {
        self.play = protect;
        self
    }

    /// True if `action` is checked.
    pub fn protects(&self, action: Action) -> bool {
        match action {
            Action::Publish => self.publish,
            Action::Play => self.play,
        }
    }
}

#[async_trait]
impl<A: StreamAuthenticator> StreamAuthenticator for Protect<A> {
    async fn authorize(&self, request: AuthRequest<'_>) -> Result<(), Denial> {
        if self.protects(request.action) { self.inner.authorize(request).await } else { Ok(()) }
    }
}
